"""Runs on disk, read into the run dicts of :mod:`mmspd.robust_ft.report`.

A run directory is a work dir as ``tools/train.py`` and then ``tools/test.py
--work-dir`` (the same dir) leave it::

    RUN/<config>.py                       config dump (mmengine's Runner)
    RUN/<timestamp>/vis_data/scalars.json training log, validation rows
    RUN/<timestamp>/robustness.json       RobustTestLoop's results
    RUN/wise_ft/wise_ft.json              tools/analysis_tools/wise_ft.py
                                          (optional; also RUN/wise_ft.json)

A ``robustness.json`` with a ``zero_shot.json`` beside it is a test of the
zero-shot model (``tools/test.py CONFIG --zero-shot``,
:mod:`mmspd.robust_ft.zero_shot`; by default in ``RUN/zero_shot/``, a run
directory of its own): it gives a run of the method ``'zero-shot'`` (no
strength, seed or validation score) whose ``zero_shot`` entry lists the
pretrained sources of that model. A folder holding both kinds gives one
run of each (the newest file of each kind).

From the config dump: the method (the config's file name, e.g.
``domainnet_spd``), the strength (``optim_wrapper.optimizer.weight_decay``
unless another dotted key is given) and the seed (``randomness.seed``).
The ID validation score is read from the training log: the best
validation row when the config's CheckpointHook keeps the best checkpoint
(``save_best``), else the last one. When a run was tested several times,
its newest ``robustness.json`` counts. Its WiSE-FT curve's ``alpha = 0``
end is the zero-shot model when the sweep interpolated the head from the
config's own pretrained head (a ``*_zeroshot-head.py`` config): the run's
``wise_ft_pretrained`` then lists those pretrained sources (else
``None``), for :func:`mmspd.robust_ft.report.build_report` to match with a
zero-shot run.
"""
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE

ROBUSTNESS_FILE = 'robustness.json'
WISE_FT_FILE = 'wise_ft.json'
#: Beside a ``robustness.json``: the run tested the zero-shot model
#: (written by :mod:`mmspd.robust_ft.zero_shot`).
ZERO_SHOT_FILE = 'zero_shot.json'
#: That file's ``model`` entry, and the method key of zero-shot runs.
ZERO_SHOT = 'zero-shot'
#: Folders the WiSE-FT tool writes one test run per alpha into.
_ALPHA_DIR = re.compile(r'^alpha_[0-9.]+$')


def load_json(path: str) -> dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _is_wise_ft_alpha_dir(folder: str) -> bool:
    parent = osp.dirname(folder)
    return bool(_ALPHA_DIR.match(osp.basename(folder))) and (
        osp.basename(parent) == 'wise_ft'
        or osp.isfile(osp.join(parent, WISE_FT_FILE)))


def find_run_dirs(paths: Sequence[str]) -> List[str]:
    """Every run directory at or under ``paths`` (sorted), i.e. every
    folder with a ``<timestamp>/robustness.json``, WiSE-FT's own per-alpha
    test folders excluded. Raises ``FileNotFoundError`` naming a path that
    does not exist or holds no run."""
    runs = []
    for path in paths:
        if not osp.isdir(path):
            raise FileNotFoundError(f'Work dir {path!r} does not exist')
        found = []
        for folder, subdirs, _ in os.walk(path):
            subdirs.sort()
            if _is_wise_ft_alpha_dir(folder):
                subdirs[:] = []
                continue
            if any(osp.isfile(osp.join(folder, d, ROBUSTNESS_FILE))
                   for d in subdirs):
                found.append(osp.abspath(folder))
        if not found:
            raise FileNotFoundError(
                f'Work dir {path!r} holds no {ROBUSTNESS_FILE} (expected '
                f'<run>/<timestamp>/{ROBUSTNESS_FILE}, as tools/test.py '
                f'writes it with a RobustTestLoop config)')
        runs += found
    return sorted(dict.fromkeys(runs))


