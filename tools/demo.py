#!/usr/bin/env python
"""The SPD demo (``make demo``): fine-tune a pretrained model with AdamW,
L2-SP, AdamSPD and LP-FT, sweep WiSE-FT on the AdamW and AdamSPD runs,
then compare ID accuracy and OOD robustness.

    python tools/demo.py [--work-dir DIR] [--figure PNG] [--seeds 0 1 2]
        [--pretrain-epochs N] [--finetune-epochs N] [--no-reference]
        [--no-lpft] [--no-wise-ft]

Offline, on CPU, in a few minutes: the data are scikit-learn's bundled
digits. Stage outputs are cached in the work folder (default
``$MMSPD_DEMO_DIR`` or ``work_dirs/demo``), so a second run only rebuilds
the report. The demo's code is the example project ``projects/spd_demo``
(see its protocol.py for the protocol), not part of the mmspd package.
"""
import argparse
import os

from mmspd.config_lookup import add_example_projects

# projects/ is a folder of the repository, not of the mmspd package
add_example_projects(__file__)

from projects.spd_demo.pipeline import run_demo  # noqa: E402
from projects.spd_demo.protocol import DemoProtocol  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Fine-tune a pretrained LeNet-5 with AdamW, L2-SP, '
        'AdamSPD and LP-FT, sweep WiSE-FT; report ID and OOD accuracy')
    parser.add_argument(
        '--work-dir', default=os.environ.get('MMSPD_DEMO_DIR',
                                             'work_dirs/demo'),
        help='cache and output folder (default: $MMSPD_DEMO_DIR or '
        'work_dirs/demo)')
    parser.add_argument('--figure', default=None,
                        help='also copy the figure here (e.g. docs/demo.png)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='fine-tuning seeds (default: 0 1 2)')
    parser.add_argument('--pretrain-epochs', type=int, default=None,
                        help='override the pretraining config\'s epochs')
    parser.add_argument('--finetune-epochs', type=int, default=None,
                        help='override the fine-tuning configs\' epochs')
    parser.add_argument('--no-reference', action='store_true',
                        help='skip the frozen-backbone reference row (and '
                        'LP-FT, which starts from it)')
    parser.add_argument('--no-lpft', action='store_true',
                        help='skip LP-FT')
    parser.add_argument('--no-wise-ft', action='store_true',
                        help='skip the WiSE-FT sweeps')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    defaults = DemoProtocol()
    protocol = DemoProtocol(
        seeds=tuple(args.seeds),
        reference=None if args.no_reference else defaults.reference,
        lpft=None if args.no_reference or args.no_lpft else defaults.lpft,
        wise_ft_methods=() if args.no_wise_ft else defaults.wise_ft_methods,
        pretrain_epochs=args.pretrain_epochs,
        finetune_epochs=args.finetune_epochs)
    return run_demo(args.work_dir, protocol, args.figure)


if __name__ == '__main__':
    main()
