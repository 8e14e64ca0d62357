#!/usr/bin/env python
"""Benchmark AdamSPD's optimizer step against torch's AdamW in one process.

For each model's parameter shapes (ViT-S/16, ViT-B/16 by default) every
contender gets its own copy of the same parameters and, each round, the same
fresh random gradients (so SPD's projection really runs). Steps are
interleaved (each round runs every contender once, in a shuffled order) so
that machine noise hits all of them alike, and the median over rounds is
reported, as a time and as ratios against
``torch.optim.AdamW(foreach=True)`` and ``AdamW(fused=True)``. The table
also gives each optimizer's state size per parameter byte.

Usage::

    python tools/benchmark_optimizer.py                 # ViT-S/16 + ViT-B/16
    python tools/benchmark_optimizer.py --models vit-s16 --rounds 30
    python tools/benchmark_optimizer.py --device cuda --json out.json
"""
import argparse
import json
import platform
import random
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction

from mmspd.optim import AdamL2SP, AdamSPD, _native

#: name -> (embedding dim, depth[, patch]); patch 16 unless given,
#: 224x224 input, 1000 classes.
VIT_CONFIGS = {
    'vit-s16': (384, 12),
    'vit-b16': (768, 12),
    'vit-l16': (1024, 24),
    'vit-l14': (1024, 24, 14),
    'vit-h14': (1280, 32, 14),
    'vit-tiny-test': (32, 2),  # for the test-suite: runs in milliseconds
}

BASELINE_FOREACH = 'AdamW(foreach)'
BASELINE_FUSED = 'AdamW(fused)'
DEFAULT_PATH = 'AdamSPD(default)'
#: Step-time targets of the default AdamSPD path: (device type, model,
#: baseline, largest ratio). ViT-S vs foreach AdamW is the foundation
#: issue's; the fused-AdamW ones are the performance issue's.
TARGETS = [
    ('cpu', 'vit-s16', BASELINE_FOREACH, 1.3),
    ('cpu', 'vit-s16', BASELINE_FUSED, 1.5),
    ('cpu', 'vit-b16', BASELINE_FUSED, 1.5),
    ('cuda', 'vit-b16', BASELINE_FUSED, 1.2),
    ('cuda', 'vit-l16', BASELINE_FUSED, 1.2),
    ('cuda', 'vit-l14', BASELINE_FUSED, 1.15),  # the CUDA-path issue's
]
#: Optimizer state of the default path, in parameter bytes, at most.
TARGET_STATE = 3.0
#: State a step reads but does not write (everything else is read and
#: written back), for the memory-traffic floor.
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


def contenders(device: torch.device) -> Dict[str, Callable]:
    """Name -> factory(params) of the optimizers compared."""
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


def _fused_adamw_available(device: torch.device) -> bool:
    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        p.grad = torch.zeros(2, device=device)
        torch.optim.AdamW([p], fused=True).step()
        return True
    except (RuntimeError, ValueError):
        return False


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
    parameter; AdamSPD with float32 anchors: 32.
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


class BandwidthProbe:
    """Memory bandwidth of ``device`` for an optimizer's access pattern.

    ``a += s * b`` in place on float32 tensors far larger than the caches:
    read a and b, write a back, 12 bytes per element, no write-allocate
    traffic (an out-of-place copy measures about a third less here). Call
    it once per benchmark round, beside the optimizers, so that it sees the
    same machine noise; :meth:`bytes_per_s` is the median.
    """

    def __init__(self, device: torch.device, numel: int = 1 << 25) -> None:
        self.device = device
        self.a = torch.rand(numel, device=device)
        self.b = torch.rand(numel, device=device)
        self.times: List[float] = []
        self.a.add_(self.b, alpha=1e-3)  # touches the pages

    def __call__(self) -> None:
        _sync(self.device)
        start = time.perf_counter()
        self.a.add_(self.b, alpha=1e-3)
        _sync(self.device)
        self.times.append(time.perf_counter() - start)

    def bytes_per_s(self) -> float:
        return 12 * self.a.numel() / statistics.median(self.times)


