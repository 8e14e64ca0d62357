#!/usr/bin/env python
"""Evaluate a checkpoint with the test set(s) of an mmspd/mmseg/mmpretrain
config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
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

# configs/demo custom-imports projects.spd_demo (a source checkout's)
add_example_projects(__file__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
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
    # a file, or the directory of a sharded (FSDP2Strategy) checkpoint
    if not (osp.isfile(args.checkpoint)
            or is_sharded_checkpoint(args.checkpoint)):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not '
                                f'exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    configure_launch(cfg, args.launcher)
    add_strict_loading_hook(cfg)  # exact pretrained / load_from weights
    metrics = build_runner(cfg).test()
    finish_launch()
    return metrics


if __name__ == '__main__':
    main()
