"""The real segmentation configs, shrunk to seconds on a CPU.

:func:`tiny_options` gives ``--cfg-options``-style overrides (dotted keys,
list items by index) that turn ``configs/pascal_{ctx,mt}_*.py`` into a
reduced Swin/UperNet on 48x64 images; :func:`write_pretrained` writes the
reduced backbone's "pretrained" weights, loaded by the configs' own
``init_cfg``.
"""
import os.path as osp
import uuid
from typing import Dict

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mmspd  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')

#: The reduced Swin: 4 stages of one block, dims 16-32-64-128, window 2.
TINY_SWIN = dict(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                 window_size=2, drop_path_rate=0.0)
IMG_SCALE = (64, 64)
CROP = (48, 48)


def config_path(name: str) -> str:
    """``configs/<name>.py`` of this repository."""
    return osp.join(CONFIGS, f'{name}.py')


def write_pretrained(path: str, seed: int = 7) -> Dict[str, torch.Tensor]:
    """Save the state dict of a reduced ``SwinTransformer`` with weights
    drawn from ``seed`` (so they cannot equal a fresh random init) in the
    layout of mmseg's Swin checkpoints; return it."""
    from mmseg.registry import MODELS
    backbone = MODELS.build(
        dict(type='SwinTransformer', _scope_='mmseg', **TINY_SWIN))
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in backbone.state_dict().items():
        if value.is_floating_point():
            offset = 1.0 if 'norm' in name and name.endswith('weight') \
                else 0.0  # layer-norm gains around 1
            value = offset + 0.05 * torch.randn(value.shape,
                                                generator=generator)
        state[name] = value.clone()
    torch.save(dict(state_dict=state), path)
    return state


def tiny_options(data_root: str, pretrained: str, max_iters: int = 4,
                 val_interval: int = 2) -> dict:
    """Overrides (as ``--cfg-options`` takes them) for a tiny run of any
    ``configs/pascal_{ctx,mt}_*.py`` on the data under ``data_root``."""
    options = {
        'model.backbone.init_cfg.checkpoint': pretrained,
        'model.decode_head.in_channels': [16, 32, 64, 128],
        'model.decode_head.channels': 16,
        'model.decode_head.pool_scales': (1, 2),
        'model.auxiliary_head.in_channels': 64,
        'model.auxiliary_head.channels': 8,
        'model.data_preprocessor.size': CROP,
        'train_dataloader.batch_size': 2,
        'train_dataloader.dataset.pipeline.2.scale': IMG_SCALE,
        'train_dataloader.dataset.pipeline.3.crop_size': CROP,
        'train_cfg.max_iters': max_iters,
        # no warm-up (the full lr from the first step), then poly decay
        'param_scheduler.0.start_factor': 1.0,
        'param_scheduler.0.end': 1,
        'param_scheduler.1.begin': 1,
        'param_scheduler.1.end': max_iters,
        'train_cfg.val_interval': val_interval,
        'default_hooks.checkpoint.interval': val_interval,
        'default_hooks.logger.interval': 1,
        'env_cfg.cudnn_benchmark': False,
        'randomness.seed': 0,
    }
    options.update({f'model.backbone.{k}': v for k, v in TINY_SWIN.items()})
    for loader in ('train', 'val', 'test'):
        options[f'{loader}_dataloader.num_workers'] = 0
        options[f'{loader}_dataloader.persistent_workers'] = False
        options[f'{loader}_dataloader.dataset.data_root'] = data_root
    for loader in ('val', 'test'):
        options[f'{loader}_dataloader.dataset.pipeline.1.scale'] = IMG_SCALE
    return options


def to_cli(options: dict) -> list:
    """``options`` as the ``key=value`` words of ``--cfg-options``."""
    def word(value):
        if isinstance(value, tuple):
            return '(' + ','.join(word(v) for v in value) + ',)'
        if isinstance(value, list):
            return '[' + ','.join(word(v) for v in value) + ']'
        return str(value)
    return [f'{key}={word(value)}' for key, value in options.items()]


def tiny_config(name: str, work_dir: str, options: dict,
                log_level: str = 'WARNING') -> Config:
    """``configs/<name>.py`` merged with ``options``, writing to
    ``work_dir`` under a unique experiment name."""
    cfg = Config.fromfile(config_path(name))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex}'
    cfg.log_level = log_level
    return cfg


def train(name: str, work_dir: str, options: dict) -> Runner:
    """Build a Runner from the tiny config, train it, return it."""
    runner = Runner.from_cfg(tiny_config(name, work_dir, options))
    runner.train()
    return runner
