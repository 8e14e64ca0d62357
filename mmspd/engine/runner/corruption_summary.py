"""The corruption sweep of :class:`RobustTestLoop` and its summary numbers.

A sweep is every (corruption, severity) pair of a selection, each one test
set named ``'<corruption>-<severity>'`` (``'fog-3'``). :func:`expand_sweep`
turns the loop's ``corruption_sweep`` config into those sets;
:func:`sweep_summary` and :func:`imagenet_c_errors` compute, from the
per-set metrics, the summary numbers of the two robustness benchmarks:

* Michaelis et al. 2019, "Benchmarking Robustness in Object Detection"
  (any task, any metric ``m`` of the evaluator): ``P/m`` the clean (ID)
  value, ``mPC/m`` the mean over all sweep sets, ``rPC/m`` = 100 * mPC / P
  (in %), and ``<corruption>-avg/m`` the mean over the severities of one
  corruption;
* Hendrycks & Dietterich, ICLR 2019, "Benchmarking Neural Network Robustness
  to Common Corruptions and Perturbations" (classification, top-1):
  ``CE-<corruption>/accuracy/top1`` and
  ``relative_CE-<corruption>/accuracy/top1`` (in %, normalised by AlexNet's
  errors), and their means over the 15 benchmark corruptions
  ``mCE/accuracy/top1`` and ``relative_mCE/accuracy/top1``.

This module is pure Python (no mmengine objects): the loop calls it with the
metrics dict it has collected, ``{'<set>/<metric>': value}``.
"""
import copy
import math
import numbers
import string
from typing import Dict, List, Sequence, Tuple

from ...corruption import (BENCHMARK_CORRUPTIONS, CORRUPTIONS, SEVERITIES,
                           resolve_corruptions, resolve_severities)
from ..text_table import format_columns

#: The keys ``corruption_sweep`` may have.
SWEEP_KEYS = ('corruptions', 'severities', 'transform', 'insert_after',
              'dataset')

#: The transform inserted into the ID pipeline when the sweep has neither
#: ``transform`` nor ``dataset``; the sweep adds ``corruption`` and
#: ``severity`` to it for each set.
DEFAULT_TRANSFORM = dict(type='ImageCorruption')

#: Row names of the summary keys (``'P/mIoU'``, ``'mCE/accuracy/top1'``).
CLEAN, MEAN_PC, RELATIVE_PC = 'P', 'mPC', 'rPC'
MEAN_CE, RELATIVE_MEAN_CE = 'mCE', 'relative_mCE'

#: The metric mCE is computed from: mmpretrain's ``Accuracy`` top-1, in %.
TOP1 = 'accuracy/top1'

# AlexNet's top-1 errors (in %) on ImageNet-C, severities 1..5, the
# normalisers of CE and relative CE (Hendrycks & Dietterich, ICLR 2019,
# arXiv:1903.12261, Sec. 4). Source: the per-severity error rates the paper's
# first author posted in https://github.com/hendrycks/robustness/issues/10
# (as fractions; written here times 100). Their means per corruption are the
# ``ALEXNET_ERR`` list of google-research/augmix, imagenet.py, and the
# ``get_ce_alexnet`` values of alibaba/easyrobust,
# easyrobust/benchmarks/ood/imagenet_c.py (the tests check the means against
# AugMix's list).
ALEXNET_ERRORS: Dict[str, Tuple[float, ...]] = {
    'gaussian_noise': (69.528, 82.542, 93.554, 98.138, 99.452),
    'shot_noise': (71.224, 85.108, 93.574, 98.182, 99.146),
    'impulse_noise': (78.374, 89.808, 94.870, 98.720, 99.548),
    'defocus_blur': (65.624, 73.202, 85.036, 91.364, 94.714),
    'glass_blur': (64.308, 75.054, 88.806, 91.622, 93.344),
    'motion_blur': (58.430, 70.048, 82.108, 89.750, 92.638),
    'zoom_blur': (70.008, 76.992, 80.784, 84.198, 87.198),
    'snow': (71.726, 88.392, 86.468, 91.870, 94.952),
    'frost': (61.390, 79.734, 88.790, 89.942, 93.430),
    'fog': (67.474, 76.050, 84.378, 87.260, 94.500),
    'brightness': (45.140, 48.502, 54.048, 62.166, 72.440),
    'contrast': (64.548, 76.150, 88.874, 97.760, 99.270),
    'elastic_transform': (52.596, 70.116, 55.686, 64.076, 80.554),
    'pixelate': (52.218, 54.620, 73.728, 87.092, 91.262),
    'jpeg_compression': (51.002, 54.718, 57.294, 65.458, 74.778),
}

