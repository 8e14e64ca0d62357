#!/usr/bin/env python
"""Time training iterations of a config with AdamW and with mmspd's optimizers.

The config is trained for ``--iters`` iterations (``train_cfg`` switched to
iteration-based, no validation, no checkpoints) once per optimizer and
repeat, all in this one process, the optimizers taking turns within each
repeat. The iteration times mmengine records (``train/time``) are pooled
per optimizer, the first quarter of each run dropped as warm-up. The
sampler becomes infinite (same shuffling), so no epoch restart lands in the
timed iterations. Printed: each optimizer's median iteration time and its
ratio to AdamW's, and the lowest and highest ratio of single repeats (the
run-to-run noise).

Where the config's optimizer is of another type, the optimizer timed keeps
its ``lr``, ``betas``, ``eps`` and ``amsgrad`` and gets ``weight_decay``
0.05 (AdamW), 1.0 (AdamSPD) or 0.01 (AdamL2SP); where it is of the same
type, the config's settings are kept (``weight_decay`` defaulting so).

Usage::

    python tools/analysis_tools/benchmark_training.py CONFIG \\
        [--optimizers AdamSPD AdamL2SP] [--iters 200] [--repeats 5] \\
        [--cfg-options KEY=VALUE ...] [--json training.json]
"""
import argparse
import json
import statistics
import tempfile
import uuid
from typing import Dict, List, Sequence

from mmengine.config import Config, DictAction

from mmspd.config_lookup import add_example_projects

# configs/demo custom-imports projects.spd_demo (a source checkout's)
add_example_projects(__file__)

BASELINE = 'AdamW'
#: optimizer type -> weight decay given when the config has another type
WEIGHT_DECAY = {'AdamW': 0.05, 'AdamSPD': 1.0, 'AdamL2SP': 1e-2}
#: the config optimizer's settings every one of them takes
ADAM_KEYS = ('lr', 'betas', 'eps', 'amsgrad')


def training_config(config: str, options: Dict, optimizer: str,
                    iters: int) -> Config:
    """``config`` (with ``options`` merged) set up to train ``iters``
    iterations with ``optimizer``, without validation or checkpoints."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options or {})
    opt = cfg.optim_wrapper.optimizer
    if opt.get('type') != optimizer:
        kept = {key: opt[key] for key in ADAM_KEYS if key in opt}
        cfg.optim_wrapper.optimizer = dict(
            type=optimizer, weight_decay=WEIGHT_DECAY[optimizer], **kept)
    else:
        opt.setdefault('weight_decay', WEIGHT_DECAY[optimizer])
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters,
                         val_interval=iters + 1)
    # mmengine's iteration loop sleeps 2 s at each restart of a finite
    # sampler; an infinite one never restarts
    sampler = cfg.train_dataloader.get('sampler') or {}
    cfg.train_dataloader.sampler = dict(
        type='InfiniteSampler', shuffle=sampler.get('shuffle', True))
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters + 1, by_epoch=False)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.log_level = 'WARNING'
    cfg.experiment_name = f'benchmark_{optimizer}_{uuid.uuid4().hex}'
    return cfg


def iteration_times(cfg: Config) -> List[float]:
    """Train ``cfg`` in a temporary work dir; the iteration times (s)."""
    from mmengine.runner import Runner
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        runner = Runner.from_cfg(cfg)
        runner.train()
        history = runner.message_hub.get_scalar('train/time')
        return [float(v) for v in history.data[0]]


def benchmark_training(config: str, options: Dict,
                       optimizers: Sequence[str], iters: int,
                       repeats: int) -> Dict:
    """Per optimizer (AdamW first): ``median_s`` of the pooled iteration
    times, ``ratio`` (``median_s`` over AdamW's) and, but for AdamW,
    ``repeat_ratio_min`` / ``repeat_ratio_max`` (the same ratio from each
    repeat's own medians)."""
    names = [BASELINE] + [name for name in optimizers if name != BASELINE]
    pooled: Dict[str, List[float]] = {name: [] for name in names}
    repeat_ratios: Dict[str, List[float]] = {name: [] for name in names}
    for _ in range(repeats):
        medians = {}
        for name in names:
            times = iteration_times(
                training_config(config, options, name, iters))
            kept = times[len(times) // 4:]
            pooled[name].extend(kept)
            medians[name] = statistics.median(kept)
        for name in names:
            repeat_ratios[name].append(medians[name] / medians[BASELINE])
    baseline = statistics.median(pooled[BASELINE])
    results = {}
    for name in names:
        median = statistics.median(pooled[name])
        results[name] = dict(median_s=median, ratio=median / baseline)
        if name != BASELINE:
            results[name].update(repeat_ratio_min=min(repeat_ratios[name]),
                                 repeat_ratio_max=max(repeat_ratios[name]))
    return results


def _key_value(option: str) -> str:
    """Check one ``--cfg-options`` item; mmengine's DictAction parses it
    (numbers, lists, booleans as in the tools)."""
    if '=' not in option:
        raise argparse.ArgumentTypeError(
            f'--cfg-options expects KEY=VALUE, got {option!r}')
    return option


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the training config to time')
    parser.add_argument('--optimizers', nargs='+', default=['AdamSPD'],
                        choices=sorted(WEIGHT_DECAY),
                        help='timed beside AdamW (default: AdamSPD)')
    parser.add_argument('--iters', type=int, default=200,
                        help='training iterations per run')
    parser.add_argument('--repeats', type=int, default=5,
                        help='runs per optimizer (taking turns)')
    parser.add_argument('--cfg-options', nargs='+', default={},
                        type=_key_value, action=DictAction,
                        metavar='KEY=VALUE', help='overrides for the config')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the numbers to this JSON file')
    args = parser.parse_args(argv)
    if args.iters < 8:
        parser.error(f'--iters must be >= 8 (a quarter is dropped as '
                     f'warm-up), got {args.iters}')
    if args.repeats < 1:
        parser.error(f'--repeats must be >= 1, got {args.repeats}')
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    results = benchmark_training(args.config, args.cfg_options,
                                 args.optimizers, args.iters, args.repeats)
    print(f'{args.config}: median training iteration over {args.repeats} '
          f'run(s) of {args.iters} iterations per optimizer')
    for name, r in results.items():
        noise = ''
        if name != BASELINE:
            noise = (f' (single runs {r["repeat_ratio_min"]:.3f}x-'
                     f'{r["repeat_ratio_max"]:.3f}x)')
        print(f'  {name}: {r["median_s"] * 1e3:.2f} ms, '
              f'{r["ratio"]:.3f}x {BASELINE}{noise}')
    report = dict(config=args.config, iters=args.iters,
                  repeats=args.repeats, baseline=BASELINE,
                  optimizers=results)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
        print(f'results written to {args.json}')
    return report


if __name__ == '__main__':
    main()
