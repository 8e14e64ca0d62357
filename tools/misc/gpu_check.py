#!/usr/bin/env python
"""The first command a session with a GPU runs: every CUDA check, one JSON.

Prints one JSON object (and writes it to ``--json`` if given) with:

``environment``
    Python, torch, Triton, GPU, and which OpenMMLab packages import.
``cuda_tests``
    ``pytest tests/test_optim`` (the CUDA tests run there, the others as
    usual): counts and the names of failures.
``benchmark``
    ``tools/benchmark_optimizer.py``'s measurement on ViT-B/16, ViT-L/14
    and ViT-H/14 parameter shapes: per optimizer the median step, its ratio
    to ``AdamW(fused=True)`` measured in the same process, and to the
    memory-bandwidth floor (bytes a step must move / measured bandwidth).
``host_syncs``
    Host synchronisations per AdamSPD / AdamL2SP step, counted under
    ``torch.cuda.set_sync_debug_mode('warn')``, and whether a step passes
    under ``'error'``.
``cuda_graph``
    A captured capturable step replayed (lr a tensor changed between
    replays) against the same steps run eagerly.
``amp``
    fp16 with GradScaler: a step with an inf gradient is skipped and leaves
    parameters, moments and anchors untouched; bf16 autocast trains.
``training``
    Peak memory and iterations/s of a few real-size training iterations
    on synthetic data at the configs' per-GPU batch: a ViT-B/16 (timm's
    architecture, random weights) and a Swin-T UperNet (needs mmseg and
    mmcv's compiled ops; reported as skipped where they do not import).

Every part that cannot run says why (``"skipped": "<reason>"``) and the
JSON is printed all the same, so the script runs on a CPU-only machine
too (the check of its fallbacks). Parts that fail record ``"error"``.
A time budget (``--budget-s``) skips what would not fit.

Usage::

    python tools/misc/gpu_check.py [--json out.json] [--budget-s 450]
"""
import argparse
import ast
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import torch  # noqa: E402

#: ViT shapes of the benchmark: name -> (embedding dim, depth, patch)
BENCHMARK_MODELS = {
    'vit-b16': (768, 12, 16),
    'vit-l14': (1024, 24, 14),
    'vit-h14': (1280, 32, 14),
}
#: optimizers timed on every model (a subset of the benchmark's, so that
#: eight copies of ViT-H's state are not needed)
BENCHMARK_CONTENDERS = ('AdamW(fused)', 'AdamW(foreach)', 'AdamSPD(default)',
                        'AdamSPD(foreach)', 'AdamSPD(fused=True)',
                        "AdamSPD(anchor_dtype='bfloat16')",
                        'AdamL2SP(default)')
NO_CUDA = 'skipped: no CUDA device'


def _importable(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # ImportError, or a broken extension
        return f'no ({type(error).__name__}: {str(error)[:120]})'
    return getattr(module, '__version__', 'yes')


def environment() -> Dict:
    info = dict(python=platform.python_version(), torch=torch.__version__,
                cuda_available=torch.cuda.is_available())
    info['triton'] = _importable('triton')
    for name in ('mmengine', 'mmcv', 'mmcv.ops', 'mmseg', 'mmpretrain',
                 'timm'):
        info[name] = _importable(name)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(
            props.total_memory / 2**30, 1), capability='%d.%d' % (
                props.major, props.minor))
        from mmspd.optim import _triton_kernels
        info['triton_kernel'] = (_triton_kernels.unavailable_reason(
            torch.device('cuda')) or 'available')
    return info


