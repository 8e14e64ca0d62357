"""One report across runs: group by method, pick each method's strength on
ID validation only, mean +- std over seeds, WiSE-FT curves.

A *run* is a dict (see :mod:`mmspd.robust_ft.results` for reading them
from work dirs)::

    dict(method='domainnet_spd',   # the group it belongs to
         strength=1.0,             # the knob selected on ID val (or None)
         seed=0,
         val=81.2,                 # ID validation score (None: unknown)
         test={'real': 84.0, 'sketch': 50.1, ..., 'ood_avg': 47.3},
                                   # None: trained and validated only
         wise_ft=[dict(alpha=0.5, test={...}), ...] or None,
         wise_ft_pretrained=None,  # or the pretrained sources when the
                                   # curve's alpha 0 is exactly the
                                   # config's pretrained model, head
                                   # included (a zero-shot-head config)
         zero_shot=None,           # a zero-shot run: its model's
                                   # pretrained sources
         source='work_dirs/spd_1.0_s0')

Selection: per method, the strength with the highest mean ID validation
score over its seeds (ties: the first in the method's strength order,
ascending unless given); the test and OOD numbers are never looked at to
choose. A method with several strengths and a run without a validation
score is an error, and so is a selected strength whose runs were not
tested (runs of the other strengths need no test results). WiSE-FT: the selected runs' curves averaged over seeds
at the alphas every seed has; the table also gets one row per method at a
fixed alpha (``wise_ft_alpha``, 0.5 by default, decided in advance as in
the WiSE-FT paper: not selected on anything).

Zero-shot: a method whose runs are all zero-shot runs (``zero_shot`` set;
:mod:`mmspd.robust_ft.results` names them ``'zero-shot'``) is the
zero-shot row: no strength, no training, shown first, compared with
nothing; its runs must test one model (the same pretrained sources). A
WiSE-FT curve whose ``alpha = 0`` end is the zero-shot model (its
``wise_ft_pretrained`` equal to a zero-shot row's sources) starts at that
row: when the sweep did not test ``alpha = 0`` itself, the zero-shot row's
numbers are its ``alpha = 0`` point (the same weights, so the same
numbers). Each curve says what its ``alpha = 0`` is (``start``:
``'zero-shot'``, or ``'pretrained'``: the pretrained backbone under the
fine-tuned or a given head) and which zero-shot row gave that point
(``zero_shot_run``, else ``None``). Keys the runs do not use (other
metrics, other summaries) are ignored.
"""
import csv
import io
import json
import math
from typing import Dict, List, Optional, Sequence

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from mmspd.engine.text_table import format_columns


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (n - 1; NaN for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = (math.sqrt(sum((v - mean)**2 for v in values) / (n - 1))
           if n > 1 else float('nan'))
    return dict(mean=mean, std=std, n=n)


def _strength_tag(value) -> str:
    return '-' if value is None else f'{value:g}'


def _ordered_strengths(runs: List[dict], order: Optional[Sequence]):
    present = []
    for run in runs:
        if run['strength'] not in present:
            present.append(run['strength'])
    if order is not None:
        unknown = [s for s in present if s not in order]
        if unknown:
            raise ValueError(f'Strengths {unknown} of method '
                             f'{runs[0]["method"]!r} are not in its given '
                             f'order {list(order)}')
        return [s for s in order if s in present]
    return sorted(present, key=lambda s: (s is not None, s or 0.))


def select_strength(runs: List[dict], order: Optional[Sequence] = None
                    ) -> dict:
    """``{'strength', 'grid': [{value, val: [...], mean_val}]}`` for one
    method's runs; see the module docstring for the rule."""
    strengths = _ordered_strengths(runs, order)
    grid = []
    for value in strengths:
        members = [r for r in runs if r['strength'] == value]
        vals = [r['val'] for r in members]
        if len(strengths) > 1 and any(v is None for v in vals):
            source = next(r['source'] for r in members if r['val'] is None)
            raise ValueError(
                f'Run {source!r} of method {runs[0]["method"]!r} has no ID '
                f'validation score, so its strength cannot be selected '
                f'among {[_strength_tag(s) for s in strengths]}')
        known = [v for v in vals if v is not None]
        grid.append(dict(value=value, seeds=[r['seed'] for r in members],
                         val=vals, mean_val=(sum(known) / len(known)
                                             if known else None)))
    best = grid[0]
    for entry in grid[1:]:
        if entry['mean_val'] > best['mean_val']:
            best = entry
    return dict(strength=best['value'], grid=grid)


def _zero_shot_models(runs: List[dict]) -> Dict[tuple, dict]:
    """``{pretrained sources: {'key', 'test': mean per set}}`` of each
    zero-shot row; ``ValueError`` for a method that mixes zero-shot and
    trained runs or tests several zero-shot models."""
    models = {}
    keys = dict.fromkeys(r['method'] for r in runs
                         if r.get('zero_shot') is not None)
    for key in keys:
        members = [r for r in runs if r['method'] == key]
        trained = [r['source'] for r in members
                   if r.get('zero_shot') is None]
        if trained:
            raise ValueError(f'Method {key!r} has zero-shot runs and runs '
                             f'of trained models {trained}: expected one '
                             f'kind')
        sources = sorted({tuple(r['zero_shot']) for r in members})
        if len(sources) > 1:
            raise ValueError(
                f'The zero-shot runs of {key!r} test different pretrained '
                f'models: {[list(s) for s in sources]}; report them '
                f'separately (or give them different method keys)')
        tests = [r['test'] for r in members]
        models[sources[0]] = dict(key=key, test={
            name: sum(t[name] for t in tests) / len(tests)
            for name in tests[0]})
    return models


def _curve_from_zero_shot(run: dict, models: Dict[tuple, dict]
                          ) -> Optional[List[dict]]:
    """The run's WiSE-FT points, starting with the zero-shot row's numbers
    as ``alpha = 0`` when that end is the zero-shot model and the sweep
    did not test it."""
    curve, start = run.get('wise_ft'), run.get('wise_ft_pretrained')
    model = models.get(tuple(start)) if curve and start else None
    if model is None or any(p['alpha'] == 0. for p in curve):
        return curve
    return [dict(alpha=0., test=dict(model['test']),
                 zero_shot_run=model['key'])] + list(curve)


def _wise_ft_curve(runs: List[dict], id_name: str,
                   models: Optional[Dict[tuple, dict]] = None
                   ) -> Optional[dict]:
    curves = [_curve_from_zero_shot(r, models or {}) for r in runs]
    if not any(curves):
        return None
    if not all(curves):
        missing = [r['source'] for r in runs if not r.get('wise_ft')]
        raise ValueError(f'Only some selected runs of method '
                         f'{runs[0]["method"]!r} have WiSE-FT results; '
                         f'missing for {missing}')
    alphas = sorted(set.intersection(
        *[{p['alpha'] for p in curve} for curve in curves]))
    points = []
    for alpha in alphas:
        at = [next(p['test'] for p in curve if p['alpha'] == alpha)
              for curve in curves]
        points.append(dict(alpha=alpha, n=len(at),
                           id=mean_std([t[id_name] for t in at]),
                           ood=mean_std([t[OOD_AVERAGE] for t in at]),
                           sets={name: mean_std([t[name] for t in at])
                                 for name in at[0]}))
    taken = sorted({p['zero_shot_run'] for curve in curves for p in curve
                    if p.get('zero_shot_run')})
    # alpha 0 is the zero-shot model when every seed's is
    start = 'zero-shot' if all(r.get('wise_ft_pretrained') for r in runs) \
        else 'pretrained'
    return dict(alphas=alphas, points=points, start=start,
                zero_shot_run=taken[0] if taken else None)


def _summary(runs: List[dict], sets: Sequence[str], id_name: str) -> dict:
    vals = [r['val'] for r in runs if r['val'] is not None]
    summary = {name: mean_std([r['test'][name] for r in runs])
               for name in sets}
    summary['val'] = mean_std(vals) if vals else None
    summary['id'] = summary[id_name]
    summary['ood'] = summary[OOD_AVERAGE]
    return summary


def build_report(runs: List[dict], id_name: str, ood: Sequence[str],
                 metric: str, names: Optional[Dict[str, str]] = None,
                 strength_names: Optional[Dict[str, str]] = None,
                 orders: Optional[Dict[str, Sequence]] = None,
                 references: Sequence[str] = (),
                 wise_ft_alpha: Optional[float] = 0.5) -> dict:
    """Group ``runs`` by method, select, summarise; returns JSON data.

    Args:
        runs: run dicts (module docstring); every run must have every set.
        id_name / ood: the ID set and the OOD sets (the table's columns).
        metric: what the numbers are (for labels), e.g. 'accuracy/top1'.
        names: display name per method key (default: the key).
        strength_names: what the strength is per method ('lambda').
        orders: the strength order per method (ties go to the first).
        references: method keys shown as reference rows, not compared.
        wise_ft_alpha: the alpha of the WiSE-FT table rows (``None``: no
            such rows; curves are always drawn).
    """
    if not runs:
        raise ValueError('No runs to report')
    sets = [id_name, *ood, OOD_AVERAGE]
    for run in runs:
        if run.get('test') is None:
            continue
        missing = [s for s in sets if s not in run['test']]
        if missing:
            raise ValueError(f'Run {run["source"]!r} has no result for the '
                             f'set(s) {missing} (it has '
                             f'{sorted(run["test"])})')
    names, strength_names = names or {}, strength_names or {}
    models = _zero_shot_models(runs)
    zero_shot_keys = {m['key'] for m in models.values()}
    methods = []
    for key in dict.fromkeys(r['method'] for r in runs):
        members = [r for r in runs if r['method'] == key]
        choice = select_strength(members, (orders or {}).get(key))
        chosen = [r for r in members if r['strength'] == choice['strength']]
        untested = [r['source'] for r in chosen if r.get('test') is None]
        if untested:
            raise ValueError(
                f'Method {key!r}: the strength selected on ID validation '
                f'({_strength_tag(choice["strength"])}) has untested runs '
                f'{untested}')
        chosen.sort(key=lambda r: (r['seed'] is None, r['seed'] or 0))
        knob = strength_names.get(key, 'strength')
        setting = ('' if choice['strength'] is None else
                   f'{knob}={_strength_tag(choice["strength"])}')
        zero_shot = None
        if key in zero_shot_keys:
            zero_shot = list(chosen[0]['zero_shot'])
            setting = 'no training'
        methods.append(dict(
            key=key, name=names.get(key, key), setting=setting,
            strength=choice['strength'], grid=choice['grid'],
            reference=key in references, zero_shot=zero_shot,
            runs=[dict(seed=r['seed'], val=r['val'], source=r['source'],
                       test=r['test'], id=r['test'][id_name],
                       ood=r['test'][OOD_AVERAGE]) for r in chosen],
            summary=_summary(chosen, sets, id_name),
            wise_ft=_wise_ft_curve(chosen, id_name, models)))
    # the zero-shot row first: every zero-shot-head curve starts there
    methods.sort(key=lambda m: m['zero_shot'] is None)
    wise_rows = []
    if wise_ft_alpha is not None:
        for row in methods:
            curve = row['wise_ft']
            if curve and wise_ft_alpha in curve['alphas']:
                point = curve['points'][curve['alphas'].index(wise_ft_alpha)]
                wise_rows.append(dict(
                    name=f'{row["name"]} + WiSE-FT', method=row['key'],
                    setting=', '.join(filter(None, [
                        row['setting'], f'α={wise_ft_alpha:g}'])),
                    summary=dict(point['sets'], val=None)))
    return dict(id=id_name, ood=list(ood), sets=sets, metric=metric,
                selection='each method: the strength with the highest mean '
                'ID validation score over seeds (ties: first in order); '
                'test and OOD sets never used to choose',
                wise_ft_alpha=wise_ft_alpha, methods=methods,
                wise_ft_rows=wise_rows)


def _cell(stats: Optional[dict]) -> str:
    if stats is None:
        return '-'
    if math.isnan(stats['std']):
        return f'{stats["mean"]:.1f}'
    return f'{stats["mean"]:.1f} ± {stats["std"]:.1f}'


def table_rows(report: dict) -> List[List[str]]:
    """Header and one row per method (zero-shot, compared, then WiSE-FT,
    then references): method, setting, ID val, ID test, each OOD set, OOD
    avg, seeds (for the zero-shot row: its test runs)."""
    sets = report['sets']
    header = (['method', 'setting', 'ID val', f'ID test ({report["id"]})']
              + [s if s != OOD_AVERAGE else 'OOD avg' for s in sets[1:]]
              + ['seeds'])
    rows = [header]
    zero_shot = [m for m in report['methods']
                 if m.get('zero_shot') is not None]
    others = [m for m in report['methods'] if m.get('zero_shot') is None]
    ordered = (zero_shot + [m for m in others if not m['reference']]
               + report['wise_ft_rows']
               + [m for m in others if m['reference']])
    for row in ordered:
        summary = row['summary']
        name = f'{row["name"]} (reference)' if row.get('reference') \
            else row['name']
        n = summary[sets[0]]['n']
        rows.append([name, row['setting'] or '-', _cell(summary['val'])]
                    + [_cell(summary[s]) for s in sets] + [str(n)])
    return rows


def format_text(report: dict) -> str:
    """The table as aligned plain text (console, logs)."""
    return format_columns(table_rows(report), left_columns=2, rule=True)


def format_markdown(report: dict) -> str:
    rows = table_rows(report)
    lines = ['| ' + ' | '.join(rows[0]) + ' |',
             '|' + '---|' * len(rows[0])]
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
    return '\n'.join(lines)


def format_csv(report: dict) -> str:
    """One line per table row; mean and std columns per set (std empty for
    one seed)."""
    sets = report['sets']
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['method', 'setting', 'seeds', 'val_mean', 'val_std']
                    + [f'{s}_{k}' for s in sets for k in ('mean', 'std')])
    for row in (report['methods'] + report['wise_ft_rows']):
        summary = row['summary']

        def pair(stats):
            if stats is None:
                return ['', '']
            std = '' if math.isnan(stats['std']) else f'{stats["std"]:.4f}'
            return [f'{stats["mean"]:.4f}', std]

        writer.writerow([row['name'], row['setting'],
                         summary[sets[0]]['n']] + pair(summary['val'])
                        + [v for s in sets for v in pair(summary[s])])
    return out.getvalue()


def json_safe(value):
    """NaN (std of one seed) as ``None``, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_json(report: dict) -> str:
    return json.dumps(json_safe(report), indent=2)