def is_zero_shot(robustness: str) -> bool:
    """Whether a ``robustness.json`` is a test of the zero-shot model (a
    ``zero_shot.json`` beside it)."""
    return osp.isfile(osp.join(osp.dirname(robustness), ZERO_SHOT_FILE))


def run_kinds(run_dir: str) -> List[bool]:
    """``[False]``, ``[True]`` or ``[False, True]``: whether the run
    directory holds tests of a trained model, of the zero-shot one, or
    both."""
    files = glob.glob(osp.join(run_dir, '*', ROBUSTNESS_FILE))
    return sorted({is_zero_shot(f) for f in files})


def latest_robustness(run_dir: str, zero_shot: bool = False) -> str:
    """The newest ``<timestamp>/robustness.json`` of ``run_dir`` of the
    given kind (zero-shot or not)."""
    files = [f for f in sorted(glob.glob(osp.join(run_dir, '*',
                                                  ROBUSTNESS_FILE)))
             if is_zero_shot(f) == zero_shot]
    if not files:
        raise FileNotFoundError(
            f'Run {run_dir!r} has no <timestamp>/{ROBUSTNESS_FILE}'
            + (f' with a {ZERO_SHOT_FILE}' if zero_shot else
               f' of a trained model (only zero-shot tests)'))
    return files[-1]


def config_dump(run_dir: str) -> str:
    """The run's config dump ``RUN/<config>.py``. Raises
    ``FileNotFoundError`` when there is none or several."""
    dumps = sorted(glob.glob(osp.join(run_dir, '*.py')))
    if len(dumps) != 1:
        raise FileNotFoundError(
            f'Run {run_dir!r} should hold one config dump (<config>.py, '
            f'written by mmengine\'s Runner), found {len(dumps) or "none"}'
            + (f': {[osp.basename(d) for d in dumps]}' if dumps else ''))
    return dumps[0]


def _dotted(cfg, key: str):
    node = cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit():
            node = node[int(part)]
        elif hasattr(node, 'get') and part in node:
            node = node[part]
        else:
            return None
    return node


def _keeps_best(cfg) -> bool:
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    return bool(checkpoint.get('save_best'))


def validation_score(run_dir: str, metric: str, best: bool
                     ) -> Optional[float]:
    """The run's ID validation ``metric`` from its training logs: the best
    or the last validation row (``None`` when no log has one)."""
    values = []
    for scalars in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                             'scalars.json'))):
        with open(scalars, encoding='utf-8') as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                # training rows carry the lr; validation rows do not
                if metric in row and 'lr' not in row:
                    values.append(float(row[metric]))
    if not values:
        return None
    return max(values) if best else values[-1]


def wise_ft_of(run_dir: str) -> Optional[dict]:
    """The run's ``wise_ft.json`` (``RUN/`` or ``RUN/wise_ft/``), if any."""
    for path in (osp.join(run_dir, WISE_FT_FILE),
                 osp.join(run_dir, 'wise_ft', WISE_FT_FILE)):
        if osp.isfile(path):
            return load_json(path)
    return None


def test_values(metrics: Dict[str, float], sets: Sequence[str],
                metric: str) -> Dict[str, float]:
    return {name: metrics[f'{name}/{metric}'] for name in sets
            if f'{name}/{metric}' in metrics}


def pick_metric(metrics: Dict[str, float], id_name: str,
                metric: Optional[str]) -> str:
    """``metric`` or the first ID metric that has an OOD average."""
    if metric is not None:
        return metric
    for key in metrics:
        name, _, candidate = key.partition('/')
        if name == id_name and f'{OOD_AVERAGE}/{candidate}' in metrics:
            return candidate
    raise ValueError(f'No metric of the ID set {id_name!r} with an OOD '
                     f'average in {sorted(metrics)}')


def _wise_ft_pretrained(results: dict) -> Optional[List[str]]:
    """The pretrained sources of a ``wise_ft.json`` whose ``alpha = 0`` is
    exactly the config's pretrained model, head included; else ``None``."""
    if results.get('new_tensors') or results.get('zero_shot_head'):
        return None
    return list(results.get('pretrained') or []) or None