def benchmark_model(shapes: Sequence[Tuple[int, ...]], device: torch.device,
                    rounds: int, warmup: int, seed: int = 0,
                    probe_numel: int = 1 << 25,
                    names: Optional[Sequence[str]] = None) -> Dict:
    """Per contender: median step time (s), state per parameter byte, the
    bytes a step must move and the time that takes at the bandwidth
    measured between the same rounds (``floor_s``).

    Every round draws fresh gradients (outside the timed steps), the same
    for every contender: with one fixed gradient SPD's condition never
    holds after the first steps and its projection pass would go untimed.
    Also returns the bandwidth (bytes/s, ``'bandwidth'``) and the median
    fraction of tensors the default path projected per round
    (``'projected_fraction'``). ``names`` restricts the contenders (the
    default path is always timed); on accelerators the gradients are drawn
    there (drawing a ViT-H's on the host would take longer than the steps).
    """
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
    grad_gen = gen if device.type == 'cpu' else torch.Generator(
        device=device).manual_seed(seed)
    runs = {}
    for name, factory in contenders(device).items():
        if names is not None and name not in names and name != DEFAULT_PATH:
            continue
        params = [torch.nn.Parameter(t.clone().to(device)) for t in init]
        runs[name] = (params, factory(params))

    def new_gradients() -> None:
        grads = [(torch.randn(s, generator=grad_gen, device=grad_gen.device)
                  * 1e-3).to(device) for s in shapes]
        for params, _ in runs.values():
            for p, g in zip(params, grads):
                p.grad = g  # shared, read-only for every contender

    for _ in range(warmup):  # state, anchors, allocator warm-up
        new_gradients()
        for _, optimizer in runs.values():
            optimizer.step()
    probe = BandwidthProbe(device, probe_numel)
    times: Dict[str, List[float]] = {name: [] for name in runs}
    projected = []
    order = list(runs) + [None]  # None: the bandwidth probe
    shuffle = random.Random(seed)
    for _ in range(rounds):
        new_gradients()
        shuffle.shuffle(order)
        for name in order:
            if name is None:
                probe()
                continue
            _sync(device)
            start = time.perf_counter()
            runs[name][1].step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
        projected.append(runs[DEFAULT_PATH][1].projection_statistics()
                         ['projected_fraction'])
    bandwidth = probe.bytes_per_s()
    results = {}
    for name, (_, optimizer) in runs.items():
        traffic = step_traffic_bytes(optimizer)
        results[name] = dict(
            median_s=statistics.median(times[name]),
            state_per_param=state_bytes_per_param_byte(optimizer),
            traffic_bytes=traffic, floor_s=traffic / bandwidth)
    return dict(results=results, bandwidth=bandwidth,
                projected_fraction=statistics.median(projected))


def anchor_dtype_effect(shapes: Sequence[Tuple[int, ...]], steps: int = 20,
                        seed: int = 0) -> Dict[str, float]:
    """How far bfloat16 anchors move training from float32 anchors.

    Both runs start from the same weights and see the same gradients (fresh
    random ones each step) for ``steps`` steps of AdamSPD (lambda 1). Returns
    the size of the difference between the two runs' weights relative to the
    size of the fine-tuning update itself (``|p_bf16 - p_fp32| /
    |p_fp32 - p0|`` over all parameters) and the fraction of projections on
    which the two runs disagreed.
    """
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) * 0.02 for s in shapes]
    runs = {}
    for dtype in (None, 'bfloat16'):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        runs[dtype] = (params, AdamSPD(params, lr=1e-3, weight_decay=1.0,
                                       anchor_dtype=dtype))
    disagreements = considered = 0
    for _ in range(steps):
        grads = [torch.randn(s, generator=gen) * 1e-3 for s in shapes]
        projected = {}
        for dtype, (params, optimizer) in runs.items():
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
            projected[dtype] = torch.cat(optimizer._last_ratios) > 0
        disagreements += int((projected[None] != projected['bfloat16']).sum())
        considered += projected[None].numel()
    with torch.no_grad():
        update = sum(float(((p - p0)**2).sum())
                     for p, p0 in zip(runs[None][0], init))**0.5
        gap = sum(float(((a - b)**2).sum())
                  for a, b in zip(runs[None][0], runs['bfloat16'][0]))**0.5
    return dict(relative_weight_gap=gap / update,
                projection_disagreement=disagreements / considered)


