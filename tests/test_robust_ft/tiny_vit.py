"""The real DomainNet LP-FT and LoRA configs with the toy CLIP ViT of
``tests/test_classification`` (1 layer of width 16 on 32x32 images), tiny
DomainNet data, and "CLIP" weights converted by the real tool.

Only sizes, paths, run length and the lr change; the model wrappers
(LoRAModel), freezing, optimizer, paramwise rules and test loop stay those
of the config.
"""
import os.path as osp
import uuid
from typing import Optional

from mmengine.config import Config

from tests.test_classification.clip_runs import (IMAGE_SIZE, TINY_ARCH,
                                                 shrink_transforms)
from tests.tool_modules import REPO


def vit_config(cfg: Config):
    """The ViT's config: ``model.backbone`` or, for LoRA, its module."""
    backbone = cfg.model.backbone
    return backbone.module if backbone.type == 'LoRAModel' else backbone


def tiny_vit_config(name: str, work_dir, clip_weights: str, data_root: str,
                    max_epochs: int = 2, lr: float = 1e-3,
                    options: Optional[dict] = None) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    vit = vit_config(cfg)
    vit.update(arch=TINY_ARCH, img_size=IMAGE_SIZE, patch_size=8)
    if vit.get('frozen_stages', 0) == 12:  # all of ViT-B: all of the toy
        vit.frozen_stages = TINY_ARCH['num_layers']
    vit.init_cfg.checkpoint = clip_weights
    cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    if not shrink_transforms(cfg._cfg_dict):
        raise AssertionError(f'{name}: no sized transform found')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].update(batch_size=4, num_workers=0,
                                          persistent_workers=False)
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    cfg.auto_scale_lr = dict(enable=False)
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.train_cfg.max_epochs = max_epochs
    for scheduler in cfg.param_scheduler:
        if scheduler['type'] == 'CosineAnnealingLR':
            scheduler.update(end=max_epochs, T_max=max_epochs - 1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.merge_from_dict(options or {}, allow_list_keys=True)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex}'
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    return cfg