def read_zero_shot_run(run_dir: str, metric: Optional[str] = None) -> dict:
    """The zero-shot run dict of ``run_dir`` (its newest zero-shot
    ``robustness.json``), plus ``id``, ``ood`` and ``metric``."""
    path = latest_robustness(run_dir, zero_shot=True)
    robustness = load_json(path)
    meta = load_json(osp.join(osp.dirname(path), ZERO_SHOT_FILE))
    metric = pick_metric(robustness['metrics'], robustness['id'], metric)
    sets = [robustness['id'], *robustness['ood'], OOD_AVERAGE]
    return dict(
        method=ZERO_SHOT, strength=None, seed=None, val=None,
        test=test_values(robustness['metrics'], sets, metric),
        wise_ft=None, zero_shot=list(meta.get('pretrained') or []),
        source=run_dir, id=robustness['id'], ood=list(robustness['ood']),
        metric=metric)


def read_run(run_dir: str, metric: Optional[str] = None,
             strength_key: str = 'optim_wrapper.optimizer.weight_decay',
             val_metric: Optional[str] = None) -> dict:
    """One run dict (see :mod:`mmspd.robust_ft.report`) of a trained model
    from ``run_dir`` (its newest ``robustness.json`` that is not a
    zero-shot test), plus ``id``, ``ood`` and ``metric`` (the layout of
    its results)."""
    robustness = load_json(latest_robustness(run_dir))
    metric = pick_metric(robustness['metrics'], robustness['id'], metric)
    sets = [robustness['id'], *robustness['ood'], OOD_AVERAGE]
    dump = config_dump(run_dir)
    cfg = Config.fromfile(dump, import_custom_modules=False)
    strength = _dotted(cfg, strength_key)
    seed = _dotted(cfg, 'randomness.seed')
    wise = wise_ft_of(run_dir)
    curve = wise_start = None
    if wise is not None:
        curve = [dict(alpha=p['alpha'],
                      test=test_values(p['metrics'], sets, metric))
                 for p in wise['points']]
        wise_start = _wise_ft_pretrained(wise)
    return dict(
        method=osp.splitext(osp.basename(dump))[0],
        strength=None if strength is None else float(strength),
        seed=seed,
        val=validation_score(run_dir, val_metric or metric,
                             best=_keeps_best(cfg)),
        test=test_values(robustness['metrics'], sets, metric),
        wise_ft=curve, wise_ft_pretrained=wise_start, zero_shot=None,
        source=run_dir, id=robustness['id'], ood=list(robustness['ood']),
        metric=metric)


def read_runs(paths: Sequence[str], metric: Optional[str] = None,
              **kwargs) -> List[dict]:
    """:func:`read_run` and :func:`read_zero_shot_run` of every run under
    ``paths``, as its tests are. Raises ``ValueError`` when the runs do
    not share their ID/OOD sets and metric (they would not be
    comparable)."""
    runs = []
    for folder in find_run_dirs(paths):
        for zero_shot in run_kinds(folder):
            runs.append(read_zero_shot_run(folder, metric) if zero_shot
                        else read_run(folder, metric, **kwargs))
    layout = {(r['id'], tuple(r['ood']), r['metric']) for r in runs}
    if len(layout) > 1:
        raise ValueError(f'The runs are not comparable: they have '
                         f'different ID/OOD sets or metrics: '
                         f'{sorted(layout)}')
    return runs


def curve_points(results: dict, metric: Optional[str] = None) -> List[dict]:
    """``[{alpha, id, ood}]`` of a ``wise_ft.json`` (its metric unless
    ``metric`` is given)."""
    metric = metric or results['metric']
    return [dict(alpha=p['alpha'],
                 id=p['metrics'][f'{results["id"]}/{metric}'],
                 ood=p['metrics'][f'{OOD_AVERAGE}/{metric}'])
            for p in results['points']]