def cuda_tests(timeout_s: float) -> Dict:
    """``pytest tests/test_optim`` in a subprocess; counts and failures."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, 'junit.xml')
        command = [sys.executable, '-m', 'pytest', 'tests/test_optim', '-q',
                   '-p', 'no:cacheprovider', f'--junitxml={report}']
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return dict(error=f'pytest ran past {timeout_s:.0f} s')
        if not os.path.exists(report):
            return dict(error='pytest wrote no report', returncode=(
                done.returncode), output_tail=(done.stdout +
                                               done.stderr)[-2000:])
        cases = ElementTree.parse(report).getroot().iter('testcase')
        counts = dict(passed=0, failed=0, skipped=0)
        failures, cuda_ran, skip_reasons = [], [], {}
        for case in cases:
            name = f'{case.get("classname")}::{case.get("name")}'
            if case.find('failure') is not None or case.find(
                    'error') is not None:
                counts['failed'] += 1
                failures.append(name)
            elif case.find('skipped') is not None:
                counts['skipped'] += 1
                reason = case.find('skipped').get('message', '')
                skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
            else:
                counts['passed'] += 1
                if 'cuda' in name.lower():
                    cuda_ran.append(name)
        return dict(returncode=done.returncode, **counts,
                    cuda_tests_passed=len(cuda_ran), failures=failures,
                    skip_reasons=skip_reasons)


def benchmark(rounds: int, models: List[str]) -> Dict:
    import benchmark_optimizer as bench
    device = torch.device('cuda')
    out = {}
    for model in models:
        dim, depth, patch = BENCHMARK_MODELS[model]
        shapes = bench.vit_param_shapes(dim, depth, patch=patch)
        measured = bench.benchmark_model(shapes, device, rounds, warmup=2,
                                         names=BENCHMARK_CONTENDERS)
        fused = measured['results'][bench.BASELINE_FUSED]['median_s']
        out[model] = dict(
            numel=sum(torch.Size(s).numel() for s in shapes),
            bandwidth_gb_s=round(measured['bandwidth'] / 1e9, 1),
            projected_fraction=measured['projected_fraction'],
            optimizers={
                name: dict(median_ms=round(r['median_s'] * 1e3, 3),
                           vs_adamw_fused=round(r['median_s'] / fused, 3),
                           vs_bandwidth_floor=round(
                               r['median_s'] / r['floor_s'], 3),
                           state_per_param=round(r['state_per_param'], 3))
                for name, r in measured['results'].items()
            })
        torch.cuda.empty_cache()
    return out


def _vit_params(device, dtype=torch.float32):
    import benchmark_optimizer as bench
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(
        device, dtype)) for s in bench.vit_param_shapes(768, 12)]


def host_syncs() -> Dict:
    from mmspd.optim import AdamL2SP, AdamSPD
    out = {}
    for cls in (AdamSPD, AdamL2SP):
        for capturable in (False, True):
            params = _vit_params('cuda')
            opt = cls(params, lr=1e-4, weight_decay=1.0,
                      capturable=capturable)
            for p in params:
                p.grad = torch.randn_like(p) * 1e-3
            opt.step()  # creates the state
            torch.cuda.synchronize()
            counts = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                torch.cuda.set_sync_debug_mode('warn')
                try:
                    for _ in range(3):
                        before = len(caught)
                        opt.step()
                        counts.append(len(caught) - before)
                finally:
                    torch.cuda.set_sync_debug_mode('default')
            torch.cuda.set_sync_debug_mode('error')
            try:
                opt.step()
                error_mode = 'passed'
            except RuntimeError as error:
                error_mode = f'raised: {str(error)[:200]}'
            finally:
                torch.cuda.set_sync_debug_mode('default')
            key = f'{cls.__name__}(capturable={capturable})'
            out[key] = dict(syncs_per_step=max(counts),
                            error_mode=error_mode,
                            kernel=_kernel_of(opt))
    return out


def _kernel_of(opt) -> str:
    from mmspd.optim.anchored_adam import select_kernel
    group = opt.param_groups[0]
    return select_kernel(group, group['params'])


def cuda_graph() -> Dict:
    from mmspd.optim import AdamL2SP, AdamSPD
    out = {}
    for cls in (AdamSPD, AdamL2SP):
        torch.manual_seed(0)
        start = [torch.randn(256, 128, device='cuda'),
                 torch.randn(128, device='cuda'),
                 torch.randn(3, 3, 8, 8, device='cuda')]
        stream = [[torch.randn_like(t) * 0.1 for t in start]
                  for _ in range(8)]
        lrs = [1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 2e-3, 1e-3, 0.0]
        runs = {}
        for name in ('graphed', 'eager'):
            params = [torch.nn.Parameter(t.clone()) for t in start]
            lr = torch.tensor(lrs[0], device='cuda')
            runs[name] = (params, lr, cls(params, lr=lr, weight_decay=1.0,
                                          capturable=True))
        g_params, g_lr, g_opt = runs['graphed']
        static = [torch.zeros_like(t) for t in start]
        for p, g in zip(g_params, static):
            p.grad = g
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for k in range(3):
                for g, new in zip(static, stream[k]):
                    g.copy_(new)
                g_opt.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            g_opt.step()
        e_params, e_lr, e_opt = runs['eager']
        gaps = []
        for k in range(8):
            if k >= 3:
                g_lr.fill_(lrs[k])
                for g, new in zip(static, stream[k]):
                    g.copy_(new)
                graph.replay()
            e_lr.fill_(lrs[k])
            for p, g in zip(e_params, stream[k]):
                p.grad = g.clone()
            e_opt.step()
            if k >= 3:
                gaps.append(max(float((a - b).abs().max())
                                for a, b in zip(g_params, e_params)))
        out[cls.__name__] = dict(
            kernel=_kernel_of(g_opt), replays=5, max_abs_gap=max(gaps),
            equal=max(gaps) <= 1e-6)
    return out


def amp() -> Dict:
    from mmspd.optim import AdamSPD
    out = {}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                                torch.nn.Linear(128, 10)).cuda()
    opt = AdamSPD(model.parameters(), lr=1e-3, weight_decay=1.0)
    scaler = torch.amp.GradScaler('cuda')
    x = torch.randn(32, 64, device='cuda')
    y = torch.randint(0, 10, (32, ), device='cuda')

    def loss_fn():
        with torch.autocast('cuda', dtype=torch.float16):
            return torch.nn.functional.cross_entropy(model(x), y)

    for _ in range(3):
        opt.zero_grad()
        scaler.scale(loss_fn()).backward()
        scaler.step(opt)
        scaler.update()

    def snapshot():
        return [t.detach().clone() for p in model.parameters()
                for t in [p] + [opt.state[p][k] for k in
                                ('exp_avg', 'exp_avg_sq', 'anchor')]]

    before = snapshot()
    steps_before = [float(opt.state[p]['step']) for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(loss_fn()).backward()
    next(model.parameters()).grad[0, 0] = float('inf')
    scale = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    after = snapshot()
    out['fp16_grad_scaler'] = dict(
        skipped_step_left_state_untouched=all(
            torch.equal(a, b) for a, b in zip(before, after)),
        step_counters_unchanged=steps_before == [
            float(opt.state[p]['step']) for p in model.parameters()],
        scale_reduced=scaler.get_scale() < scale)
    model_bf16 = torch.nn.Sequential(torch.nn.Linear(64, 128),
                                     torch.nn.GELU(),
                                     torch.nn.Linear(128, 10)).cuda()
    opt = AdamSPD(model_bf16.parameters(), lr=1e-3, weight_decay=1.0)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model_bf16(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    out['bf16_autocast'] = dict(first_loss=losses[0], last_loss=losses[-1],
                                trains=losses[-1] < 0.5 * losses[0])
    return out


def config_batch(path: str, default: int) -> int:
    """``train_dataloader``'s ``batch_size`` in a config file (read with
    ``ast``, no mmengine needed), or ``default``."""
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == 'train_dataloader'
                for t in node.targets) and isinstance(node.value, ast.Call)):
            for keyword in node.value.keywords:
                if keyword.arg == 'batch_size':
                    return ast.literal_eval(keyword.value)
    return default


def _time_training(model, batch, make_inputs, loss_fn, optimizer, iters):
    torch.cuda.reset_peak_memory_stats()
    inputs = make_inputs(batch)
    for i in range(iters + 2):
        if i == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = loss_fn(model, inputs)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return dict(it_per_s=round(iters / (time.perf_counter() - start), 2),
                peak_memory_gib=round(torch.cuda.max_memory_allocated() /
                                      2**30, 2))


def training(iters: int) -> Dict:
    from mmspd.optim import AdamSPD
    out = {}
    batch = config_batch('configs/_base_/imagenet_clip_vit-b16.py', 64)
    try:
        import timm
    except ImportError:
        out['vit-b16'] = dict(skipped='needs timm (the ViT-B/16 '
                              'architecture without mmpretrain)')
    else:
        entry = dict(batch=batch, amp='bf16 autocast',
                     model='timm vit_base_patch16_224, random weights')
        for name in ('AdamSPD', 'AdamW(fused)'):
            torch.manual_seed(0)
            model = timm.create_model('vit_base_patch16_224',
                                      pretrained=False).cuda()
            params = list(model.parameters())
            optimizer = (AdamSPD(params, lr=1e-5, weight_decay=1.0)
                         if name == 'AdamSPD' else torch.optim.AdamW(
                             params, lr=1e-5, fused=True))
            entry[name] = _time_training(
                model, batch,
                lambda b: (torch.randn(b, 3, 224, 224, device='cuda'),
                           torch.randint(0, 1000, (b, ), device='cuda')),
                lambda m, xy: torch.nn.functional.cross_entropy(
                    m(xy[0]), xy[1]), optimizer, iters)
            del model, optimizer, params
            torch.cuda.empty_cache()
        entry['it_per_s_ratio_spd_vs_adamw'] = round(
            entry['AdamSPD']['it_per_s'] / entry['AdamW(fused)']['it_per_s'],
            3)
        out['vit-b16'] = entry
    if not str(_importable('mmcv.ops')).startswith('no') and not str(
            _importable('mmseg')).startswith('no'):
        out['swin-t-upernet'] = dict(
            skipped='mmseg and mmcv ops import, but this check does not '
            'build the mmseg model yet')
    else:
        out['swin-t-upernet'] = dict(
            skipped='needs mmcv ops (mmseg UperNet/Swin use mmcv\'s '
            'compiled operators, which this machine lacks)',
            batch=4)
    return out


def run_parts(parts: Dict[str, Callable[[], Dict]], cost_s: Dict[str, float],
              budget_s: float, needs_cuda: Dict[str, bool]) -> Dict:
    """Run each part (in order) that fits in the budget; record skips and
    errors instead of stopping."""
    start = time.perf_counter()
    report = {}
    for name, run in parts.items():
        left = budget_s - (time.perf_counter() - start)
        if needs_cuda.get(name) and not torch.cuda.is_available():
            report[name] = dict(skipped=NO_CUDA)
            continue
        if cost_s.get(name, 0) > left:
            report[name] = dict(skipped=f'skipped: {left:.0f} s left of the '
                                f'budget, about {cost_s[name]:.0f} s needed')
            continue
        began = time.perf_counter()
        try:
            report[name] = run()
        except Exception as error:  # record, go on with the next part
            report[name] = dict(error=f'{type(error).__name__}: {error}',
                                traceback=traceback.format_exc()[-1500:])
        report[name]['seconds'] = round(time.perf_counter() - began, 1)
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', help='also write the JSON here')
    parser.add_argument('--budget-s', type=float, default=450,
                        help='seconds for all parts (default 450)')
    parser.add_argument('--skip-tests', action='store_true',
                        help='do not run pytest (the test-suite itself '
                        'checks this script this way)')
    parser.add_argument('--rounds', type=int, default=10,
                        help='benchmark rounds per model')
    parser.add_argument('--models', nargs='+', default=list(BENCHMARK_MODELS),
                        choices=list(BENCHMARK_MODELS))
    parser.add_argument('--train-iters', type=int, default=10)
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    parts = {
        'environment': environment,
        'cuda_tests': (lambda: dict(skipped='skipped: --skip-tests'))
        if args.skip_tests else (lambda: cuda_tests(timeout_s=180)),
        'host_syncs': host_syncs,
        'cuda_graph': cuda_graph,
        'amp': amp,
        'benchmark': lambda: benchmark(args.rounds, args.models),
        'training': lambda: training(args.train_iters),
    }
    # rough costs on one H200 (s), for the budget
    cost = dict(cuda_tests=60, host_syncs=10, cuda_graph=5, amp=5,
                benchmark=200, training=60)
    needs_cuda = dict(host_syncs=True, cuda_graph=True, amp=True,
                      benchmark=True, training=True)
    report = run_parts(parts, cost, args.budget_s, needs_cuda)
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            f.write(text)
    return report


if __name__ == '__main__':
    main()
