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
"""
import copy
import json
import numbers
import os.path as osp
from typing import Dict, List, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop

from ..text_table import format_columns

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
    """

    def __init__(self, runner, dataloader, evaluator, id_name: str = 'clean',
                 ood_sets: Sequence[dict] = (), fp16: bool = False,
                 out_file: str = 'robustness.json') -> None:
        if not isinstance(dataloader, dict) and ood_sets:
            raise TypeError('RobustTestLoop derives the OOD dataloaders from '
                            'the test_dataloader config, so it needs a dict, '
                            f'got {type(dataloader).__name__}')
        id_loader_cfg = copy.deepcopy(dataloader)
        id_evaluator_cfg = copy.deepcopy(evaluator)
        super().__init__(runner, dataloader, evaluator, fp16)
        names = [id_name] + [spec.get('name') for spec in ood_sets]
        for name in names:
            if not isinstance(name, str) or not name or '/' in name \
                    or name == OOD_AVERAGE:
                raise ValueError(f'Invalid set name {name!r}: expected a '
                                 f'non-empty string without "/", other '
                                 f'than {OOD_AVERAGE!r}')
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f'Set names must be unique, got {duplicates} '
                             f'more than once')
        self.id_name = id_name
        self.out_file = out_file
        self.sets = [(id_name, self.dataloader, self.evaluator)]
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
        return [name for name, _, _ in self.sets]

    def run(self) -> dict:
        """Evaluate every set; return ``{'<set>/<metric>': value}``."""
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        metrics: Dict[str, float] = {}
        for name, loader, evaluator in self.sets:
            self.dataloader, self.evaluator = loader, evaluator
            self.test_loss.clear()
            for idx, data_batch in enumerate(loader):
                self.run_iter(idx, data_batch)
            result = evaluator.evaluate(len(loader.dataset))
            metrics.update({f'{name}/{k}': v for k, v in result.items()})
            print_log(f'{name}: ' + ', '.join(
                f'{k}={v:.4f}' for k, v in result.items()
                if is_number(v)), logger='current')
        self.dataloader, self.evaluator = self.sets[0][1], self.sets[0][2]
        metrics.update(self._ood_average(metrics))
        names = self.set_names + ([OOD_AVERAGE] if len(self.sets) > 1 else [])
        print_log('Robustness (ID and OOD sets):\n' +
                  format_table(metrics, names), logger='current')
        self._write_json(metrics)
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

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
            json.dump(dict(id=self.id_name, ood=self.set_names[1:],
                           metrics={k: float(v) for k, v in metrics.items()
                                    if is_number(v)}),
                      f, indent=2)
        print_log(f'Robustness results written to {path}', logger='current')
