"""``RobustTestLoop``: the ID test set and every OOD set in one test run.

One loop serves segmentation and classification configs::

    test_cfg = dict(
        type='RobustTestLoop',
        id_name='clean',
        ood_sets=[
            # the ID test set with transforms inserted into its pipeline
            dict(name='fog', transforms=[
                dict(type='ImageCorruption', corruption='fog', severity=3)]),
            # another data set: keys merged into the ID dataset config
            dict(name='sketch', dataset=dict(domain='sketch')),
            # another kind of data set: ``_delete_=True`` replaces the ID
            # dataset config instead (as in mmengine config inheritance)
            dict(name='imagenet-v2', dataset=dict(
                _delete_=True, type='ImageNetV2', data_root=...,
                pipeline=...)),
            # its own evaluator (e.g. a masked metric for ImageNet-A)
            dict(name='imagenet-a', dataset=dict(...),
                 evaluator=dict(type='MaskedAccuracy', ...)),
        ])

``tools/test.py`` then evaluates every set and prints one table (one row
per set, the OOD average last); the metrics are returned and logged with the
set's name as prefix (``fog/mIoU``, ``ood_avg/mIoU``) and written as JSON to
``<work_dir>/<timestamp>/robustness.json``.

A corruption sweep adds one set per (corruption, severity) pair, named
``'<corruption>-<severity>'``, and the robustness benchmark's summary::

    test_cfg = dict(
        type='RobustTestLoop',
        corruption_sweep=dict(
            corruptions='benchmark',          # or 'holdout', ['fog', ...]
            severities=(1, 2, 3, 4, 5),
            transform=dict(type='ImageCorruption'),
            insert_after='LoadImageFromFile'))
    # or pre-corrupted folders (ImageNet-C), merged into the ID dataset:
    #   corruption_sweep=dict(dataset=dict(
    #       _delete_=True, type='ImageNetC', data_root='data/imagenet-c',
    #       corruption='{corruption}', severity='{severity}', pipeline=...))

Its keys, for every numeric metric ``m`` of the evaluator (see
:mod:`~mmspd.engine.runner.corruption_summary`): ``P/m`` (the ID value),
``mPC/m`` (the mean over all sweep sets), ``rPC/m`` (100 * mPC / P, in %),
``<corruption>-avg/m`` and, with top-1 accuracy, ImageNet-C's
``mCE/accuracy/top1`` and ``relative_mCE/accuracy/top1``. ``ood_avg`` stays
the mean over the ``ood_sets`` only; the sweep is summarised by mPC.
"""
import copy
import json
import logging
import numbers
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop

from ..text_table import format_columns
from .corruption_summary import (expand_sweep, format_error_table,
                                 format_summary_table, format_sweep_table,
                                 imagenet_c_errors, reserved_names,
                                 summary_metrics, sweep_summary)

#: Row name of the mean over the OOD sets.
OOD_AVERAGE = 'ood_avg'


def is_number(value) -> bool:
    """Whether a metric value is a real number: Python's or numpy's
    (mmseg's ``IoUMetric`` returns ``numpy.float32``)."""
    return isinstance(value, numbers.Real)


def insert_transforms(pipeline: List[dict], transforms: Sequence[dict],
                      after: str) -> List[dict]:
    """A copy of ``pipeline`` with ``transforms`` right after ``after``.

    Raises ``ValueError`` naming the transform types present when no
    transform of type ``after`` is in the pipeline.
    """
    types = [t.get('type') for t in pipeline]
    if after not in types:
        raise ValueError(f'Cannot insert OOD transforms after {after!r}: '
                         f'the test pipeline has {types}')
    index = types.index(after) + 1
    return (copy.deepcopy(pipeline[:index]) + copy.deepcopy(list(transforms))
            + copy.deepcopy(pipeline[index:]))


def derive_dataloader(id_dataloader: dict, spec: dict) -> dict:
    """The dataloader config of one OOD set, derived from the ID one."""
    loader = copy.deepcopy(id_dataloader)
    dataset = loader['dataset']
    if 'dataset' in spec:
        override = copy.deepcopy(spec['dataset'])
        if override.pop('_delete_', False):
            # another kind of data set: its config replaces the ID one
            dataset = loader['dataset'] = override
        else:
            dataset.update(override)
    if spec.get('transforms'):
        if 'pipeline' not in dataset:
            raise ValueError(f'OOD set {spec["name"]!r}: the test dataset '
                             f'config has no pipeline to insert transforms '
                             f'into')
        dataset['pipeline'] = insert_transforms(
            dataset['pipeline'], spec['transforms'],
            spec.get('insert_after', 'LoadImageFromFile'))
    return loader


