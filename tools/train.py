#!/usr/bin/env python
"""Train a model from an mmspd, mmseg or mmpretrain config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

The config's ``default_scope`` picks the registries (mmseg, mmpretrain, ...).
Distributed launches go through ``tools/dist_train.sh`` / ``slurm_train.sh``;
without a GPU they run on CPU processes (see mmspd/engine/launch.py).
"""
import argparse
import os

from mmengine.config import DictAction

import mmspd  # noqa: F401  (registers optimizers, constructor, hooks)
from mmspd.config_lookup import add_example_projects
from mmspd.engine.launch import (LAUNCHERS, build_runner, configure_launch,
                                 enable_amp, finish_launch, load_config)
from mmspd.engine.resume import (resolve_auto_resume,
                                 use_crash_safe_checkpoints)
from mmspd.engine.strict_loading import add_strict_loading_hook

# configs/demo custom-imports projects.spd_demo (a source checkout's)
add_example_projects(__file__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or (no value) from the '
        'latest complete checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value (e.g. '
        'train_cfg.max_iters=10)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    # torch.distributed.launch passes --local-rank (or --local_rank)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    configure_launch(cfg, args.launcher)
    use_crash_safe_checkpoints(cfg)
    add_strict_loading_hook(cfg)  # exact pretrained / load_from weights
    resolve_auto_resume(cfg)
    build_runner(cfg).train()
    finish_launch()


if __name__ == '__main__':
    main()