def format_table(model: str, numel: int, results: Dict, bandwidth: float,
                 projected_fraction: float) -> str:
    """Markdown table of one model's results (``bandwidth`` in bytes/s)."""
    foreach = results[BASELINE_FOREACH]['median_s']
    fused = results.get(BASELINE_FUSED, {}).get('median_s')
    lines = [
        f'{model}: {numel / 1e6:.1f}M parameters; memory bandwidth '
        f'{bandwidth / 1e9:.1f} GB/s; {DEFAULT_PATH} projected '
        f'{projected_fraction:.0%} of the tensors per step (median)',
        '',
        '| optimizer | median step (ms) | vs AdamW(foreach) | vs AdamW(fused) '
        '| vs its traffic floor | bytes / param | state / param bytes |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for name, r in results.items():
        vs_fused = f'{r["median_s"] / fused:.2f}x' if fused else 'n/a'
        vs_floor = f'{r["median_s"] / r["floor_s"]:.2f}x'
        lines.append(f'| {name} | {r["median_s"] * 1e3:.1f} | '
                     f'{r["median_s"] / foreach:.2f}x | {vs_fused} | '
                     f'{vs_floor} | {r["traffic_bytes"] / numel:.0f} | '
                     f'{r["state_per_param"]:.2f} |')
    return '\n'.join(lines)


def check_targets(report: Dict, device: torch.device) -> List[str]:
    """One line per target that applies to ``device`` and the models in
    ``report`` (other keys of it are ignored): the measured ratio and
    whether the target is met."""
    lines = []
    for device_type, model, baseline, limit in TARGETS:
        if device_type != device.type or model not in report:
            continue
        results = report[model]['results']
        if baseline not in results:
            lines.append(f'Target {DEFAULT_PATH} <= {limit}x {baseline} on '
                         f'{model}: {baseline} unavailable, not measured.')
            continue
        ratio = results[DEFAULT_PATH]['median_s'] / results[baseline][
            'median_s']
        verdict = 'met' if ratio <= limit else 'NOT met'
        lines.append(f'Target {DEFAULT_PATH} <= {limit}x {baseline} on '
                     f'{model}: {ratio:.2f}x, {verdict}.')
    for model, entry in report.items():
        if model in VIT_CONFIGS:
            state = entry['results'][DEFAULT_PATH]['state_per_param']
            verdict = 'met' if state <= TARGET_STATE else 'NOT met'
            lines.append(f'Target {DEFAULT_PATH} state <= {TARGET_STATE}x '
                         f'parameter bytes on {model}: {state:.2f}x, '
                         f'{verdict}.')
    return lines


def end_to_end(config: str, options: Dict, iters: int,
               repeats: int = 5) -> Dict[str, float]:
    """Median training iteration time of ``config`` with AdamSPD and AdamW.

    The config is trained for ``iters`` iterations (``train_cfg`` switched to
    iteration-based, no validation, no checkpoints) once per optimizer and
    repeat, alternating AdamSPD and AdamW; the iteration times mmengine
    records (``train/time``) are pooled per optimizer, the first quarter of
    each run dropped as warm-up. The sampler becomes infinite (same
    shuffling) so no epoch restart lands in the timed iterations. Returns
    the medians (s), the ratio of iterations per second AdamSPD / AdamW
    from the pooled medians, and the lowest and highest of the per-repeat
    ratios (the run-to-run noise).
    """
    import tempfile
    import uuid

    from mmengine.config import Config
    from mmengine.runner import Runner

    times: Dict[str, List[float]] = {'AdamSPD': [], 'AdamW': []}
    repeat_ratios = []
    for _ in range(repeats):
        run_medians = {}
        for name in times:
            cfg = Config.fromfile(config)
            cfg.merge_from_dict(options or {})
            optimizer = cfg.optim_wrapper.optimizer
            if name == 'AdamW':
                optimizer.type, optimizer.weight_decay = 'AdamW', 0.05
            else:
                optimizer.type = 'AdamSPD'
                optimizer.setdefault('weight_decay', 1.0)
            cfg.train_cfg = dict(by_epoch=False, max_iters=iters,
                                 val_interval=iters + 1)
            # mmengine's iteration loop sleeps 2 s at each restart of a
            # finite sampler; an infinite one never restarts
            sampler = cfg.train_dataloader.get('sampler') or {}
            cfg.train_dataloader.sampler = dict(
                type='InfiniteSampler', shuffle=sampler.get('shuffle', True))
            cfg.default_hooks.checkpoint = dict(
                type='CheckpointHook', interval=iters + 1, by_epoch=False)
            cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
            cfg.log_level = 'WARNING'
            cfg.experiment_name = f'e2e_{name}_{uuid.uuid4().hex}'
            with tempfile.TemporaryDirectory() as work_dir:
                cfg.work_dir = work_dir
                runner = Runner.from_cfg(cfg)
                runner.train()
                history = runner.message_hub.get_scalar('train/time')
                values = [float(v) for v in history.data[0]]
            kept = values[len(values) // 4:]
            times[name].extend(kept)
            run_medians[name] = statistics.median(kept)
        repeat_ratios.append(run_medians['AdamW'] / run_medians['AdamSPD'])
    medians = {name: statistics.median(v) for name, v in times.items()}
    return dict(adamspd_s=medians['AdamSPD'], adamw_s=medians['AdamW'],
                throughput_ratio=medians['AdamW'] / medians['AdamSPD'],
                repeat_ratio_min=min(repeat_ratios),
                repeat_ratio_max=max(repeat_ratios))


README_START = '<!-- benchmark_optimizer.py:start -->'
README_END = '<!-- benchmark_optimizer.py:end -->'


def machine_description(device: torch.device) -> str:
    """One line naming the machine the figures come from."""
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo', encoding='utf-8') as f:
                models = [line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')]
            name = models[0] if models else name
        except OSError:
            pass
    kernel = (f'compiled CPU kernel ({_native.extension.cpu_isa()})'
              if _native.extension is not None else 'no compiled CPU kernel')
    return (f'{name}, {torch.get_num_threads()} threads, torch '
            f'{torch.__version__}, mmspd {kernel}')


def update_readme(path: str, section: str) -> None:
    """Replace the text between the benchmark markers of ``path``.

    Raises ``ValueError`` when the file lacks the two markers.
    """
    with open(path, encoding='utf-8') as f:
        text = f.read()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f'{path} has no {README_START} ... {README_END} '
                         f'section to update')
    text = (text[:start + len(README_START)] + '\n' + section.strip() +
            '\n' + text[end:])
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def _key_value(option: str) -> str:
    """Check one ``--cfg-options`` item; mmengine's DictAction parses it
    (numbers, lists, booleans as in the tools)."""
    if '=' not in option:
        raise argparse.ArgumentTypeError(
            f'--cfg-options expects KEY=VALUE, got {option!r}')
    return option


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['vit-s16', 'vit-b16'],
                        choices=sorted(VIT_CONFIGS))
    parser.add_argument('--rounds', type=int, default=15,
                        help='timed steps per optimizer (median taken)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--end-to-end', metavar='CONFIG',
                        help='also time training iterations of CONFIG with '
                        'AdamSPD and with AdamW')
    parser.add_argument('--e2e-iters', type=int, default=200)
    parser.add_argument('--e2e-repeats', type=int, default=5,
                        help='end-to-end runs per optimizer (alternating)')
    parser.add_argument('--cfg-options', nargs='+', default={},
                        type=_key_value, action=DictAction,
                        metavar='KEY=VALUE',
                        help='overrides for the --end-to-end config')
    parser.add_argument('--update-readme', metavar='README',
                        help='write the tables into this file between its '
                        'benchmark markers')
    parser.add_argument('--anchor-dtype-effect', action='store_true',
                        help='also measure how bfloat16 anchors change the '
                        'weights (20 steps on the first model)')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f'--rounds must be >= 1, got {args.rounds}')
    if args.e2e_iters < 8:
        parser.error(f'--e2e-iters must be >= 8, got {args.e2e_iters}')
    if args.e2e_repeats < 1:
        parser.error(f'--e2e-repeats must be >= 1, got {args.e2e_repeats}')
    if args.warmup < 1:
        parser.error(f'--warmup must be >= 1 (the first step allocates '
                     f'state), got {args.warmup}')
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    header = (f'Machine: {machine_description(device)}; device {device}; '
              f'median of {args.rounds} interleaved steps per optimizer. '
              f'Traffic floor: the bytes a step must move (bytes / param) '
              f'at the memory bandwidth measured between the same steps '
              f'(in-place a += s * b on 128 MB tensors).')
    print(header + '\n')
    sections = [header]
    report = {}
    for model in args.models:
        shapes = vit_param_shapes(*VIT_CONFIGS[model])
        numel = sum(torch.Size(s).numel() for s in shapes)
        measured = benchmark_model(shapes, device, args.rounds, args.warmup)
        report[model] = dict(numel=numel, **measured)
        table = format_table(model, numel, measured['results'],
                             measured['bandwidth'],
                             measured['projected_fraction'])
        sections.append(table)
        print(table, end='\n\n')
        sys.stdout.flush()
    if args.anchor_dtype_effect:
        shapes = vit_param_shapes(*VIT_CONFIGS[args.models[0]])
        effect = anchor_dtype_effect(shapes)
        report['anchor_dtype_effect'] = effect
        line = (f"anchor_dtype='bfloat16' vs float32 anchors on "
                f"{args.models[0]}, 20 AdamSPD steps: weights differ by "
                f"{effect['relative_weight_gap']:.2%} of the fine-tuning "
                f"update; projection decisions differ on "
                f"{effect['projection_disagreement']:.2%} of tensor-steps.")
        sections.append(line)
        print(line + '\n')
    if args.end_to_end:
        e2e = end_to_end(args.end_to_end, args.cfg_options, args.e2e_iters,
                         args.e2e_repeats)
        report['end_to_end'] = dict(config=args.end_to_end, **e2e)
        verdict = 'met' if e2e['throughput_ratio'] >= 0.97 else 'NOT met'
        line = (f'End to end, {args.end_to_end}: median iteration '
                f'{e2e["adamspd_s"] * 1e3:.1f} ms with AdamSPD, '
                f'{e2e["adamw_s"] * 1e3:.1f} ms with AdamW; throughput '
                f'AdamSPD / AdamW = {e2e["throughput_ratio"]:.3f} (target '
                f'>= 0.97: {verdict}; single repeats '
                f'{e2e["repeat_ratio_min"]:.3f}-{e2e["repeat_ratio_max"]:.3f}'
                f', {args.e2e_iters} iterations each).')
        sections.append(line)
        print(line + '\n')
    targets = check_targets(report, device)
    sections.append('\n'.join(f'- {line}' for line in targets))
    print('\n'.join(targets))
    if args.update_readme:
        update_readme(args.update_readme, '\n\n'.join(sections))
        print(f'tables written into {args.update_readme}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(device=str(device), torch=torch.__version__,
                           threads=torch.get_num_threads(),
                           rounds=args.rounds, models=report), f, indent=2)
        print(f'results written to {args.json}')
    return report


if __name__ == '__main__':
    main()