# AlexNet's clean ImageNet top-1 error (in %), the E_clean of relative CE:
# the paper evaluates torchvision's pretrained AlexNet (ImageNet-C/test.py of
# hendrycks/robustness loads it; the author confirms it in
# hendrycks/robustness issue #38), whose top-1 accuracy torchvision documents
# as 56.522% (AlexNet_Weights.IMAGENET1K_V1,
# https://pytorch.org/vision/stable/models/generated/torchvision.models.alexnet.html).
ALEXNET_CLEAN_ERROR = 100.0 - 56.522


#: What an evaluator reports for a metric it cannot compute on a set
#: (mmdet's ``CocoMetric``: an AP over an area range without ground truth).
NOT_COMPUTABLE = -1.0


def sweep_set_name(corruption: str, severity: int) -> str:
    """The name of one sweep set: ``'fog-3'``."""
    return f'{corruption}-{severity}'


def corruption_mean_name(corruption: str) -> str:
    """The row of a corruption's mean over severities: ``'fog-avg'``."""
    return f'{corruption}-avg'


def corruption_error_names(corruption: str) -> Tuple[str, str]:
    """The rows of a corruption's CE and relative CE:
    ``('CE-fog', 'relative_CE-fog')``."""
    return f'CE-{corruption}', f'relative_CE-{corruption}'


def reserved_names() -> frozenset:
    """Row names the summary uses, so no test set may have them."""
    names = {CLEAN, MEAN_PC, RELATIVE_PC, MEAN_CE, RELATIVE_MEAN_CE}
    for corruption in CORRUPTIONS:
        names.add(corruption_mean_name(corruption))
        names.update(corruption_error_names(corruption))
    return frozenset(names)


