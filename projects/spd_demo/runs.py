"""One mmengine ``Runner`` per demo stage, in this process.

The runners are the same ones ``tools/train.py`` and ``tools/test.py``
build from the same configs; the demo only sets paths, seeds and the
strength under test, and keeps their console output to warnings (the demo
prints one line per stage instead).
"""
import contextlib
import json
import logging
import os
import os.path as osp
import uuid
from typing import Any, Dict, Optional

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from .stages import text_sha256

#: mmengine-internal deprecation notes that every runner would repeat.
_INTERNAL_NOTES = ('"FileClient" will be deprecated',
                   '"HardDiskBackend" is the alias of')


class _DropInternalNotes(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(note in message for note in _INTERNAL_NOTES)


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread, then restore the setting.

    The demo's model is tiny: a second thread buys nothing and, on a
    machine busy with other work, thread contention made runs several
    times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def epoch_options(epochs: Optional[int]) -> Dict[str, Any]:
    """Options that shorten or lengthen a demo config to ``epochs`` epochs
    (training, the final validation and the cosine schedule); ``{}`` for
    ``None``."""
    if epochs is None:
        return {}
    return {'train_cfg.max_epochs': epochs, 'train_cfg.val_interval': epochs,
            'param_scheduler.0.end': epochs}


def load_config(config: str, options: Dict[str, Any]) -> Config:
    """``config`` with ``options`` (``--cfg-options`` style keys) merged."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    return cfg


def config_fingerprint(cfg: Config) -> str:
    """sha256 of the config's text: what a cached stage depends on."""
    return text_sha256(cfg.pretty_text)


def _runner(cfg: Config, work_dir: str) -> Runner:
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    # mmengine keys its logger/message-hub singletons by experiment name
    cfg.experiment_name = f'{osp.basename(work_dir)}_{uuid.uuid4().hex[:8]}'
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.logger.addFilter(_DropInternalNotes())
    return runner


@contextlib.contextmanager
def stdout_to(path: str):
    """Send ``print()`` output (mmengine prints each checkpoint load) to
    ``path``; log records still reach the console."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f, \
            contextlib.redirect_stdout(f):
        yield


def train(cfg: Config, work_dir: str) -> Dict[str, Any]:
    """Train, validate at the end; return the ID validation metrics and the
    final checkpoint's path.

    The config must validate after its last epoch (``val_interval`` =
    ``max_epochs``; :func:`epoch_options` keeps it so).
    """
    with stdout_to(osp.join(work_dir, 'stdout.txt')):
        runner = _runner(cfg, work_dir)
        runner.train()
    last = osp.join(work_dir, 'last_checkpoint')
    with open(last, encoding='utf-8') as f:
        checkpoint = f.read().strip()
    val = {key[len('val/'):]: float(buffer.current())
           for key, buffer in runner.message_hub.log_scalars.items()
           if key.startswith('val/') and not key.endswith('time')}
    if 'accuracy/top1' not in val:
        raise RuntimeError(f'The run in {work_dir!r} logged no final '
                           f'validation accuracy (got {sorted(val)}): the '
                           f'config must validate after its last epoch')
    return dict(val=val, checkpoint=checkpoint,
                spd=spd_signals(osp.join(runner.log_dir, 'vis_data',
                                         'scalars.json')))


def spd_signals(scalars_json: str) -> Dict[str, float]:
    """What SPDMonitorHook logged, if the config has it: the mean over the
    run of ``spd/projected_fraction`` (AdamSPD) and the last
    ``spd/deviation/backbone`` (|p - a| / |a| of the backbone)."""
    fractions, deviation = [], None
    if osp.isfile(scalars_json):
        with open(scalars_json, encoding='utf-8') as f:
            for line in f:
                row = json.loads(line)
                if 'spd/projected_fraction' in row:
                    fractions.append(row['spd/projected_fraction'])
                if 'spd/deviation/backbone' in row:
                    deviation = row['spd/deviation/backbone']
    signals = {}
    if fractions:
        signals['projected_fraction'] = sum(fractions) / len(fractions)
    if deviation is not None:
        signals['backbone_deviation'] = deviation
    return signals


def test(cfg: Config, checkpoint: str, work_dir: str) -> Dict[str, Any]:
    """Test ``checkpoint`` with the config's test loop (RobustTestLoop: ID
    and OOD sets); return the metrics and the ``robustness.json`` path."""
    cfg = cfg.copy()
    cfg.load_from = checkpoint
    cfg.resume = False
    with stdout_to(osp.join(work_dir, 'stdout.txt')):
        runner = _runner(cfg, work_dir)
        metrics = runner.test()
    return dict(metrics={k: float(v) for k, v in metrics.items()},
                results_json=osp.join(runner.log_dir,
                                      runner.test_loop.out_file))
