#!/usr/bin/env python
"""Time the optimizer step of AdamSPD and AdamL2SP against torch's AdamW.

For each model's parameter shapes every optimizer gets its own copy of the
same parameters and, each round, the same fresh random gradients (so SPD's
projection really runs). All optimizers are timed in this one process and
their steps are interleaved (each round runs every optimizer once, in a
shuffled order), so machine noise hits them alike. Printed per optimizer:
the median step time, its ratio to ``torch.optim.AdamW(foreach=True)`` and
to ``AdamW(fused=True)`` (where torch has it for the device), its state
size per parameter byte, the bytes a step must move per parameter and the
rate at which it moved them.

Usage::

    python tools/benchmark_optimizer.py                 # ViT-S/16 + ViT-B/16
    python tools/benchmark_optimizer.py --models vit-ti16 --rounds 30
    python tools/benchmark_optimizer.py --device cuda --json step.json
"""
import argparse
import json
import random
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from mmspd.optim import AdamL2SP, AdamSPD

#: name -> (embedding dim, depth[, patch]); patch 16 unless given,
#: 224x224 input, 1000 classes.
VIT_CONFIGS = {
    'vit-ti16': (192, 12),
    'vit-s16': (384, 12),
    'vit-b16': (768, 12),
    'vit-l16': (1024, 24),
    'vit-l14': (1024, 24, 14),
    'vit-h14': (1280, 32, 14),
}

BASELINE_FOREACH = 'AdamW(foreach)'
BASELINE_FUSED = 'AdamW(fused)'
BASELINES = (BASELINE_FOREACH, BASELINE_FUSED)
DEFAULT_PATH = 'AdamSPD(default)'
#: State a step reads but does not write back (see step_traffic_bytes).
READ_ONLY_STATE = ('anchor', )


def vit_param_shapes(embed_dim: int, depth: int, patch: int = 16,
                     image: int = 224,
                     num_classes: int = 1000) -> List[Tuple[int, ...]]:
    """Parameter shapes of a timm/mmpretrain-style ViT (MLP ratio 4)."""
    d = embed_dim
    tokens = (image // patch)**2 + 1
    shapes = [(d, 3, patch, patch), (d, ), (1, 1, d), (1, tokens, d)]
    for _ in range(depth):
        shapes += [
            (d, ), (d, ),  # norm1
            (3 * d, d), (3 * d, ),  # qkv
            (d, d), (d, ),  # attention projection
            (d, ), (d, ),  # norm2
            (4 * d, d), (4 * d, ),  # mlp fc1
            (d, 4 * d), (d, ),  # mlp fc2
        ]
    shapes += [(d, ), (d, ), (num_classes, d), (num_classes, )]
    return shapes


def _fused_adamw_available(device: torch.device) -> bool:
    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        p.grad = torch.zeros(2, device=device)
        torch.optim.AdamW([p], fused=True).step()
        return True
    except (RuntimeError, ValueError):
        return False


def contenders(device: torch.device) -> Dict[str, Callable]:
    """Name -> factory(params) of the optimizers compared on ``device``."""
    lr = 1e-4
    table = {
        BASELINE_FOREACH: lambda ps: torch.optim.AdamW(
            ps, lr=lr, weight_decay=0.05, foreach=True),
        'AdamSPD(loop)': lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0, foreach=False),
        'AdamSPD(foreach)': lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0, fused=False),
        DEFAULT_PATH: lambda ps: AdamSPD(ps, lr=lr, weight_decay=1.0),
        "AdamSPD(anchor_dtype='bfloat16')": lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0, anchor_dtype='bfloat16'),
        "AdamSPD(anchor='zero')": lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0, anchor='zero'),
        'AdamL2SP(default)': lambda ps: AdamL2SP(
            ps, lr=lr, weight_decay=1e-2),
    }
    if device.type == 'cuda':  # mmspd's Triton kernel, opt-in on CUDA
        table['AdamSPD(fused=True)'] = lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0, fused=True)
    if _fused_adamw_available(device):
        table[BASELINE_FUSED] = lambda ps: torch.optim.AdamW(
            ps, lr=lr, weight_decay=0.05, fused=True)
    return table


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def state_bytes_per_param_byte(optimizer: torch.optim.Optimizer) -> float:
    """Bytes of optimizer state (step counters excluded) per parameter byte."""
    params = [p for g in optimizer.param_groups for p in g['params']]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    state_bytes = sum(
        v.numel() * v.element_size() for s in optimizer.state.values()
        for k, v in s.items() if torch.is_tensor(v) and k != 'step')
    return state_bytes / param_bytes


