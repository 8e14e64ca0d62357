"""The whole demo, stage by stage: data, pretraining, grid of fine-tuning
runs, selection by ID validation accuracy, ID + OOD tests, linear probes
and LP-FT, WiSE-FT sweeps, publishing; then the report
(:mod:`projects.spd_demo.report`, on :mod:`mmspd.robust_ft.report`, the
library of ``tools/analysis_tools/robustness_report.py``).

Every stage caches its outputs under the work folder (see
:mod:`projects.spd_demo.stages`), so a second run only rebuilds the report.
"""
import os
import os.path as osp
import shutil
import time
import uuid
from dataclasses import asdict
from typing import Any, Callable, List, Optional

import torch
from mmengine.logging import MMLogger, print_log

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from mmspd.robust_ft.report import select_strength
from mmspd.robust_ft.wise_ft import alpha_tag, run_wise_ft
from mmspd.zoo.publish import publish_checkpoint, sha256_of, strip_checkpoint
from . import report, runs
from .data import CANVAS, DIGIT, write_digit_datasets
from .protocol import (METRIC, PRETRAIN_CONFIG, DemoProtocol, Method,
                       config_root)
from .stages import code_fingerprint, run_stage

#: Name of the published models.
MODEL_PREFIX = 'lenet5_digits59_'


def _value_tag(value: float) -> str:
    return f'{value:g}'


class _Progress:
    """One log line per stage: ``[k/N] what: outcome (seconds)``."""

    def __init__(self, logger: MMLogger, total: int) -> None:
        self.logger, self.total, self.done = logger, total, 0

    def stage(self, what: str, stage_dir: str, key: Any,
              fn: Callable[[str], Any], outcome: Callable[[Any], str]):
        result, seconds, reused = run_stage(stage_dir, key, fn)
        self.done += 1
        timing = 'cached' if reused else f'{seconds:.1f} s'
        self.log(f'[{self.done}/{self.total}] {what}: {outcome(result)} '
                 f'({timing})')
        return result

    def log(self, message: str) -> None:
        print_log(message, logger=self.logger)


def _sklearn_version() -> str:
    import sklearn
    return sklearn.__version__