def _placeholders(value) -> set:
    """The ``{field}`` names in the strings of a nested config value."""
    if isinstance(value, str):
        return {field for _, field, _, _ in string.Formatter().parse(value)
                if field is not None}
    if isinstance(value, dict):
        return set().union(*map(_placeholders, value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*map(_placeholders, value))
    return set()


def _format(value, **fields):
    """``value`` with ``str.format(**fields)`` applied to every string."""
    if isinstance(value, str):
        return value.format(**fields)
    if isinstance(value, dict):
        return {k: _format(v, **fields) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_format(v, **fields) for v in value)
    return value


def expand_sweep(sweep: dict) -> Tuple[Tuple[str, ...], Tuple[int, ...],
                                       List[dict]]:
    """The test sets of a ``corruption_sweep`` config.

    Args:
        sweep: ``dict(corruptions='benchmark', severities=(1, 2, 3, 4, 5),
            transform=dict(type='ImageCorruption'),
            insert_after='LoadImageFromFile')`` (these are the defaults of
            the keys left out), or, for folders of pre-corrupted images,
            ``dict(corruptions=..., severities=..., dataset=dict(...))``
            whose strings may hold ``{corruption}`` and ``{severity}``.

    Returns:
        ``(corruptions, severities, specs)``: the resolved names
        (:func:`mmspd.corruption.resolve_corruptions`), the severities, and
        one ``ood_sets``-style spec per pair, corruption-major
        (``fog-1, fog-2, ..., snow-1, ...``): ``dict(name='fog-3',
        transforms=[dict(type='ImageCorruption', corruption='fog',
        severity=3)], insert_after=...)``, or ``dict(name='fog-3',
        dataset=<dataset with fog and 3 filled in>)``.

    Raises:
        ValueError naming an unknown key, corruption, set or placeholder, a
        severity outside 1..5, a transform that already sets ``corruption``
        or ``severity``, both ``transform`` and ``dataset``, or a dataset
        whose strings never name the corruption or severity that varies.
    """
    if not isinstance(sweep, dict):
        raise ValueError(f'corruption_sweep must be a dict, got {sweep!r}')
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f'corruption_sweep has unknown keys {unknown}: '
                         f'expected some of {list(SWEEP_KEYS)}')
    corruptions = resolve_corruptions(sweep.get('corruptions', 'benchmark'))
    severities = resolve_severities(sweep.get('severities', SEVERITIES))
    if 'dataset' in sweep and 'transform' in sweep:
        raise ValueError('corruption_sweep takes a transform (corrupt the ID '
                         'images) or a dataset (pre-corrupted images), not '
                         'both')
    specs = []
    if 'dataset' in sweep:
        dataset = sweep['dataset']
        if not isinstance(dataset, dict):
            raise ValueError(f'corruption_sweep.dataset must be a dict, got '
                             f'{dataset!r}')
        fields = _placeholders(dataset)
        bad = sorted(fields - {'corruption', 'severity'})
        if bad:
            raise ValueError(f'corruption_sweep.dataset has unknown '
                             f'placeholders {bad}: only {{corruption}} and '
                             f'{{severity}} are filled in')
        for field, values in (('corruption', corruptions),
                              ('severity', severities)):
            if len(values) > 1 and field not in fields:
                raise ValueError(
                    f'corruption_sweep.dataset never uses {{{field}}}, so '
                    f'its {len(values)} {field} values would all read the '
                    f'same images')
        for corruption in corruptions:
            for severity in severities:
                specs.append(dict(
                    name=sweep_set_name(corruption, severity),
                    dataset=_format(copy.deepcopy(dataset),
                                    corruption=corruption,
                                    severity=severity)))
        return corruptions, severities, specs
    transform = sweep.get('transform', DEFAULT_TRANSFORM)
    if not isinstance(transform, dict) or 'type' not in transform:
        raise ValueError(f'corruption_sweep.transform must be a transform '
                         f'config dict with a type, got {transform!r}')
    preset = sorted({'corruption', 'severity'} & set(transform))
    if preset:
        raise ValueError(f'corruption_sweep.transform sets {preset}, which '
                         f'the sweep fills in for each set: remove them')
    insert_after = sweep.get('insert_after', 'LoadImageFromFile')
    if not isinstance(insert_after, str) or not insert_after:
        raise ValueError(f'corruption_sweep.insert_after must be a transform '
                         f'type name, got {insert_after!r}')
    for corruption in corruptions:
        for severity in severities:
            specs.append(dict(
                name=sweep_set_name(corruption, severity),
                transforms=[dict(copy.deepcopy(transform),
                                 corruption=corruption, severity=severity)],
                insert_after=insert_after))
    return corruptions, severities, specs


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _set_metrics(metrics: Dict[str, float], name: str) -> Dict[str, float]:
    prefix = f'{name}/'
    return {k[len(prefix):]: v for k, v in metrics.items()
            if k.startswith(prefix)}


def summary_metrics(metrics: Dict[str, float], id_name: str,
                    sweep_names: Sequence[str]) -> List[str]:
    """The metrics to summarise: every numeric metric of the ID set that
    every sweep set has as a number too, in the ID set's order."""
    clean = _set_metrics(metrics, id_name)
    per_set = [_set_metrics(metrics, name) for name in sweep_names]
    return [m for m, v in clean.items() if _is_number(v) and all(
        _is_number(s.get(m)) for s in per_set)]


