"""The demo's report: a table (mean +- std over seeds), a JSON file and a
figure (ID vs OOD accuracy per method and seed)."""
import math
from typing import Dict, List, Sequence

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from mmspd.engine.text_table import format_columns

#: RobustTestLoop's metric for the demo (top-1 accuracy in %).
METRIC = 'accuracy/top1'


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (n - 1; NaN for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = (math.sqrt(sum((v - mean)**2 for v in values) / (n - 1))
           if n > 1 else float('nan'))
    return dict(mean=mean, std=std, n=n)


def summarise_runs(runs: List[dict], sets: Sequence[str]) -> Dict[str, dict]:
    """``{set: mean_std(...)}`` over the runs' ``test`` accuracies, plus
    ``'val'`` for the ID validation accuracy."""
    summary = {'val': mean_std([r['val_accuracy'] for r in runs])}
    for name in sets:
        summary[name] = mean_std([r['test'][name] for r in runs])
    return summary


def _cell(stats: dict) -> str:
    if math.isnan(stats['std']):
        return f'{stats["mean"]:.1f}'
    return f'{stats["mean"]:.1f} ± {stats["std"]:.1f}'


def format_table(rows: List[dict], sets: Sequence[str], id_name: str
                 ) -> str:
    """One line per row (method), columns: selected strength, ID val, ID
    test, each OOD set, OOD average. ``rows``: dicts with ``name``,
    ``setting`` and ``summary`` (from :func:`summarise_runs`)."""
    header = (['method', 'setting', 'ID val', f'ID test ({id_name})']
              + [s if s != OOD_AVERAGE else 'OOD avg' for s in sets
                 if s != id_name])
    table = [header]
    for row in rows:
        summary = row['summary']
        table.append([row['name'], row['setting'], _cell(summary['val'])]
                     + [_cell(summary[s]) for s in sets])
    return format_columns(table, left_columns=2, rule=True)


def plot(rows: List[dict], sets: Sequence[str], id_name: str, path: str,
         title: str) -> None:
    """Two panels: ID test vs OOD-average accuracy (one point per seed, the
    mean with +-std bars) and accuracy per set (mean +- std)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colours = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd']
    # distinct shapes and sizes: methods with equal numbers stay visible
    markers = [('s', 13), ('^', 11), ('D', 7), ('v', 9), ('P', 9)]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.4), gridspec_kw=dict(width_ratios=[1, 1.4]))
    for i, row in enumerate(rows):
        colour = '#7f7f7f' if row.get('reference') else colours[i % 5]
        marker, size = ('o', 9) if row.get('reference') else markers[i % 5]
        label = f'{row["name"]} ({row["setting"]})' if row['setting'] \
            else row['name']
        xs = [r['test'][id_name] for r in row['runs']]
        ys = [r['test'][OOD_AVERAGE] for r in row['runs']]
        left.scatter(xs, ys, color=colour, marker=marker, alpha=0.4,
                     s=size * 5)
        s = row['summary']
        left.errorbar(s[id_name]['mean'], s[OOD_AVERAGE]['mean'],
                      xerr=_finite(s[id_name]['std']),
                      yerr=_finite(s[OOD_AVERAGE]['std']), fmt=marker,
                      color=colour, markersize=size, capsize=4,
                      markeredgecolor='black', label=label)
    left.set_xlabel(f'ID test accuracy (%), {id_name}', fontsize=11)
    left.set_ylabel('OOD accuracy (%), mean of the shifts', fontsize=11)
    left.set_title('each run (small) and mean ± std (large)', fontsize=11)
    left.grid(alpha=0.3)
    left.legend(fontsize=9, loc='best')

    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        colour = '#7f7f7f' if row.get('reference') else colours[i % 5]
        means = [row['summary'][s]['mean'] for s in sets]
        stds = [_finite(row['summary'][s]['std']) for s in sets]
        positions = [j + (i - (len(rows) - 1) / 2) * width
                     for j in range(len(sets))]
        right.bar(positions, means, width, yerr=stds, color=colour,
                  capsize=2, label=row['name'])
    right.set_xticks(range(len(sets)))
    right.set_xticklabels([
        f'{s}\n(ID)' if s == id_name else
        'OOD avg' if s == OOD_AVERAGE else s for s in sets], fontsize=10)
    right.set_ylabel('top-1 accuracy (%)', fontsize=11)
    lows = [row['summary'][s]['mean'] for row in rows for s in sets]
    right.set_ylim(max(0., min(lows) - 10.), 100.)
    right.grid(axis='y', alpha=0.3)
    right.set_title('accuracy per test set, mean ± std over seeds (colours '
                    'as on the left)', fontsize=11)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(value: float) -> float:
    return 0. if math.isnan(value) else value
