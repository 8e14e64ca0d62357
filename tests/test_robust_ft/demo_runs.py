"""Short real runs of the demo's LeNet-5 configs (``configs/demo/``) on the
real digits data the demo writes, for the WiSE-FT, LP-FT and report tests.

The "pretrained" backbone is a seeded, freshly initialised LeNet-5 saved
with the layout of the pretraining stage's release file (``backbone.*``
and ``head.*`` keys under ``state_dict``): what matters to these tests is
that it is a file the configs' ``init_cfg`` really reads, with values that
differ from any fine-tuned weights.
"""
import os.path as osp
import uuid
from typing import Dict, Optional

import torch

from mmspd.robust_ft.pretrained import build_model
from projects.spd_demo import runs
from projects.spd_demo.data import write_digit_datasets
from projects.spd_demo.protocol import PRETRAIN_CONFIG, config_root

DEMO_CONFIGS = osp.join(config_root(), 'demo')


def demo_config(name: str) -> str:
    return osp.join(DEMO_CONFIGS, f'{name}.py')


def write_data(folder) -> str:
    """The demo's digits under ``folder``; returns the fine-tuning root."""
    root = osp.join(str(folder), 'digits')
    write_digit_datasets(root)
    return osp.join(root, 'digits59')


def write_pretrained(folder, seed: int = 0) -> str:
    torch.manual_seed(seed)
    model = build_model(runs.load_config(demo_config(
        osp.splitext(PRETRAIN_CONFIG)[0]), {}))
    model.init_weights()
    path = osp.join(str(folder), 'lenet5_pretrained.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def finetune_config(name: str, data_root: str, pretrained: str,
                    options: Optional[Dict] = None, seed: int = 0,
                    epochs: int = 1):
    """``configs/demo/<name>.py`` reading ``data_root`` and ``pretrained``,
    ``epochs`` long (5 iterations an epoch)."""
    return runs.load_config(demo_config(name), {
        **{f'{split}_dataloader.dataset.data_root': data_root
           for split in ('train', 'val', 'test')},
        'model.backbone.init_cfg.checkpoint': pretrained,
        'randomness.seed': seed,
        'experiment_name': f'{name}_{uuid.uuid4().hex[:8]}',
        **runs.epoch_options(epochs),
        **(options or {})
    })


def finetune(name: str, work_dir, data_root: str, pretrained: str,
             options: Optional[Dict] = None, seed: int = 0,
             epochs: int = 1) -> dict:
    """Train in-process; ``runs.train``'s result plus the config."""
    cfg = finetune_config(name, data_root, pretrained, options, seed,
                          epochs)
    out = runs.train(cfg, str(work_dir))
    return dict(out, cfg=cfg)