def sweep_summary(metrics: Dict[str, float], id_name: str,
                  corruptions: Sequence[str], severities: Sequence[int]
                  ) -> Tuple[Dict[str, float], List[str]]:
    """P, mPC, rPC and the per-corruption means of every summarised metric.

    Args:
        metrics: ``{'<set>/<metric>': value}`` of the ID set ``id_name`` and
            of every sweep set ``'<corruption>-<severity>'``.
        id_name: the clean set, whose value is P.
        corruptions, severities: the sweep's grid.

    Returns:
        ``(summary, notes)``: for each metric ``m`` of
        :func:`summary_metrics`, ``P/m``, ``mPC/m`` (mean over all
        ``len(corruptions) * len(severities)`` sets), ``rPC/m`` (= 100 *
        mPC / P, in %) and ``<corruption>-avg/m``; ``notes`` are the lines to
        log about what was left out. rPC is left out (and noted) when P is 0
        or not finite: the ratio would be inf or NaN. A metric that is
        :data:`NOT_COMPUTABLE` in the clean set or any sweep set is left out
        (and noted): -1 is no score to average.
    """
    names = [sweep_set_name(c, s) for c in corruptions for s in severities]
    summary: Dict[str, float] = {}
    notes: List[str] = []
    numeric = summary_metrics(metrics, id_name, names)
    skipped = [m for m, v in _set_metrics(metrics, id_name).items()
               if _is_number(v) and m not in numeric]
    if skipped:
        notes.append(f'Corruption summary: {skipped} left out, not a number '
                     f'in every sweep set')
    undefined = [m for m in numeric if any(
        float(metrics[f'{n}/{m}']) == NOT_COMPUTABLE
        for n in [id_name, *names])]
    if undefined:
        notes.append(f'Corruption summary: {undefined} left out, not '
                     f'computable in some set (the evaluator reported '
                     f'{NOT_COMPUTABLE}, e.g. CocoMetric without objects of '
                     f'that size)')
    chosen = [m for m in numeric if m not in undefined]
    for metric in chosen:
        clean = float(metrics[f'{id_name}/{metric}'])
        values = [float(metrics[f'{n}/{metric}']) for n in names]
        mean = sum(values) / len(values)
        summary[f'{CLEAN}/{metric}'] = clean
        summary[f'{MEAN_PC}/{metric}'] = mean
        if clean != 0 and math.isfinite(clean):
            summary[f'{RELATIVE_PC}/{metric}'] = 100.0 * mean / clean
        else:
            notes.append(f'{RELATIVE_PC}/{metric} not computed: the clean '
                         f'value P/{metric} is {clean}, so mPC / P is not '
                         f'a number')
    for metric in chosen:
        for corruption in corruptions:
            values = [float(metrics[f'{sweep_set_name(corruption, s)}/'
                                    f'{metric}']) for s in severities]
            summary[f'{corruption_mean_name(corruption)}/{metric}'] = (
                sum(values) / len(values))
    return summary, notes


def imagenet_c_errors(metrics: Dict[str, float], id_name: str,
                      corruptions: Sequence[str], severities: Sequence[int],
                      top1: str = TOP1) -> Tuple[Dict[str, float], List[str]]:
    """CE and relative CE per corruption, mCE and relative mCE, in %.

    With ``E_{s,c}`` the top-1 error (100 - ``accuracy/top1``) at severity
    ``s`` of corruption ``c``, ``E_clean`` that of the ID set and ``A`` the
    same for AlexNet (:data:`ALEXNET_ERRORS`, :data:`ALEXNET_CLEAN_ERROR`)::

        CE_c          = 100 * sum_s E_{s,c} / sum_s A_{s,c}
        relative CE_c = 100 * sum_s (E_{s,c} - E_clean)
                            / sum_s (A_{s,c} - A_clean)

    over ``s = 1..5``; mCE and relative mCE are their means over the 15
    benchmark corruptions.

    Computed only when ``<id_name>/<top1>`` is in ``metrics`` (otherwise
    nothing is returned, nothing noted). CE is computed for each benchmark
    corruption of the sweep that has all 5 severities; mCE only when all 15
    have them, else a note says which are missing (a mean over fewer
    corruptions would not be ImageNet-C's mCE). Returns ``(errors, notes)``.
    """
    clean_key = f'{id_name}/{top1}'
    if not _is_number(metrics.get(clean_key)):
        return {}, []
    clean_error = 100.0 - float(metrics[clean_key])
    errors: Dict[str, float] = {}
    complete = [c for c in BENCHMARK_CORRUPTIONS if c in corruptions
                and set(SEVERITIES) <= set(severities) and all(
                    _is_number(metrics.get(
                        f'{sweep_set_name(c, s)}/{top1}'))
                    for s in SEVERITIES)]
    ce, relative = {}, {}
    for corruption in complete:
        model = [100.0 - float(metrics[f'{sweep_set_name(corruption, s)}/'
                                       f'{top1}']) for s in SEVERITIES]
        alexnet = ALEXNET_ERRORS[corruption]
        ce[corruption] = 100.0 * sum(model) / sum(alexnet)
        relative[corruption] = 100.0 * (
            sum(model) - len(model) * clean_error) / (
                sum(alexnet) - len(alexnet) * ALEXNET_CLEAN_ERROR)
        ce_name, relative_name = corruption_error_names(corruption)
        errors[f'{ce_name}/{top1}'] = ce[corruption]
        errors[f'{relative_name}/{top1}'] = relative[corruption]
    notes = []
    missing = [c for c in BENCHMARK_CORRUPTIONS if c not in complete]
    if missing:
        notes.append(
            f'{MEAN_CE} not computed: ImageNet-C\'s {MEAN_CE} needs the 15 '
            f'benchmark corruptions at severities 1-5 with {top1}; missing '
            f'{", ".join(missing)}' + (
                '' if set(SEVERITIES) <= set(severities) else
                f' (the sweep has severities {list(severities)})'))
    else:
        errors[f'{MEAN_CE}/{top1}'] = sum(ce.values()) / len(ce)
        errors[f'{RELATIVE_MEAN_CE}/{top1}'] = (
            sum(relative.values()) / len(relative))
    return errors, notes


