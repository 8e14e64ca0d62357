#!/usr/bin/env python
"""Evaluate a checkpoint with the test set(s) of an mmspd/mmseg/mmpretrain
config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
    python tools/test.py CONFIG --zero-shot [--work-dir DIR] [...]

``--zero-shot`` tests the model as the config initialises it, with no
checkpoint: for a ``*_zeroshot-head.py`` config, CLIP's backbone and CLIP's
zero-shot head (their ``init_cfg`` files), i.e. the zero-shot row. Every
tensor must come from the config's pretrained files (a zero or random head
is refused). Its run goes to ``DIR`` or, by default, to the ``zero_shot``
folder of the config's work dir (``work_dirs/<config>/zero_shot``), and
``zero_shot.json`` beside its ``robustness.json`` marks it as the
zero-shot model for ``tools/analysis_tools/robustness_report.py``
(:mod:`mmspd.robust_ft.zero_shot`).
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import mmspd  # noqa: F401  (registers optimizers, constructor, hooks)
from mmspd.config_lookup import add_example_projects
from mmspd.engine.launch import (LAUNCHERS, build_runner, configure_launch,
                                 finish_launch, load_config)
from mmspd.engine.sharded_checkpoint import is_sharded_checkpoint
from mmspd.engine.strict_loading import add_strict_loading_hook
from mmspd.robust_ft.zero_shot import ZERO_SHOT_DIR, run_zero_shot_test

# configs/demo custom-imports projects.spd_demo (a source checkout's)
add_example_projects(__file__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file (none with --zero-shot)')
    parser.add_argument(
        '--zero-shot', action='store_true',
        help='test the model as the config initialises it (pretrained '
        'backbone and zero-shot head), no checkpoint')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.zero_shot and args.checkpoint is not None:
        raise ValueError(f'--zero-shot tests the model without a '
                         f'checkpoint, but {args.checkpoint!r} was given: '
                         f'give one or the other')
    if not args.zero_shot and args.checkpoint is None:
        raise ValueError('No checkpoint given: expected CONFIG CHECKPOINT, '
                         'or CONFIG --zero-shot to test the model as the '
                         'config initialises it')
    # a file, or the directory of a sharded (FSDP2Strategy) checkpoint
    if not args.zero_shot and not (osp.isfile(args.checkpoint)
                                   or is_sharded_checkpoint(args.checkpoint)):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not '
                                f'exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.resume = False
    if not args.zero_shot:
        cfg.load_from = args.checkpoint
    elif args.work_dir is None:
        cfg.work_dir = osp.join(cfg.work_dir, ZERO_SHOT_DIR)
    configure_launch(cfg, args.launcher)
    add_strict_loading_hook(cfg)  # exact pretrained / load_from weights
    metrics = (run_zero_shot_test(cfg) if args.zero_shot
               else build_runner(cfg).test())
    finish_launch()
    return metrics


if __name__ == '__main__':
    main()
