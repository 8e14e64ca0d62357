"""WiSE-FT: test interpolations of the pretrained and fine-tuned weights.

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): for
a mixing coefficient ``alpha`` in [0, 1], the weights

    theta(alpha) = (1 - alpha) * theta_pretrained + alpha * theta_finetuned

often beat both ends out of distribution at little ID cost. Here:

* ``theta_pretrained`` is what the config loads before training (its
  ``init_cfg`` / ``load_from``, read by
  :func:`mmspd.robust_ft.pretrained.load_pretrained`), so the same weights
  SPD and L2-SP used as anchors; every tensor those sources provide is
  interpolated (floating-point ones; integer buffers such as BN's
  ``num_batches_tracked`` come from the fine-tuned checkpoint).
* The other tensors (a new head) have no pretrained value. The choice is
  explicit: by default they are the **fine-tuned** head at every alpha
  (``alpha = 0`` is then the pretrained backbone under the fine-tuned
  head, not a zero-shot model); with ``zero_shot_head=FILE`` (e.g. a
  CLIP text-embedding classifier saved with the model's head keys) they
  are interpolated between that head and the fine-tuned one, as in the
  WiSE-FT paper. A config whose head has a pretrained value (the
  ``*_zeroshot-head.py`` configs load CLIP's zero-shot classifier through
  the head's ``init_cfg``) needs no file: the head is interpolated from
  that value, so ``alpha = 0`` is the zero-shot model.
* ``torch.lerp`` makes both ends exact: ``alpha = 1`` is bit for bit the
  fine-tuned checkpoint, so its numbers are those of ``tools/test.py``.

Each alpha is tested with the config's own test loop (``RobustTestLoop``:
ID set and every OOD set) in a Runner of its own under
``<work_dir>/alpha_<alpha>/``; :func:`run_wise_ft` writes
``<work_dir>/wise_ft.json`` and the ID-vs-OOD curve ``wise_ft.png``.
"""
import json
import numbers
import os
import os.path as osp
import uuid
from typing import Dict, Iterable, List, Optional, Sequence, Set

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import load_state_dict

from mmspd.engine.launch import build_runner
from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from .checkpoints import matching_state_dict
from .plots import plot_wise_ft
from .pretrained import describe_keys, load_pretrained, read_state_dict

RESULTS_FILE = 'wise_ft.json'
FIGURE_FILE = 'wise_ft.png'
#: Alphas of a sweep when none are given.
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_alphas(alphas: Iterable) -> List[float]:
    """The alphas as floats, ascending. Raises ``ValueError`` for an empty
    list, a repeated value, or a value that is not a number in [0, 1]."""
    values = list(alphas)
    if not values:
        raise ValueError('WiSE-FT needs at least one alpha in [0, 1]')
    for value in values:
        if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                or not 0. <= value <= 1.):
            raise ValueError(f'Invalid WiSE-FT alpha {value!r}: expected a '
                             f'number in [0, 1] (0 = pretrained, 1 = '
                             f'fine-tuned)')
    if len(set(values)) != len(values):
        raise ValueError(f'Repeated WiSE-FT alphas in {values}: expected '
                         f'distinct values')
    return sorted(float(v) for v in values)


def interpolate(start: Dict[str, torch.Tensor], end: Dict[str, torch.Tensor],
                alpha: float, keys: Set[str]) -> Dict[str, torch.Tensor]:
    """``end`` with every floating-point tensor named in ``keys`` replaced
    by ``lerp(start, end, alpha)`` (exactly ``start`` at 0, ``end`` at 1).
    """
    mixed = {}
    for key, value in end.items():
        if key in keys and value.is_floating_point():
            mixed[key] = torch.lerp(start[key].to(value.dtype), value,
                                    float(alpha))
        else:
            mixed[key] = value
    return mixed