def step_traffic_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The fewest bytes one step must move through memory.

    Each parameter is read and written, its gradient read, every state
    buffer read and written back except :data:`READ_ONLY_STATE` (read
    only); step counters are not counted. AdamW on float32: 28 bytes per
    parameter; AdamSPD with float32 anchors: 32. Dividing it by the step
    time gives the rate a step moves memory at, to hold against the
    device's memory bandwidth.
    """
    total = 0
    for group in optimizer.param_groups:
        for p in group['params']:
            total += 2 * p.numel() * p.element_size()
            if p.grad is not None:
                total += p.grad.numel() * p.grad.element_size()
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and key != 'step':
                    size = value.numel() * value.element_size()
                    total += size if key in READ_ONLY_STATE else 2 * size
    return total


def benchmark_model(shapes: Sequence[Tuple[int, ...]], device: torch.device,
                    rounds: int, warmup: int, seed: int = 0,
                    names: Optional[Sequence[str]] = None) -> Dict:
    """Time one step of each contender on parameters of ``shapes``.

    Returns ``numel``, ``projected_fraction`` (the median fraction of
    tensors the default AdamSPD path projected per round) and, per
    contender under ``optimizers``: ``median_s``, ``ratios`` (``median_s``
    over each available AdamW baseline's), ``state_per_param`` and
    ``bytes_per_param``.

    Every round draws fresh gradients (outside the timed steps), the same
    for every contender: with one fixed gradient SPD's condition would stop
    holding after the first steps and its projection would go untimed.
    ``names`` restricts the contenders; the AdamW baselines and the default
    AdamSPD path are always timed. On accelerators the gradients are drawn
    there (drawing a ViT-H's on the host takes longer than the steps).
    """
    table = contenders(device)
    if names is not None:
        unknown = sorted(set(names) - set(table))
        if unknown:
            raise ValueError(f'unknown optimizers {unknown} on {device}; '
                             f'expected some of {sorted(table)}')
        keep = set(names) | set(BASELINES) | {DEFAULT_PATH}
        table = {name: f for name, f in table.items() if name in keep}
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
    grad_gen = gen if device.type == 'cpu' else torch.Generator(
        device=device).manual_seed(seed)
    runs = {}
    for name, factory in table.items():
        params = [torch.nn.Parameter(t.clone().to(device)) for t in init]
        runs[name] = (params, factory(params))

    def new_gradients() -> None:
        grads = [torch.randn(s, generator=grad_gen, device=grad_gen.device)
                 .mul_(1e-3).to(device) for s in shapes]
        for params, _ in runs.values():
            for p, g in zip(params, grads):
                p.grad = g  # shared, read-only for every contender

    for _ in range(warmup):  # state, anchors, allocator warm-up
        new_gradients()
        for _, optimizer in runs.values():
            optimizer.step()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    projected = []
    order = list(runs)
    shuffle = random.Random(seed)
    for _ in range(rounds):
        new_gradients()
        shuffle.shuffle(order)
        for name in order:
            _sync(device)
            start = time.perf_counter()
            runs[name][1].step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
        projected.append(runs[DEFAULT_PATH][1].projection_statistics()
                         ['projected_fraction'])
    numel = sum(torch.Size(s).numel() for s in shapes)
    medians = {name: statistics.median(t) for name, t in times.items()}
    optimizers = {}
    for name, (_, optimizer) in runs.items():
        optimizers[name] = dict(
            median_s=medians[name],
            ratios={base: medians[name] / medians[base]
                    for base in BASELINES if base in medians},
            state_per_param=state_bytes_per_param_byte(optimizer),
            bytes_per_param=step_traffic_bytes(optimizer) / numel)
    return dict(numel=numel, projected_fraction=statistics.median(projected),
                optimizers=optimizers)


def format_table(model: str, measured: Dict) -> str:
    """Markdown table of one model's :func:`benchmark_model` result."""
    numel = measured['numel']
    lines = [
        f'{model}: {numel / 1e6:.1f}M parameters; {DEFAULT_PATH} projected '
        f'{measured["projected_fraction"]:.0%} of the tensors per step '
        f'(median)', '',
        '| optimizer | median step (ms) | vs AdamW(foreach) | vs AdamW(fused) '
        '| state / param bytes | bytes / param | GB/s moved |',
        '|---|---:|---:|---:|---:|---:|---:|'
    ]
    for name, r in measured['optimizers'].items():
        ratios = [f'{r["ratios"][b]:.2f}x' if b in r['ratios'] else 'n/a'
                  for b in BASELINES]
        rate = r['bytes_per_param'] * numel / r['median_s'] / 1e9
        lines.append(f'| {name} | {r["median_s"] * 1e3:.2f} | '
                     f'{ratios[0]} | {ratios[1]} | '
                     f'{r["state_per_param"]:.2f} | '
                     f'{r["bytes_per_param"]:.0f} | {rate:.1f} |')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['vit-s16', 'vit-b16'],
                        choices=list(VIT_CONFIGS))
    parser.add_argument('--rounds', type=int, default=15,
                        help='timed steps per optimizer (median taken)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps per optimizer first')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--optimizers', nargs='+', metavar='NAME',
                        help='time only these (the AdamW baselines and '
                        f'{DEFAULT_PATH} always), e.g. "AdamSPD(foreach)"')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='FILE',
                        help='also write the numbers to this JSON file')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f'--rounds must be >= 1, got {args.rounds}')
    if args.warmup < 1:
        parser.error(f'--warmup must be >= 1 (the first step allocates '
                     f'state), got {args.warmup}')
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f'--device {args.device!r}: {error}')
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    device = args.device
    print(f'device {device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads; median of {args.rounds} '
          f'interleaved steps per optimizer\n')
    models = {}
    for model in args.models:
        shapes = vit_param_shapes(*VIT_CONFIGS[model])
        models[model] = benchmark_model(shapes, device, args.rounds,
                                        args.warmup, seed=args.seed,
                                        names=args.optimizers)
        print(format_table(model, models[model]), end='\n\n', flush=True)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    report = dict(device=str(device), torch=torch.__version__,
                  threads=torch.get_num_threads(), rounds=args.rounds,
                  warmup=args.warmup, baselines=list(BASELINES),
                  models=models)
    if device.type == 'cuda':
        report['gpu'] = torch.cuda.get_device_name(device)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
        print(f'results written to {args.json}')
    return report


if __name__ == '__main__':
    main()
