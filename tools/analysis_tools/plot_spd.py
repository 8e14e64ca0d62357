#!/usr/bin/env python
"""Plot SPDMonitorHook's signals from one or more runs' scalar logs.

    python tools/analysis_tools/plot_spd.py RUN [RUN ...] --out-dir DIR
        [--labels L1 L2 ...]

``RUN`` is a work dir (its newest ``*/vis_data/scalars.json`` is read) or a
``scalars.json`` file. The runs must have been trained with
``SPDMonitorHook`` in ``custom_hooks``. For every run this writes
``<label>_deviation.png`` (``spd/deviation/<module>`` per top-level module
and ``spd/relative_deviation``) and, for AdamSPD runs,
``<label>_projected.png`` (``spd/projected_fraction`` and
``spd/mean_ratio``); with several runs also ``compare_deviation.png``
(``spd/relative_deviation`` of every run on one axes). Labels default to the
runs' work-dir names. The paths written are printed, one a line.

Only json and matplotlib (Agg backend) are used: no torch, no mmengine.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

SPD_PREFIX = 'spd/'
MODULE_PREFIX = 'spd/deviation/'
RELATIVE = 'spd/relative_deviation'
PROJECTED = 'spd/projected_fraction'
MEAN_RATIO = 'spd/mean_ratio'
SCALARS_PATTERN = osp.join('*', 'vis_data', 'scalars.json')
DPI = 120
ANCHOR_NOTE = ('a: the optimizer\'s anchor (AdamSPD, AdamL2SP), else the '
               'weights at the start of training')


def find_scalars(run: str) -> str:
    """The scalars log of ``run``: the file itself, or a work dir's newest.

    A work dir's logs are ``<work_dir>/<timestamp>/vis_data/scalars.json``,
    one per launch; the newest (by modification time) is returned. Raises
    ``FileNotFoundError`` when ``run`` is neither.
    """
    if osp.isfile(run):
        return run
    if not osp.isdir(run):
        raise FileNotFoundError(f'Run {run!r} is neither a work dir nor a '
                                f'scalars.json file')
    logs = glob.glob(osp.join(run, SCALARS_PATTERN))
    if not logs:
        raise FileNotFoundError(f'No scalars log in run {run!r}: expected '
                                f'{osp.join(run, SCALARS_PATTERN)} (was it '
                                f'trained with a LoggerHook?)')
    return max(logs, key=lambda path: (osp.getmtime(path), path))


def default_label(run: str) -> str:
    """The run's work-dir name (``work_dir/<ts>/vis_data/scalars.json`` or
    ``work_dir``); the file name without extension for any other file."""
    path = osp.abspath(run)
    if osp.isdir(path):
        return osp.basename(path.rstrip(os.sep))
    parent = osp.dirname(path)
    if osp.basename(parent) == 'vis_data':
        return osp.basename(osp.dirname(osp.dirname(parent)))
    return osp.splitext(osp.basename(path))[0]


def load_scalars(path: str) -> List[dict]:
    """The records of a scalars log, one dict per non-empty line.

    Raises ``ValueError`` naming the file and line of a malformed record.
    """
    records = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}, line {number} is not a JSON '
                                 f'record: {err}') from None
            if not isinstance(record, dict):
                raise ValueError(f'{path}, line {number} is not a JSON '
                                 f'object: {line.strip()[:60]!r}')
            records.append(record)
    return records


def series(records: Sequence[dict],
           key: str) -> Tuple[List[int], List[float]]:
    """``(iterations, values)`` of ``key`` over the records that have it.

    The iteration is the record's ``iter`` (training rows), else its
    ``step``; records with neither are skipped.
    """
    iters, values = [], []
    for record in records:
        if key not in record:
            continue
        it = record.get('iter', record.get('step'))
        if it is None:
            continue
        iters.append(int(it))
        values.append(float(record[key]))
    return iters, values


def spd_keys(records: Sequence[dict]) -> List[str]:
    """The ``spd/`` keys present in any record, sorted."""
    return sorted({k for r in records for k in r if k.startswith(SPD_PREFIX)})


def check_spd_log(path: str, records: Sequence[dict]) -> None:
    """Raise ``ValueError`` if ``records`` hold no ``spd/`` scalar."""
    if not spd_keys(records):
        raise ValueError(f'{path} has no spd/ scalars: add '
                         f"dict(type='SPDMonitorHook') to the config's "
                         f'custom_hooks and train again')


def file_label(label: str) -> str:
    """``label`` made safe for a file name (``/``, spaces, ... -> ``_``)."""
    return re.sub(r'[^A-Za-z0-9._+-]+', '_', label).strip('_') or 'run'


def _plot_lines(ax, records, keys, names, marker=None) -> bool:
    drawn = False
    for key, name in zip(keys, names):
        iters, values = series(records, key)
        if iters:
            ax.plot(iters, values, label=name, marker=marker, markersize=3)
            drawn = True
    return drawn


def _style(ax, legend_title: Optional[str] = None) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(title=legend_title, fontsize=8)


def _save(fig, path: str, note: Optional[str] = None) -> str:
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color='0.35',
                 va='bottom')
        fig.tight_layout(rect=(0, 0.035, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_deviation(records: Sequence[dict], label: str,
                   out_dir: str) -> Optional[str]:
    """Write ``<label>_deviation.png``; ``None`` if there is nothing to draw.

    Top: ``|p - a| / |a|`` of each top-level module; bottom: the mean over
    tensors of ``|p - a| / |a|``.
    """
    modules = [k for k in spd_keys(records) if k.startswith(MODULE_PREFIX)]
    has_relative = bool(series(records, RELATIVE)[0])
    panels = int(bool(modules)) + int(has_relative)
    if not panels:
        return None
    fig, axes = plt.subplots(panels, 1, sharex=True, squeeze=False,
                             figsize=(7, 2.8 * panels + 0.6))
    axes = list(axes[:, 0])
    fig.suptitle(f'{label}: distance from the anchor')
    if modules:
        ax = axes.pop(0)
        _plot_lines(ax, records, modules,
                    [k[len(MODULE_PREFIX):] for k in modules], marker='o')
        ax.set_title('per top-level module: |p - a| / |a| over its '
                     'parameters  (spd/deviation/<module>)', fontsize=10)
        ax.set_ylabel('relative deviation')
        _style(ax, 'module')
    if has_relative:
        ax = axes.pop(0)
        _plot_lines(ax, records, [RELATIVE], ['mean over tensors'])
        ax.set_title('mean over tensors of |p - a| / |a|  '
                     '(spd/relative_deviation)', fontsize=10)
        ax.set_ylabel('relative deviation')
        _style(ax)
    fig.axes[-1].set_xlabel('iteration')
    return _save(fig,
                 osp.join(out_dir, f'{file_label(label)}_deviation.png'),
                 ANCHOR_NOTE)


def plot_projected(records: Sequence[dict], label: str,
                   out_dir: str) -> Optional[str]:
    """Write ``<label>_projected.png``; ``None`` without projection keys.

    ``spd/projected_fraction`` (share of tensors SPD projected at the step)
    and ``spd/mean_ratio`` (mean ratio ``r`` of those), both in [0, 1].
    """
    if not (series(records, PROJECTED)[0] or series(records, MEAN_RATIO)[0]):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    _plot_lines(ax, records, [PROJECTED, MEAN_RATIO],
                ['projected fraction of tensors (spd/projected_fraction)',
                 'mean ratio r of projected tensors (spd/mean_ratio)'],
                marker='o')
    ax.set_title(f'{label}: tensors projected by SPD at the step')
    ax.set_xlabel('iteration')
    ax.set_ylabel('fraction / ratio')
    ax.set_ylim(-0.03, 1.03)
    _style(ax)
    return _save(fig, osp.join(out_dir,
                               f'{file_label(label)}_projected.png'))


def plot_compare(runs: Dict[str, Sequence[dict]],
                 out_dir: str) -> Optional[str]:
    """Write ``compare_deviation.png``: ``spd/relative_deviation`` of every
    run (label -> records) on one axes; ``None`` if no run has it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for label, records in runs.items():
        drawn |= _plot_lines(ax, records, [RELATIVE], [label])
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title('Mean relative deviation from the anchor '
                 '(spd/relative_deviation)')
    ax.set_xlabel('iteration')
    ax.set_ylabel('mean over tensors of |p - a| / |a|')
    _style(ax, 'run')
    return _save(fig, osp.join(out_dir, 'compare_deviation.png'),
                 ANCHOR_NOTE)