def _zero_shot_start(path: str, state: Dict[str, torch.Tensor],
                     new_keys: Set[str]) -> Dict[str, torch.Tensor]:
    """``state`` with the new (head) keys taken from ``path``; the file
    must hold every one of them, with the model's shapes, and nothing the
    model does not have."""
    head = read_state_dict(path)
    missing = sorted(new_keys - set(head))
    unknown = sorted(set(head) - set(state))
    wrong = [f'{k} {tuple(head[k].shape)} vs {tuple(state[k].shape)}'
             for k in sorted(new_keys & set(head))
             if head[k].shape != state[k].shape]
    if missing or unknown or wrong:
        raise ValueError(
            f'The zero-shot head {path!r} must hold exactly the model\'s '
            f'tensors that have no pretrained value ({describe_keys(new_keys)})'
            f' with their shapes; missing: {describe_keys(missing) or "none"}'
            f', not in the model: {describe_keys(unknown) or "none"}, other '
            f'shapes: {describe_keys(wrong) or "none"}')
    start = dict(state)
    start.update({k: head[k] for k in new_keys})
    return start


def _curve_metric(metrics: Dict[str, float], id_name: str,
                  metric: Optional[str]) -> str:
    """``metric``, checked, or the first ID metric with an OOD average."""
    if metric is not None:
        for name in (id_name, OOD_AVERAGE):
            if f'{name}/{metric}' not in metrics:
                raise ValueError(f'Metric {metric!r} is not in the test '
                                 f'results for {name!r}; there are '
                                 f'{sorted(metrics)}')
        return metric
    for key in metrics:
        name, _, candidate = key.partition('/')
        if name == id_name and f'{OOD_AVERAGE}/{candidate}' in metrics:
            return candidate
    raise ValueError(f'The test results have no metric of the ID set '
                     f'{id_name!r} with an OOD average: {sorted(metrics)}')


