"""ID-vs-OOD figures: one WiSE-FT curve, and the report across runs (each
run, each method's mean +- std, each method's WiSE-FT curve)."""
import math
from typing import List

from .results import curve_points

COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
           '#8c564b', '#e377c2', '#17becf']
# distinct shapes and sizes: methods with equal numbers stay visible
MARKERS = [('s', 13), ('^', 11), ('D', 7), ('v', 9), ('P', 9), ('X', 9),
           ('*', 12), ('h', 9)]
ZERO_SHOT_MARKER = ('*', 16)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _finite(value) -> float:
    return 0. if value is None or math.isnan(value) else value


def _annotate_alphas(ax, points: List[dict], colour: str) -> None:
    for p in points:
        if p['alpha'] in (0., 0.5, 1.) or len(points) <= 3:
            ax.annotate(f'α={p["alpha"]:g}', (p['id'], p['ood']),
                        textcoords='offset points', xytext=(4, -10),
                        fontsize=8, color=colour)


def plot_wise_ft(results: dict, path: str) -> None:
    """The curve of one ``wise_ft.json``: ID vs OOD-average metric, one
    point per alpha."""
    plt = _pyplot()
    points = curve_points(results)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([p['id'] for p in points], [p['ood'] for p in points], '-o',
            color=COLOURS[0])
    _annotate_alphas(ax, points, COLOURS[0])
    ax.set_xlabel(f'ID ({results["id"]}) {results["metric"]}')
    ax.set_ylabel(f'OOD average {results["metric"]}')
    ax.set_title('WiSE-FT: (1 - α) pretrained + α fine-tuned', fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_report(report: dict, path: str, title: str = '') -> None:
    """ID vs OOD average of a report (:func:`mmspd.robust_ft.report.
    build_report`): every tested run (small, faint), each method's mean
    with +-std bars (large), and each method's mean WiSE-FT curve (line,
    same colour, alphas marked); the zero-shot row as a black star, where
    the curves of zero-shot-head configs start."""
    plt = _pyplot()
    id_name, metric = report['id'], report['metric']
    fig, ax = plt.subplots(figsize=(8, 6))
    trained = [r for r in report['methods'] if r.get('zero_shot') is None]
    for row in report['methods']:
        if row.get('zero_shot') is not None:
            colour, (marker, size) = 'black', ZERO_SHOT_MARKER
        elif row.get('reference'):
            colour, (marker, size) = '#7f7f7f', ('o', 9)
        else:
            i = trained.index(row)
            colour, (marker, size) = COLOURS[i % 8], MARKERS[i % 8]
        xs = [r['id'] for r in row['runs']]
        ys = [r['ood'] for r in row['runs']]
        ax.scatter(xs, ys, color=colour, marker=marker, alpha=0.35,
                   s=size * 5)
        s = row['summary']
        label = row['name'] + (f' ({row["setting"]})' if row['setting']
                               else '')
        ax.errorbar(s['id']['mean'], s['ood']['mean'],
                    xerr=_finite(s['id']['std']),
                    yerr=_finite(s['ood']['std']), fmt=marker,
                    color=colour, markersize=size, capsize=4,
                    markeredgecolor='black', label=label)
        curve = row.get('wise_ft')
        if curve:
            points = [dict(alpha=p['alpha'], id=p['id']['mean'],
                           ood=p['ood']['mean']) for p in curve['points']]
            start = ' zero-shot' if curve.get('start') == 'zero-shot' \
                else ''
            ax.plot([p['id'] for p in points], [p['ood'] for p in points],
                    '--', marker='.', color=colour, linewidth=1.2,
                    label=f'{row["name"]} + WiSE-FT (α = 0{start} ... 1)')
            _annotate_alphas(ax, points, colour)
    ax.set_xlabel(f'ID test {metric} ({id_name})', fontsize=11)
    ax.set_ylabel(f'OOD {metric}, mean of the shifts', fontsize=11)
    ax.set_title(title or 'small: each run, large: mean ± std over seeds, '
                 'dashed: WiSE-FT curves', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