def _cell(metrics: Dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return f'{value:.2f}' if _is_number(value) else '-'


def format_sweep_table(metrics: Dict[str, float], metric: str,
                       corruptions: Sequence[str],
                       severities: Sequence[int]) -> str:
    """One metric over the grid: a row per corruption (its value at each
    severity, then its mean), a last row of the means per severity and mPC.
    """
    header = [metric] + [str(s) for s in severities] + ['avg']
    rows = [header]
    for corruption in corruptions:
        rows.append([corruption] + [
            _cell(metrics, f'{sweep_set_name(corruption, s)}/{metric}')
            for s in severities
        ] + [_cell(metrics, f'{corruption_mean_name(corruption)}/{metric}')])
    means = []
    for severity in severities:
        keys = [f'{sweep_set_name(c, severity)}/{metric}'
                for c in corruptions]
        values = [metrics[k] for k in keys if _is_number(metrics.get(k))]
        means.append(f'{sum(values) / len(values):.2f}'
                     if len(values) == len(keys) else '-')
    rows.append([MEAN_PC] + means + [_cell(metrics, f'{MEAN_PC}/{metric}')])
    return format_columns(rows, left_columns=1, rule=True)


def format_summary_table(metrics: Dict[str, float],
                         summarised: Sequence[str]) -> str:
    """A row per metric: P, mPC and rPC (in %)."""
    rows = [['metric', CLEAN, MEAN_PC, f'{RELATIVE_PC} [%]']]
    for metric in summarised:
        rows.append([metric] + [
            _cell(metrics, f'{row}/{metric}')
            for row in (CLEAN, MEAN_PC, RELATIVE_PC)])
    return format_columns(rows, left_columns=1, rule=True)


def format_error_table(metrics: Dict[str, float],
                       top1: str = TOP1) -> str:
    """A row per corruption with a CE, then mCE: CE and relative CE, in %.
    Empty when no CE was computed."""
    rows = [['corruption', 'CE [%]', 'relative CE [%]']]
    for corruption in BENCHMARK_CORRUPTIONS:
        ce_name, relative_name = corruption_error_names(corruption)
        if f'{ce_name}/{top1}' in metrics:
            rows.append([corruption, _cell(metrics, f'{ce_name}/{top1}'),
                         _cell(metrics, f'{relative_name}/{top1}')])
    if len(rows) == 1:
        return ''
    if f'{MEAN_CE}/{top1}' in metrics:
        rows.append([MEAN_CE, _cell(metrics, f'{MEAN_CE}/{top1}'),
                     _cell(metrics, f'{RELATIVE_MEAN_CE}/{top1}')])
    return format_columns(rows, left_columns=1, rule=True)