def _types_in(node) -> Set[str]:
    """Every ``type`` named anywhere in a (model) config."""
    found = set()
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            found.add(node['type'])
        for value in node.values():
            found |= _types_in(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            found |= _types_in(value)
    return found


def alpha_tag(alpha: float) -> str:
    return f'{alpha:.3f}'.rstrip('0').rstrip('.') if alpha else '0'


def runner_with_weights(cfg: Config, state: Dict[str, torch.Tensor]):
    """The Runner of ``cfg`` (its ``load_from`` and ``resume`` dropped)
    with ``state`` loaded strictly into its model: exactly these weights,
    ready for ``runner.test()``."""
    cfg = cfg.copy()
    cfg.load_from = None
    cfg.resume = False
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    load_state_dict(model, state, strict=True)
    return runner


def _test_alpha(cfg: Config, state: Dict[str, torch.Tensor], alpha: float,
                work_dir: str) -> dict:
    cfg = cfg.copy()
    cfg.work_dir = osp.join(work_dir, f'alpha_{alpha_tag(alpha)}')
    cfg.experiment_name = f'wise_ft_{alpha_tag(alpha)}_{uuid.uuid4().hex[:8]}'
    runner = runner_with_weights(cfg, state)
    metrics = runner.test()
    return dict(alpha=alpha,
                metrics={k: float(v) for k, v in metrics.items()
                         if isinstance(v, numbers.Real)},
                robustness_json=osp.join(runner.log_dir,
                                         runner.test_loop.out_file))


def run_wise_ft(cfg: Config, checkpoint: str,
                alphas: Sequence[float] = DEFAULT_ALPHAS,
                work_dir: Optional[str] = None,
                zero_shot_head: Optional[str] = None,
                metric: Optional[str] = None,
                figure: bool = True) -> dict:
    """Test ``theta(alpha)`` for each alpha; write and return the results.

    Args:
        cfg: the config the checkpoint was trained with (its test loop
            must be ``RobustTestLoop``).
        checkpoint: the fine-tuned checkpoint (any method: AdamW, L2-SP,
            AdamSPD, ...); it must match the config's model exactly.
        alphas: mixing coefficients in [0, 1].
        work_dir: output folder (default: the config's ``work_dir``).
        zero_shot_head: a checkpoint holding the model's new (head)
            tensors; ``None`` keeps the fine-tuned head at every alpha.
        metric: the metric of the curve (default: the first ID metric that
            has an OOD average, e.g. ``accuracy/top1``).
        figure: also draw ``wise_ft.png``.

    Returns the contents of ``wise_ft.json``.
    """
    alphas = check_alphas(alphas)
    loop = (cfg.get('test_cfg') or {}).get('type')
    if loop != 'RobustTestLoop':
        raise ValueError(f'WiSE-FT compares ID and OOD accuracy, so the '
                         f'config\'s test_cfg must be a RobustTestLoop, got '
                         f'{loop!r}')
    if 'LoRAModel' in _types_in(cfg.model):
        raise ValueError('WiSE-FT interpolates full fine-tuning checkpoints; '
                         'this config wraps its backbone in LoRAModel, whose '
                         'checkpoints hold only the adapters (scale the '
                         'adapters instead)')
    work_dir = osp.abspath(work_dir or cfg.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    pretrained = load_pretrained(cfg)
    finetuned = matching_state_dict(checkpoint, pretrained.state,
                                    'fine-tuned checkpoint')
    if not pretrained.keys:
        raise ValueError(
            f'The config loads no pretrained weights into the tensors the '
            f'checkpoint saves ({describe_keys(finetuned)}): nothing to '
            f'interpolate (a model that saves only adapters, e.g. '
            f'mmpretrain\'s LoRAModel, is not supported)')
    new_keys = set(pretrained.state) - pretrained.keys
    keys = set(pretrained.keys)
    start = pretrained.state
    if zero_shot_head is not None:
        if not new_keys:
            raise ValueError(
                f'--zero-shot-head {zero_shot_head!r} would be ignored: the '
                f'config already loads every tensor, head included, from '
                f'its pretrained sources ({"; ".join(pretrained.sources)}), '
                f'e.g. a *_zeroshot-head.py config; drop the option or use '
                f'the config without the zero-shot head')
        start = _zero_shot_start(zero_shot_head, start, new_keys)
        keys |= new_keys
    if zero_shot_head:
        head = 'zero-shot head ' + zero_shot_head
    elif new_keys:
        head = 'fine-tuned head at every alpha'
    else:  # e.g. a zero-shot-head config: its head has a pretrained value
        head = 'head interpolated from the config\'s pretrained head'
    print_log(f'WiSE-FT of {checkpoint}: {len(keys)} tensors interpolated '
              f'(pretrained: {"; ".join(pretrained.sources)}), '
              f'{len(new_keys)} new tensors: {head}', logger='current')
    points = []
    for alpha in alphas:
        point = _test_alpha(cfg, interpolate(start, finetuned, alpha, keys),
                            alpha, work_dir)
        points.append(point)
    with open(points[0]['robustness_json'], encoding='utf-8') as f:
        layout = json.load(f)
    curve_metric = _curve_metric(points[0]['metrics'], layout['id'], metric)
    results = dict(
        config=cfg.filename, checkpoint=osp.abspath(checkpoint),
        pretrained=pretrained.sources, head=head,
        zero_shot_head=zero_shot_head, interpolated_tensors=len(keys),
        new_tensors=sorted(new_keys), id=layout['id'], ood=layout['ood'],
        metric=curve_metric, alphas=alphas, points=points)
    path = osp.join(work_dir, RESULTS_FILE)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    summary = ', '.join(
        f'alpha {alpha_tag(p["alpha"])}: ID '
        f'{p["metrics"][layout["id"] + "/" + curve_metric]:.2f} / OOD avg '
        f'{p["metrics"][OOD_AVERAGE + "/" + curve_metric]:.2f}'
        for p in points)
    print_log(f'WiSE-FT {curve_metric}: {summary}; written to {path}',
              logger='current')
    if figure:
        plot_wise_ft(results, osp.join(work_dir, FIGURE_FILE))
    return results

