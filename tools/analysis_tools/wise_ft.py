#!/usr/bin/env python
"""WiSE-FT: test ``(1 - alpha) * pretrained + alpha * fine-tuned`` weights.

    python tools/analysis_tools/wise_ft.py CONFIG CHECKPOINT
        [--alphas 0 0.25 0.5 0.75 1] [--work-dir DIR]
        [--zero-shot-head FILE] [--metric accuracy/top1]
        [--cfg-options key=value ...]

CONFIG is the config the checkpoint was trained with: its ``init_cfg`` /
``load_from`` give the pretrained weights (as training loaded them) and its
``RobustTestLoop`` tests every alpha on the ID and OOD sets. Works with
checkpoints of any full fine-tuning method (AdamW, L2-SP, AdamSPD), so
"SPD + WiSE-FT" is this one command. The head has no pretrained value: by
default the fine-tuned head is used at every alpha; ``--zero-shot-head``
gives a head to interpolate from instead. A ``*_zeroshot-head.py`` config
loads CLIP's zero-shot head, so its head is interpolated from that value
and ``alpha = 0`` is the zero-shot model (the numbers of ``tools/test.py
CONFIG --zero-shot``). ``alpha = 1`` reproduces
``tools/test.py`` exactly. Writes ``DIR/wise_ft.json``, ``DIR/wise_ft.png``
and one test run per alpha under ``DIR/alpha_<alpha>/`` (default DIR:
``<checkpoint's folder>/wise_ft``, which
``tools/analysis_tools/robustness_report.py`` finds). The logic lives in
:mod:`mmspd.robust_ft.wise_ft`.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

import mmspd  # noqa: F401  (registers optimizers, hooks, the test loop)
from mmspd.config_lookup import add_example_projects
from mmspd.engine.launch import load_config
from mmspd.robust_ft.wise_ft import DEFAULT_ALPHAS, check_alphas, run_wise_ft

# configs/demo custom-imports projects.spd_demo (a source checkout's)
add_example_projects(__file__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='WiSE-FT: test interpolations of the pretrained and '
        'fine-tuned weights on the ID and OOD sets')
    parser.add_argument('config', help='the config the checkpoint was '
                        'trained with')
    parser.add_argument('checkpoint', help='fine-tuned checkpoint')
    parser.add_argument('--alphas', type=float, nargs='+',
                        default=list(DEFAULT_ALPHAS),
                        help='mixing coefficients in [0, 1] (0: pretrained, '
                        '1: fine-tuned; default: 0 0.25 0.5 0.75 1)')
    parser.add_argument('--work-dir', help='output folder (default: '
                        '<checkpoint folder>/wise_ft)')
    parser.add_argument('--zero-shot-head', help='checkpoint holding the '
                        'model\'s head tensors to interpolate from (default:'
                        ' the fine-tuned head at every alpha)')
    parser.add_argument('--metric', help='metric of the curve (default: '
                        'the first ID metric with an OOD average)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    alphas = check_alphas(args.alphas)  # fail before loading anything
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not '
                                f'exist')
    work_dir = args.work_dir or osp.join(
        osp.dirname(osp.abspath(args.checkpoint)), 'wise_ft')
    cfg = load_config(args.config, args.cfg_options, work_dir)
    return run_wise_ft(cfg, args.checkpoint, alphas, work_dir,
                       zero_shot_head=args.zero_shot_head,
                       metric=args.metric)


if __name__ == '__main__':
    main()