class Demo:
    """The demo in ``work_dir`` under ``protocol``: its stages, each a
    method; :meth:`run` runs them and writes the report
    (:mod:`projects.spd_demo.report`)."""

    def __init__(self, work_dir: str, protocol: DemoProtocol = DemoProtocol(),
                 logger: Optional[MMLogger] = None) -> None:
        self.work_dir = osp.abspath(work_dir)
        self.protocol = protocol
        os.makedirs(self.work_dir, exist_ok=True)
        self.logger = logger or MMLogger.get_instance(
            f'mmspd_demo_{uuid.uuid4().hex[:8]}', logger_name='mmspd-demo',
            log_file=osp.join(self.work_dir, 'demo.log'), log_level='INFO')
        p = protocol
        n_seeds, n_grid = len(p.seeds), len(p.methods[0].grid)
        total = (2 + len(p.methods) * n_seeds * (n_grid + 1)
                 + (2 * n_seeds if p.reference else 0)
                 + (n_seeds * (n_grid + 1) if p.lpft else 0)
                 + len(p.wise_ft_methods) * n_seeds)
        self.progress = _Progress(self.logger, total)
        self.configs = osp.join(config_root(), 'demo')
        self.code = code_fingerprint()

    # -- stages --------------------------------------------------------------
    def data(self) -> dict:
        splits = self.protocol.splits
        key = dict(splits=asdict(splits), sklearn=_sklearn_version(),
                   canvas=CANVAS, digit=DIGIT)
        return self.progress.stage(
            'data: sklearn digits -> CustomDataset folders',
            osp.join(self.work_dir, 'data'), key,
            lambda d: dict(root=d, manifest=write_digit_datasets(d, splits)),
            lambda r: ', '.join(f'{task} ' + '/'.join(
                f'{n} {split}' for split, n in counts.items())
                for task, counts in r['manifest']['counts'].items()))

    def pretrain(self, data: dict) -> dict:
        root = osp.join(data['root'], 'digits04')
        cfg = runs.load_config(
            osp.join(self.configs, PRETRAIN_CONFIG), {
                'train_dataloader.dataset.data_root': root,
                'val_dataloader.dataset.data_root': root,
                'randomness.seed': 0,
                **runs.epoch_options(self.protocol.pretrain_epochs)
            })

        def fn(stage_dir: str) -> dict:
            out = runs.train(cfg, osp.join(stage_dir, 'run'))
            release, _ = strip_checkpoint(out['checkpoint'])
            weights = osp.join(stage_dir, 'lenet5_digits04.pth')
            torch.save(release, weights)
            return dict(weights=weights, sha256=sha256_of(weights),
                        val_accuracy=out['val']['accuracy/top1'])

        return self.progress.stage(
            'pretrain LeNet-5 on digits 0-4 (augmented)',
            osp.join(self.work_dir, 'pretrain'),
            dict(config=runs.config_fingerprint(cfg), code=self.code), fn,
            lambda r: f'clean val accuracy {r["val_accuracy"]:.1f}%')

    def _finetune_config(self, method: Method, data: dict, pretrained: dict,
                         seed: int, value: Optional[float],
                         probe: Optional[dict] = None):
        root = osp.join(data['root'], 'digits59')
        options = {
            f'{split}_dataloader.dataset.data_root': root
            for split in ('train', 'val', 'test')
        }
        options.update({
            'model.backbone.init_cfg.checkpoint': pretrained['weights'],
            'randomness.seed': seed,
            **runs.epoch_options(self.protocol.finetune_epochs)
        })
        if value is not None:
            options['optim_wrapper.optimizer.weight_decay'] = value
        if probe is not None:  # LP-FT: the head starts as the probe's
            options['model.head.init_cfg.checkpoint'] = probe['checkpoint']
        cfg = runs.load_config(method.config, options)
        key = dict(config=runs.config_fingerprint(cfg),
                   pretrained=pretrained['sha256'], code=self.code)
        if probe is not None:
            key['probe'] = sha256_of(probe['checkpoint'])
        return cfg, key

    def finetune(self, method: Method, data: dict, pretrained: dict,
                 seed: int, value: Optional[float],
                 probe: Optional[dict] = None) -> dict:
        cfg, key = self._finetune_config(method, data, pretrained, seed,
                                         value, probe)
        tag = 'default' if value is None else _value_tag(value)
        setting = '' if value is None else f' {method.strength}={tag}'

        def fn(stage_dir: str) -> dict:
            out = runs.train(cfg, osp.join(stage_dir, 'run'))
            return dict(val_accuracy=out['val']['accuracy/top1'],
                        checkpoint=out['checkpoint'], spd=out['spd'])

        def outcome(r: dict) -> str:
            text = f'ID val accuracy {r["val_accuracy"]:.1f}%'
            if 'backbone_deviation' in r['spd']:
                text += (f', backbone |p-a|/|a| '
                         f'{100 * r["spd"]["backbone_deviation"]:.1f}%')
            if 'projected_fraction' in r['spd']:
                text += (f', projected '
                         f'{100 * r["spd"]["projected_fraction"]:.0f}% of '
                         f'tensor steps')
            return text

        result = self.progress.stage(
            f'fine-tune {method.name}{setting} seed={seed}',
            osp.join(self.work_dir, 'finetune', method.key, tag,
                     f'seed{seed}'), key, fn, outcome)
        return dict(result, key=key, cfg=cfg)

    def test(self, method: Method, run: dict, seed: int) -> dict:

        def fn(stage_dir: str) -> dict:
            return runs.test(run['cfg'], run['checkpoint'],
                             osp.join(stage_dir, 'run'))

        result = self.progress.stage(
            f'test {method.name} seed={seed} on ID + OOD sets',
            osp.join(self.work_dir, 'test', method.key, f'seed{seed}'),
            dict(finetune=run['key'], checkpoint=sha256_of(run['checkpoint'])),
            fn, lambda r: ', '.join(
                f'{k.split("/")[0]} {v:.1f}' for k, v in r['metrics'].items()
                if k.endswith(METRIC)))
        return result

    # -- the protocol --------------------------------------------------------
    def wise_ft(self, method: Method, run: dict) -> dict:
        """WiSE-FT sweep of one tested run (the library of
        ``tools/analysis_tools/wise_ft.py``)."""
        alphas = list(self.protocol.wise_ft_alphas)

        def fn(stage_dir: str) -> dict:
            cfg = run['cfg'].copy()
            cfg.log_level = 'WARNING'
            with runs.stdout_to(osp.join(stage_dir, 'stdout.txt')):
                result = run_wise_ft(cfg, run['checkpoint'], alphas,
                                     osp.join(stage_dir, 'run'),
                                     figure=False)
            return dict(points=[
                dict(alpha=p['alpha'], test={
                    k.split('/')[0]: v for k, v in p['metrics'].items()
                    if k.endswith('/' + METRIC)}) for p in result['points']
            ], head=result['head'])

        return self.progress.stage(
            f'WiSE-FT {method.name} seed={run["seed"]}, alpha in '
            f'{{{", ".join(alpha_tag(a) for a in alphas)}}}',
            osp.join(self.work_dir, 'wise_ft', method.key,
                     f'seed{run["seed"]}'),
            dict(finetune=run['key'], alphas=alphas,
                 checkpoint=sha256_of(run['checkpoint'])), fn,
            lambda r: ', '.join(
                f'{alpha_tag(p["alpha"])}: {p["test"][OOD_AVERAGE]:.1f}'
                for p in r['points']) + ' OOD avg')

    def _runs_of(self, method: Method, data: dict, pretrained: dict,
                 value: Optional[float],
                 probes: Optional[List[dict]] = None) -> List[dict]:
        return [self.finetune(method, data, pretrained, seed, value,
                              probes[i] if probes else None)
                for i, seed in enumerate(self.protocol.seeds)]

    def _tested(self, method: Method, trained: List[dict]) -> List[dict]:
        tested = []
        for seed, run in zip(self.protocol.seeds, trained):
            result = self.test(method, run, seed)
            metrics = result['metrics']
            tested.append(dict(
                seed=seed, val_accuracy=run['val_accuracy'], spd=run['spd'],
                checkpoint=run['checkpoint'],
                results_json=result['results_json'],
                test={k.split('/')[0]: v for k, v in metrics.items()
                      if k.endswith('/' + METRIC)},
                key=run['key'], cfg=run['cfg']))
        return tested

    def run_method(self, method: Method, data: dict, pretrained: dict,
                   probes: Optional[List[dict]] = None) -> dict:
        """Grid x seeds, pick the strength by mean ID val accuracy (ties:
        first in grid order; :func:`mmspd.robust_ft.report.select_strength`,
        the report's own rule), test the picked runs. ``probes``: LP-FT's
        first stage, one tested linear-probe run per seed."""
        grid = []
        for value in method.grid:
            trained = self._runs_of(method, data, pretrained, value, probes)
            accuracies = [r['val_accuracy'] for r in trained]
            grid.append(dict(value=value, val_accuracy=accuracies,
                             mean_val_accuracy=sum(accuracies) /
                             len(accuracies), runs=trained))
        choice = select_strength(
            [dict(method=method.key, strength=g['value'], seed=seed,
                  val=val, source=f'{method.key} {g["value"]:g} seed {seed}')
             for g in grid
             for seed, val in zip(self.protocol.seeds, g['val_accuracy'])],
            order=method.grid)
        best = next(g for g in grid if g['value'] == choice['strength'])
        self.progress.log(
            f'{method.name}: {method.strength} '
            f'{_value_tag(best["value"])} selected by ID val accuracy ('
            + ', '.join(f'{_value_tag(g["value"])}: '
                        f'{g["mean_val_accuracy"]:.1f}%' for g in grid) + ')')
        tested = self._tested(method, best['runs'])
        for g in grid:
            del g['runs']
        return dict(key=method.key, name=method.name,
                    strength=method.strength, config=method.config,
                    grid=grid, selected=best['value'], runs=tested,
                    setting=f'{method.strength}={_value_tag(best["value"])}')

    def run_reference(self, method: Method, data: dict,
                      pretrained: dict) -> dict:
        trained = self._runs_of(method, data, pretrained, None)
        return dict(key=method.key, name=method.name, config=method.config,
                    runs=self._tested(method, trained), setting='',
                    reference=True)

    def publish(self, rows: List[dict], data: dict) -> List[dict]:
        """Publish each method's first-seed checkpoint; return the model-zoo
        records (``tools/misc/gen_model_index.py`` reads them)."""
        folder = osp.join(self.work_dir, 'published')
        if osp.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        records = []
        for row in rows:
            run = row['runs'][0]
            path, _ = publish_checkpoint(
                run['checkpoint'], osp.join(folder, MODEL_PREFIX + row['key']),
                results=run['results_json'])
            counts = data['manifest']['counts']['digits59']
            records.append(dict(
                name=MODEL_PREFIX + row['key'], config=row['config'],
                results=run['results_json'], weights=path,
                dataset='Digits 5-9',
                cfg_options={
                    'optim_wrapper.optimizer.weight_decay': row['selected'],
                    'randomness.seed': run['seed']
                },
                metadata={
                    'Training Data': f'Digits 5-9 (scikit-learn), '
                                     f'{counts["train"]} images',
                    'Pretrained': 'LeNet-5 on digits 0-4 '
                                  '(configs/demo/lenet5_digits04_pretrain.py)'
                }))
        return records

    def run(self, figure: Optional[str] = None) -> dict:
        """Run (or reuse) every stage; write the JSON, table, figure and
        model-zoo records; return the results (as in the JSON)."""
        with runs.single_thread():
            return self._run(figure)

    def _run(self, figure: Optional[str]) -> dict:
        start = time.perf_counter()
        p = self.protocol
        self.progress.log(
            f'SPD demo in {self.work_dir}: {len(p.methods)} methods x '
            f'{len(p.methods[0].grid)} strengths x {len(p.seeds)} seeds'
            + (', linear probe + LP-FT' if p.lpft else '')
            + (f', WiSE-FT of {", ".join(p.wise_ft_methods)}'
               if p.wise_ft_methods else ''))
        data = self.data()
        pretrained = self.pretrain(data)
        rows = [self.run_method(m, data, pretrained) for m in p.methods]
        reference = (self.run_reference(p.reference, data, pretrained)
                     if p.reference else None)
        lpft = (self.run_method(p.lpft, data, pretrained,
                                probes=reference['runs'])
                if p.lpft else None)
        for row in rows:
            if row['key'] in p.wise_ft_methods:
                method = next(m for m in p.methods if m.key == row['key'])
                for run in row['runs']:
                    run['wise_ft'] = self.wise_ft(method, run)
        records = self.publish(rows, data)
        results = report.assemble(p, data, pretrained, rows, reference, lpft,
                                  records)
        results['wall_time_s'] = time.perf_counter() - start
        results['paths'] = report.write(self.work_dir, results, records,
                                        figure)
        for message in report.closing_messages(results):
            self.progress.log(message)
        return results


def run_demo(work_dir: str, protocol: DemoProtocol = DemoProtocol(),
             figure: Optional[str] = None) -> dict:
    """Run the demo in ``work_dir``; see :class:`Demo`."""
    return Demo(work_dir, protocol).run(figure)