def resolve_labels(runs: Sequence[str],
                   labels: Optional[Sequence[str]]) -> List[str]:
    """``labels`` checked against ``runs``, or the runs' default labels.

    Raises ``ValueError`` on a count mismatch or on two runs whose labels
    map to the same file name.
    """
    if labels is None:
        labels = [default_label(run) for run in runs]
    elif len(labels) != len(runs):
        raise ValueError(f'--labels got {len(labels)} labels '
                         f'({", ".join(labels)}) for {len(runs)} runs')
    seen = {}
    for run, label in zip(runs, labels):
        name = file_label(label)
        if name in seen:
            raise ValueError(f'runs {seen[name]!r} and {run!r} would both be '
                             f'written as {name!r}: give distinct --labels')
        seen[name] = run
    return list(labels)


def plot_runs(runs: Sequence[str], out_dir: str,
              labels: Optional[Sequence[str]] = None) -> List[str]:
    """Read every run, write its PNGs to ``out_dir``; return the paths.

    All runs are read and checked before anything is written.
    """
    labels = resolve_labels(runs, labels)
    loaded = {}
    for run, label in zip(runs, labels):
        path = find_scalars(run)
        records = load_scalars(path)
        check_spd_log(path, records)
        loaded[label] = records
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for label, records in loaded.items():
        for plot in (plot_deviation, plot_projected):
            path = plot(records, label, out_dir)
            if path is not None:
                written.append(path)
    if len(loaded) > 1:
        path = plot_compare(loaded, out_dir)
        if path is not None:
            written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Plot SPDMonitorHook scalars of one or more runs')
    parser.add_argument('runs', nargs='+', metavar='RUN',
                        help='work dir or scalars.json file of a run')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the PNG files')
    parser.add_argument('--labels', nargs='+',
                        help='one label per run (default: work-dir names)')
    return parser


def main(argv=None) -> List[str]:
    """Run the command line; errors exit with status 2 and one message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        written = plot_runs(args.runs, args.out_dir, args.labels)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    for path in written:
        print(path)
    return written


if __name__ == '__main__':
    main()
