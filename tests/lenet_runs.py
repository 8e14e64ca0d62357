"""Short real runs of ``tests/data/configs/tiny_lenet_spd.py``, in-process.

Real mmpretrain LeNet-5 training through mmengine's ``Runner`` on the tiny
on-disk data set of :mod:`tests.dataset_files`; no subprocess, so a run of a
few iterations takes seconds.
"""
import glob
import json
import os.path as osp
import uuid
from typing import List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

import mmspd  # noqa: F401  (registers AdamSPD, AdamL2SP, SPDMonitorHook)

CONFIG = osp.join(osp.dirname(__file__), 'data', 'configs',
                  'tiny_lenet_spd.py')


def lenet_config(work_dir, data_root, options: Optional[dict] = None,
                 resume: bool = False) -> Config:
    """The tiny LeNet config reading ``data_root``, writing to ``work_dir``.

    ``options`` are dotted keys as ``--cfg-options`` takes them, e.g.
    ``{'optim_wrapper.optimizer.type': 'AdamW', 'train_cfg.max_iters': 4}``.
    Every config gets a unique ``experiment_name``: mmengine keys its
    ``MessageHub``/``MMLogger``/``Visualizer`` singletons by that name, and
    two runners built within the same second would otherwise share them.
    """
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': str(data_root),
        'val_dataloader.dataset.data_root': str(data_root),
        **(options or {})
    })
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'tiny_lenet_{uuid.uuid4().hex}'
    cfg.log_level = 'WARNING'
    cfg.resume = resume
    return cfg


def build_runner(work_dir, data_root, options: Optional[dict] = None,
                 resume: bool = False) -> Runner:
    """A ``Runner`` (not yet trained) for :func:`lenet_config`."""
    return Runner.from_cfg(lenet_config(work_dir, data_root, options, resume))


def train(work_dir, data_root, options: Optional[dict] = None,
          resume: bool = False) -> Runner:
    """Build and train a runner; return it after training."""
    runner = build_runner(work_dir, data_root, options, resume)
    runner.train()
    return runner


def scalars_path(runner: Runner) -> str:
    """This runner's ``vis_data/scalars.json``."""
    return osp.join(runner.log_dir, 'vis_data', 'scalars.json')


def read_scalars(path: str) -> List[dict]:
    """The records of a scalars log, one dict per line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_rows(path: str) -> List[dict]:
    """The training rows (those with an ``iter``) of a scalars log."""
    return [r for r in read_scalars(path) if 'iter' in r]


def only_scalars_log(work_dir) -> str:
    """The single ``*/vis_data/scalars.json`` under ``work_dir``."""
    logs = glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                              'scalars.json'))
    if len(logs) != 1:
        raise AssertionError(f'expected one scalars log in {work_dir}, '
                             f'found {logs}')
    return logs[0]
