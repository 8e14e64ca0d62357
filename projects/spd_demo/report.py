"""The demo's report: what the stages measured, written out.

:func:`assemble` turns the stages' results into the demo's results (the
cross-run summary of :func:`mmspd.robust_ft.report.build_report`, its text
table, the protocol and data behind them); :func:`write` writes them to the
work folder: the results JSON, the table, the markdown and CSV reports, the
figure (:func:`mmspd.robust_ft.plots.plot_report`) and the model-zoo
records; :func:`closing_messages` is what the demo logs at the end.
"""
import json
import math
import os
import os.path as osp
import shutil
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from mmspd.robust_ft.plots import plot_report
from mmspd.robust_ft.report import (build_report, format_csv,
                                    format_markdown, format_text)
from .protocol import METRIC, DemoProtocol

RESULTS_FILE = 'demo_results.json'
FIGURE_FILE = 'demo.png'
TABLE_FILE = 'demo_table.txt'
#: The records file for the model zoo (``tools/misc/gen_model_index.py``).
RECORDS_FILE = 'model_zoo.json'
REPORT_STEM = 'demo_report'


def summarise(compared: List[dict], reference: Optional[dict],
              seeds: Sequence[int], id_name: str, ood: List[str]) -> dict:
    """The cross-run report (:func:`mmspd.robust_ft.report.build_report`)
    of every fine-tuning run: the grid runs (ID validation only) and the
    tested runs of the selected strengths."""
    runs_in = []
    for row in compared + ([reference] if reference else []):
        tested = {} if row.get('reference') else {
            r['seed']: r for r in row['runs']}
        values = ([g['value'] for g in row['grid']]
                  if not row.get('reference') else [None])
        for value in values:
            for i, seed in enumerate(seeds):
                if row.get('reference'):
                    run = row['runs'][i]
                    val = run['val_accuracy']
                else:
                    g = next(g for g in row['grid'] if g['value'] == value)
                    val = g['val_accuracy'][i]
                    run = tested[seed] if value == row['selected'] else None
                wise = run.get('wise_ft') if run else None
                runs_in.append(dict(
                    method=row['key'], strength=value, seed=seed,
                    val=val, test=run['test'] if run else None,
                    wise_ft=wise['points'] if wise else None,
                    source=f'{row["key"]} {value} seed {seed}'))
    shown = compared + ([reference] if reference else [])
    return build_report(
        runs_in, id_name, ood, METRIC,
        names={r['key']: r['name'] for r in shown},
        strength_names={r['key']: r['strength'] for r in compared},
        orders={r['key']: [g['value'] for g in r['grid']]
                for r in compared},
        references=[reference['key']] if reference else [])


def assemble(protocol: DemoProtocol, data: dict, pretrained: dict,
             rows: List[dict], reference: Optional[dict],
             lpft: Optional[dict], records: List[dict]) -> dict:
    """The demo's results (as in the JSON) from the stages' results: the
    compared methods' ``rows``, the ``reference`` and ``lpft`` rows (or
    ``None``) and the published models' ``records``. Adds each shown row's
    ``summary``."""
    p = protocol
    with open(rows[0]['runs'][0]['results_json'], encoding='utf-8') as f:
        layout = json.load(f)
    id_name = layout['id']
    sets = [id_name] + layout['ood'] + [OOD_AVERAGE]
    compared = rows + ([lpft] if lpft else [])
    shown = compared + ([reference] if reference else [])
    summary = summarise(compared, reference, p.seeds, id_name, layout['ood'])
    for row in shown:
        row['summary'] = next(m['summary'] for m in summary['methods']
                              if m['key'] == row['key'])
    table = format_text(summary)
    return dict(
        protocol=dict(
            seeds=list(p.seeds),
            grids={m['name']: [g['value'] for g in m['grid']]
                   for m in compared},
            selection='mean ID validation top-1 accuracy over the '
            'seeds; ties: first value in grid order',
            wise_ft=dict(methods=list(p.wise_ft_methods),
                         alphas=list(p.wise_ft_alphas),
                         table_alpha=summary['wise_ft_alpha']),
            pretrain_epochs=p.pretrain_epochs or 'config',
            finetune_epochs=p.finetune_epochs or 'config',
            splits=asdict(p.splits)),
        data=data['manifest']['counts'],
        pretrain=dict(val_accuracy=pretrained['val_accuracy'],
                      weights=pretrained['weights']),
        metric='top-1 accuracy (%)', id=id_name, sets=sets,
        methods=rows, reference=reference, lpft=lpft,
        report=summary,
        published=[r['weights'] for r in records],
        table=table)


def write(work_dir: str, results: dict, records: List[dict],
          figure: Optional[str] = None) -> Dict[str, str]:
    """Write the results JSON, the table, the markdown and CSV reports, the
    figure (also copied to ``figure``, if given) and the model-zoo records
    into ``work_dir``; return their paths."""
    summary, table = results['report'], results['table']
    paths = dict(
        results=osp.join(work_dir, RESULTS_FILE),
        table=osp.join(work_dir, TABLE_FILE),
        figure=osp.join(work_dir, FIGURE_FILE),
        model_zoo_records=osp.join(work_dir, RECORDS_FILE))
    for ext, text in (('md', format_markdown(summary)),
                      ('csv', format_csv(summary))):
        paths[f'report_{ext}'] = osp.join(work_dir, f'{REPORT_STEM}.{ext}')
        with open(paths[f'report_{ext}'], 'w', encoding='utf-8') as f:
            f.write(text + ('' if text.endswith('\n') else '\n'))
    with open(paths['results'], 'w', encoding='utf-8') as f:
        json.dump(_json_safe(results), f, indent=2, default=str)
    with open(paths['table'], 'w', encoding='utf-8') as f:
        f.write(table + '\n')
    with open(paths['model_zoo_records'], 'w', encoding='utf-8') as f:
        json.dump(records, f, indent=2)
    plot_report(
        summary, paths['figure'],
        f'LeNet-5 (digits 0-4) fine-tuned on digits 5-9, '
        f'{len(results["protocol"]["seeds"])} seed(s), strength chosen on '
        f'ID val;\nsmall: each run, large: mean ± std, dashed: WiSE-FT '
        f'α = 0 ... 1')
    if figure:
        os.makedirs(osp.dirname(osp.abspath(figure)), exist_ok=True)
        shutil.copyfile(paths['figure'], figure)
        paths['figure_copy'] = osp.abspath(figure)
    return paths


def closing_messages(results: dict) -> List[str]:
    """What the demo logs once the results are written (``results`` with
    their ``paths``): the table under its title, the files, how to update
    the model zoo from them."""
    paths = results['paths']
    title = (f'Fine-tuning LeNet-5 (pretrained on digits 0-4) on digits '
             f'5-9, top-1 accuracy (%), mean ± std over '
             f'{len(results["protocol"]["seeds"])} seed(s)')
    return [
        f'{title}\n{results["table"]}',
        '\n'.join(f'{k}: {v}' for k, v in paths.items()),
        f'model zoo: python tools/misc/gen_model_index.py '
        f'{paths["model_zoo_records"]} writes configs/metafile.yml and '
        f'model-index.yml from these results',
    ]


def _json_safe(value: Any) -> Any:
    """NaN (std of one seed) as ``None``; configs and stage keys dropped."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()
                if k != 'cfg' and not (k == 'key' and isinstance(v, dict))}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
