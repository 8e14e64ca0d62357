"""An upstream mmdet config with AdamSPD by the two-line change: mmdet's
own Mask R-CNN Swin-T (AdamW, Microsoft's Swin file converted on load),
only ``optim_wrapper.constructor`` and ``optim_wrapper.optimizer.type``
changed. Its anchors are the backbone's pretrained weights as mmdet's
converter reads them from the file."""
import pytest
import torch
from mmdet.models.backbones.swin import swin_converter
from mmengine.config import Config
from mmengine.runner import Runner

import mmspd  # noqa: F401  (registers AdamSPD and the constructor)
from mmspd.optim import AdamSPD

from .coco_files import data_options, write_coco
from .swin_files import write_microsoft_swin_t

UPSTREAM = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
#: what a user adds to an mmdet config that trains with AdamW
TWO_LINES = """
optim_wrapper = dict(constructor='SPDOptimWrapperConstructor',
                     optimizer=dict(type='AdamSPD'))
"""
#: the training size here (the config's 1333x800 is the full-size test's)
SMALL = (320, 192)


@pytest.mark.slow
def test_two_line_change_anchors_at_the_converted_pretrained_weights(
        tmp_path):
    upstream = tmp_path / 'upstream.py'
    upstream.write_text(f'_base_ = {UPSTREAM!r}\n')
    # the user's config: the upstream one and the two-line change
    user = tmp_path / 'mask-rcnn_swin-t_spd.py'
    user.write_text(f'_base_ = {UPSTREAM!r}\n' + TWO_LINES)
    before = Config.fromfile(str(upstream))
    cfg = Config.fromfile(str(user))
    assert before.optim_wrapper.optimizer.type == 'AdamW'
    changed = before.optim_wrapper.to_dict()
    changed['constructor'] = 'SPDOptimWrapperConstructor'
    changed['optimizer']['type'] = 'AdamSPD'
    assert cfg.optim_wrapper.to_dict() == changed  # and nothing else
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys  # upstream's kept

    path = str(tmp_path / 'swin_tiny_patch4_window7_224.pth')
    write_microsoft_swin_t(path, cfg.model.backbone)
    expected = {k[len('backbone.'):]: v for k, v in swin_converter(
        torch.load(path, weights_only=True)['model']).items()}
    root = write_coco(str(tmp_path / 'coco'))
    options = data_options(root)
    options.update({
        'model.backbone.init_cfg.checkpoint': path,
        'train_dataloader.batch_size': 1,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 10,
        'work_dir': str(tmp_path / 'work')})
    cfg.merge_from_dict(options)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = SMALL
    runner = Runner.from_cfg(cfg)
    runner.train()  # 2 images, batch 1: 2 iterations

    optimizer = runner.optim_wrapper.optimizer
    assert isinstance(optimizer, AdamSPD)
    backbone = dict(runner.model.backbone.named_parameters())
    checked = 0
    for name, param in backbone.items():
        state = optimizer.state[param]
        assert int(state['step']) == 2, name
        if name.split('.')[0] in {f'norm{i}' for i in range(4)}:
            continue  # not in the classifier's file: anchored at init
        assert torch.equal(state['anchor'], expected[name]), name
        checked += 1
    assert checked == len(backbone) - 8
    # the reordered patch-merging weights: the converter's, not the file's
    raw = torch.load(path, weights_only=True)['model']
    assert not torch.equal(
        raw['layers.0.downsample.reduction.weight'],
        optimizer.state[backbone['stages.0.downsample.reduction.weight']][
            'anchor'])
