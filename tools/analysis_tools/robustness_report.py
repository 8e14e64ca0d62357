#!/usr/bin/env python
"""One ID/OOD report across many runs (methods x strengths x seeds).

    python tools/analysis_tools/robustness_report.py WORK_DIR [WORK_DIR ...]
        [--out-dir DIR] [--metric accuracy/top1] [--val-metric KEY]
        [--strength-key optim_wrapper.optimizer.weight_decay]
        [--wise-ft-alpha 0.5] [--names KEY=NAME ...] [--title TEXT]

Each WORK_DIR is a run or a folder of runs: every folder holding a
``<timestamp>/robustness.json`` (``tools/test.py`` with a RobustTestLoop
config, run with ``--work-dir`` = the training work dir) is one run; its
config dump gives the method (config name), the strength and the seed,
its training log the ID validation score, and ``wise_ft/wise_ft.json``
(``tools/analysis_tools/wise_ft.py``) its WiSE-FT curve; a test of the
zero-shot model (``tools/test.py CONFIG --zero-shot``) is the zero-shot row,
where the WiSE-FT curves of zero-shot-head configs start. Runs are grouped by
method, each method's strength is picked on ID validation only, and one
table (mean +- std over seeds) is printed and written to
``DIR/robustness_report.{md,csv,json}``, with the ID-vs-OOD scatter
``DIR/robustness_report.png``. See :mod:`mmspd.robust_ft.results` and
:mod:`mmspd.robust_ft.report`.
"""
import argparse
import os
import os.path as osp

from mmspd.robust_ft.plots import plot_report
from mmspd.robust_ft.report import (build_report, format_csv, format_json,
                                    format_markdown, format_text)
from mmspd.robust_ft.results import read_runs

STEM = 'robustness_report'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Collect the robustness.json (and wise_ft.json) of many '
        'runs into one table and one ID-vs-OOD figure')
    parser.add_argument('work_dirs', nargs='+', help='runs or folders of '
                        'runs')
    parser.add_argument('--out-dir', default='.', help='where to write the '
                        'report (default: .)')
    parser.add_argument('--metric', help='metric of the table (default: '
                        'the first ID metric with an OOD average)')
    parser.add_argument('--val-metric', help='validation log key of the ID '
                        'validation score (default: the metric)')
    parser.add_argument('--strength-key',
                        default='optim_wrapper.optimizer.weight_decay',
                        help='dotted config key of the strength selected on '
                        'ID validation')
    parser.add_argument('--wise-ft-alpha', type=float, default=0.5,
                        help='alpha of the WiSE-FT table rows, fixed in '
                        'advance (default 0.5)')
    parser.add_argument('--names', nargs='+', default=[],
                        metavar='KEY=NAME', help='display names of methods')
    parser.add_argument('--title', default='', help='figure title')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    names = {}
    for item in args.names:
        if '=' not in item:
            raise ValueError(f'Invalid --names entry {item!r}: expected '
                             f'KEY=NAME')
        key, name = item.split('=', 1)
        names[key] = name
    runs = read_runs(args.work_dirs, metric=args.metric,
                     strength_key=args.strength_key,
                     val_metric=args.val_metric)
    report = build_report(runs, runs[0]['id'], runs[0]['ood'],
                          runs[0]['metric'], names=names,
                          wise_ft_alpha=args.wise_ft_alpha)
    os.makedirs(args.out_dir, exist_ok=True)
    paths = {ext: osp.join(args.out_dir, f'{STEM}.{ext}')
             for ext in ('md', 'csv', 'json', 'png')}
    for ext, text in (('md', format_markdown(report)),
                      ('csv', format_csv(report)),
                      ('json', format_json(report))):
        with open(paths[ext], 'w', encoding='utf-8') as f:
            f.write(text + ('' if text.endswith('\n') else '\n'))
    plot_report(report, paths['png'], args.title)
    print(f'{len(runs)} runs, {report["metric"]} (%), mean ± std over '
          f'seeds; strength chosen on ID validation\n{format_text(report)}')
    print('\n'.join(paths.values()))
    return report


if __name__ == '__main__':
    main()
