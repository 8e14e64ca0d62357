"""The real CLIP configs, shrunk to a toy ViT on tiny images.

``tiny_config`` loads ``configs/<name>.py`` and changes only sizes, paths,
the run length and the base lr: the ViT becomes 1 layer of width 16 on
32x32 images (patch 8), every resize/crop of every pipeline (OOD sets
included) works at 32 pixels, the lr is raised so that a toy model moves in
a few steps, and the "CLIP" weights are a file the tests write with OpenAI's
layout and convert with the real tool, so ``init_cfg`` really loads them.
Model type, augmentation, optimizer, paramwise rules, schedule shape,
auto_scale_lr, evaluation and test loop stay those of the config.
"""
import os.path as osp
import uuid
from typing import Optional

import torch
from mmengine.config import Config

from tests.test_classification.tiny_clip import TinyCLIP
from tests.tool_modules import REPO, load_tool

IMAGE_SIZE = 32
TINY_ARCH = dict(embed_dims=16, num_layers=1, num_heads=2,
                 feedforward_channels=32)
#: Transforms whose output size is set by the config, and the key.
SIZED_TRANSFORMS = {'RandomResizedCrop': 'scale', 'ResizeEdge': 'scale',
                    'CenterCrop': 'crop_size'}


def write_tiny_clip_weights(folder, seed: int = 0) -> str:
    """OpenAI-layout weights of the toy ViT, converted by the real tool;
    returns the converted file (what the config's init_cfg reads)."""
    torch.manual_seed(seed)
    model = TinyCLIP(img_size=IMAGE_SIZE, patch=8, width=16, layers=1,
                     heads=2, mlp_width=32).eval()
    archive = osp.join(str(folder), 'ViT-tiny.pt')
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 32, 32)),
                   archive)
    converted = osp.join(str(folder), 'clip-vit-tiny_mmpretrain.pth')
    load_tool('model_converters/openai_clip_to_mmpretrain.py').main(
        [archive, converted])
    return converted


def shrink_transforms(node) -> int:
    """Set every sized transform under ``node`` to ``IMAGE_SIZE``; return
    how many were changed."""
    changed = 0
    if isinstance(node, dict):
        key = SIZED_TRANSFORMS.get(node.get('type'))
        if key is not None:
            node[key] = IMAGE_SIZE
            changed += 1
        for value in node.values():
            changed += shrink_transforms(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += shrink_transforms(value)
    return changed


def tiny_config(name: str, work_dir, clip_weights: str,
                options: Optional[dict] = None, batch_size: int = 4,
                max_epochs: int = 2) -> Config:
    """``configs/<name>.py`` with the toy ViT; ``options`` are dotted keys
    as ``--cfg-options`` takes them (data roots)."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    cfg.model.backbone.update(arch=TINY_ARCH, img_size=IMAGE_SIZE,
                              patch_size=8)
    cfg.model.backbone.init_cfg.checkpoint = clip_weights
    cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    if not shrink_transforms(cfg._cfg_dict):
        raise AssertionError(f'{name}: no sized transform found')
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
    # the schedule keeps its shape (1 warm-up epoch, then cosine), shorter;
    # the lr is set so that auto_scale_lr's batch-4 lr (x 4 / base batch) is
    # large enough to move a toy model in a few steps
    base = cfg.auto_scale_lr.base_batch_size
    cfg.optim_wrapper.optimizer.lr = 1e-3 * base / batch_size
    cfg.train_cfg.max_epochs = max_epochs
    for scheduler in cfg.param_scheduler:
        if scheduler['type'] == 'CosineAnnealingLR':
            scheduler.update(end=max_epochs, T_max=max_epochs - 1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.merge_from_dict(options or {}, allow_list_keys=True)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex}'
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    return cfg