def format_table(metrics: Dict[str, float], names: Sequence[str]) -> str:
    """Rows: sets (and the OOD average); columns: metrics."""
    columns: List[str] = []
    for key in metrics:
        name, metric = key.split('/', 1)
        if name in names and metric not in columns:
            columns.append(metric)
    rows = [['set'] + columns]
    for name in names:
        rows.append([name] + [
            f'{metrics[f"{name}/{c}"]:.2f}' if f'{name}/{c}' in metrics
            else '-' for c in columns
        ])
    return format_columns(rows, rule=True)


@LOOPS.register_module()
class RobustTestLoop(TestLoop):
    """Test on the in-distribution set and on each out-of-distribution set.

    Args:
        runner: the Runner.
        dataloader: the ID test dataloader (``test_dataloader``).
        evaluator: the ID evaluator (``test_evaluator``); each OOD set
            gets a fresh one built from the same config unless it names
            its own.
        id_name: the ID set's name in the metrics (default ``'clean'``).
        ood_sets: one dict per OOD set: ``name`` (required, unique),
            optional ``dataset`` (keys merged into the ID dataset config;
            with ``_delete_=True`` it replaces that config instead),
            ``transforms`` (inserted into the pipeline after
            ``insert_after``, default ``'LoadImageFromFile'``) and
            ``evaluator`` (a config replacing the ID one).
        fp16: as :class:`mmengine.runner.TestLoop`.
        out_file: file name of the JSON results in the run's log dir.
        corruption_sweep: ``None`` (default: no sweep) or a dict with any of
            ``corruptions`` (a set name of
            :data:`mmspd.corruption.CORRUPTION_SETS` or a list of names,
            default ``'benchmark'``), ``severities`` (default 1..5),
            ``transform`` (default ``dict(type='ImageCorruption')``; each
            set gets a copy with its ``corruption`` and ``severity``,
            inserted after ``insert_after``, default
            ``'LoadImageFromFile'``) or, instead of ``transform``,
            ``dataset`` (merged into the ID dataset config as an OOD set's
            ``dataset``, ``_delete_`` included, after ``{corruption}`` and
            ``{severity}`` in its strings are filled in). See
            :func:`~mmspd.engine.runner.corruption_summary.expand_sweep`.
            The sweep sets' dataloaders are built one at a time during the
            run and released after their evaluation.
    """

    def __init__(self, runner, dataloader, evaluator, id_name: str = 'clean',
                 ood_sets: Sequence[dict] = (), fp16: bool = False,
                 out_file: str = 'robustness.json',
                 corruption_sweep: Optional[dict] = None) -> None:
        if corruption_sweep is not None:
            sweep = expand_sweep(corruption_sweep)
        else:
            sweep = ((), (), [])
        if not isinstance(dataloader, dict) and (ood_sets or sweep[2]):
            raise TypeError('RobustTestLoop derives the OOD dataloaders from '
                            'the test_dataloader config, so it needs a dict, '
                            f'got {type(dataloader).__name__}')
        id_loader_cfg = copy.deepcopy(dataloader)
        id_evaluator_cfg = copy.deepcopy(evaluator)
        super().__init__(runner, dataloader, evaluator, fp16)
        names = [id_name] + [spec.get('name') for spec in ood_sets]
        reserved = reserved_names()
        for name in names:
            if not isinstance(name, str) or not name or '/' in name \
                    or name == OOD_AVERAGE or name in reserved:
                raise ValueError(f'Invalid set name {name!r}: expected a '
                                 f'non-empty string without "/", other '
                                 f'than {OOD_AVERAGE!r} and the corruption '
                                 f'summary\'s rows (P, mPC, rPC, mCE, '
                                 f'<corruption>-avg, ...)')
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f'Set names must be unique, got {duplicates} '
                             f'more than once')
        clashes = [spec['name'] for spec in sweep[2] if spec['name'] in names]
        if clashes:
            raise ValueError(f'corruption_sweep set names {clashes} are also '
                             f'names of the ID set or of ood_sets: rename '
                             f'those')
        self.id_name = id_name
        self.out_file = out_file
        self.sets = [(id_name, self.dataloader, self.evaluator)]
        #: The sweep's corruptions and severities (empty without a sweep).
        self.sweep_corruptions, self.sweep_severities = sweep[:2]
        #: ``(name, dataloader config, evaluator config)`` per sweep set,
        #: corruption-major; built in :meth:`run`.
        self.sweep_sets = [
            (spec['name'], derive_dataloader(id_loader_cfg, spec),
             copy.deepcopy(id_evaluator_cfg)) for spec in sweep[2]]
        for spec in ood_sets:
            unknown = set(spec) - {'name', 'dataset', 'transforms',
                                   'insert_after', 'evaluator'}
            if unknown:
                raise ValueError(f'OOD set {spec["name"]!r} has unknown '
                                 f'keys {sorted(unknown)}')
            loader = runner.build_dataloader(
                derive_dataloader(id_loader_cfg, spec))
            set_evaluator = runner.build_evaluator(
                copy.deepcopy(spec.get('evaluator', id_evaluator_cfg)))
            if hasattr(loader.dataset, 'metainfo'):
                set_evaluator.dataset_meta = loader.dataset.metainfo
            self.sets.append((spec['name'], loader, set_evaluator))

    @property
    def set_names(self) -> List[str]:
        """The ID set and the ``ood_sets``, in order (not the sweep)."""
        return [name for name, _, _ in self.sets]

    @property
    def sweep_names(self) -> List[str]:
        """The sweep sets (``'fog-1'``, ...), corruption-major."""
        return [name for name, _, _ in self.sweep_sets]

    def _evaluate(self, name: str, loader, evaluator) -> Dict[str, float]:
        self.dataloader, self.evaluator = loader, evaluator
        self.test_loss.clear()
        for idx, data_batch in enumerate(loader):
            self.run_iter(idx, data_batch)
        result = evaluator.evaluate(len(loader.dataset))
        print_log(f'{name}: ' + ', '.join(
            f'{k}={v:.4f}' for k, v in result.items()
            if is_number(v)), logger='current')
        return {f'{name}/{k}': v for k, v in result.items()}

    def run(self) -> dict:
        """Evaluate every set; return ``{'<set>/<metric>': value}``."""
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        metrics: Dict[str, float] = {}
        for name, loader, evaluator in self.sets:
            metrics.update(self._evaluate(name, loader, evaluator))
        for name, loader_cfg, evaluator_cfg in self.sweep_sets:
            loader = self.runner.build_dataloader(copy.deepcopy(loader_cfg))
            evaluator = self.runner.build_evaluator(
                copy.deepcopy(evaluator_cfg))
            if hasattr(loader.dataset, 'metainfo'):
                evaluator.dataset_meta = loader.dataset.metainfo
            metrics.update(self._evaluate(name, loader, evaluator))
            del loader, evaluator  # its workers end before the next set's
        self.dataloader, self.evaluator = self.sets[0][1], self.sets[0][2]
        metrics.update(self._ood_average(metrics))
        names = self.set_names + ([OOD_AVERAGE] if len(self.sets) > 1 else [])
        print_log('Robustness (ID and OOD sets):\n' +
                  format_table(metrics, names), logger='current')
        if self.sweep_sets:
            metrics.update(self._sweep_summary(metrics))
        self._write_json(metrics)
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    def _sweep_summary(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """P/mPC/rPC, per-corruption means and, with top-1, mCE; printed."""
        corruptions = self.sweep_corruptions
        severities = self.sweep_severities
        summary, notes = sweep_summary(metrics, self.id_name, corruptions,
                                       severities)
        errors, error_notes = imagenet_c_errors(metrics, self.id_name,
                                                corruptions, severities)
        summary.update(errors)
        for note in notes + error_notes:
            print_log(note, logger='current', level=logging.WARNING)
        shown = {**metrics, **summary}
        summarised = summary_metrics(metrics, self.id_name, self.sweep_names)
        text = [f'Corruption sweep ({len(corruptions)} corruptions x '
                f'{len(severities)} severities = {len(self.sweep_sets)} '
                f'sets, clean set {self.id_name!r}):']
        for metric in summarised:
            text.append(format_sweep_table(shown, metric, corruptions,
                                           severities))
        text.append('Corruption robustness (P: clean, mPC: mean under '
                    'corruption, rPC = mPC / P):\n' +
                    format_summary_table(shown, summarised))
        error_table = format_error_table(shown)
        if error_table:
            text.append('ImageNet-C corruption errors (top-1, normalised by '
                        'AlexNet):\n' + error_table)
        print_log('\n\n'.join(text), logger='current')
        return summary

    def _ood_average(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """Mean over the OOD sets of each numeric metric they all have."""
        ood = self.set_names[1:]
        if not ood:
            return {}
        per_set = [{k.split('/', 1)[1]: v for k, v in metrics.items()
                    if k.split('/', 1)[0] == name} for name in ood]
        shared = [k for k in per_set[0]
                  if all(k in s and is_number(s[k])
                         for s in per_set)]
        return {f'{OOD_AVERAGE}/{k}': sum(s[k] for s in per_set) / len(ood)
                for k in shared}

    def _write_json(self, metrics: Dict[str, float]) -> None:
        if not is_main_process():
            return
        path = osp.join(self.runner.log_dir, self.out_file)
        with open(path, 'w', encoding='utf-8') as f:
            results = dict(id=self.id_name, ood=self.set_names[1:],
                           metrics={k: float(v) for k, v in metrics.items()
                                    if is_number(v)})
            if self.sweep_sets:
                results['corruption_sweep'] = dict(
                    corruptions=list(self.sweep_corruptions),
                    severities=list(self.sweep_severities),
                    sets=self.sweep_names)
            json.dump(results, f, indent=2)
        print_log(f'Robustness results written to {path}', logger='current')
