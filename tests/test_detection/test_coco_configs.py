"""configs/coco_{adamw,l2sp,spd}.py build through the real Runner, load
the Swin-T file strictly, and give each parameter the intended options."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmspd.engine.strict_loading import build_pretrained_model
from tests.tool_modules import REPO

from .swin_files import write_coco_swin_t

NAMES = ('coco_adamw', 'coco_l2sp', 'coco_spd')
NEW_MODULES = ('neck.', 'rpn_head.', 'roi_head.')
#: what mmdet's recipe leaves undecayed (its custom keys)
NO_DECAY_KEYS = ('absolute_pos_embed', 'relative_position_bias_table',
                 'norm')


def config(name, tmp_path=None) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    if tmp_path is not None:
        cfg.work_dir = str(tmp_path / name)
    return cfg


def options_by_name(runner):
    """``{parameter name: (weight_decay, anchor, decoupled_decay, lr)}``
    from the built optimizer's groups."""
    groups = {}
    for group in runner.optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            groups[id(p)] = (group['weight_decay'], group.get('anchor'),
                             group.get('decoupled_decay'), group['lr'])
    return {name: groups[id(p)]
            for name, p in runner.model.named_parameters()}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The three configs' Runner-built models and optimizer options."""
    tmp = tmp_path_factory.mktemp('coco_configs')
    runs = {}
    for name in NAMES:
        runner = Runner.from_cfg(config(name, tmp))
        runner.optim_wrapper = runner.build_optim_wrapper(
            runner.optim_wrapper)
        runs[name] = (type(runner.optim_wrapper.optimizer).__name__,
                      options_by_name(runner))
    return runs


@pytest.mark.slow
def test_adamw_is_mmdets_recipe(built):
    optimizer, options = built['coco_adamw']
    assert optimizer == 'AdamW'
    undecayed = 0
    for name, (decay, _, _, lr) in options.items():
        assert lr == 1e-4, name
        expected = 0.0 if any(k in name for k in NO_DECAY_KEYS) else 0.05
        assert decay == expected, name
        undecayed += decay == 0.0
    assert undecayed > 0


@pytest.mark.slow
@pytest.mark.parametrize('name, optimizer, strength', [
    ('coco_spd', 'AdamSPD', 1.0), ('coco_l2sp', 'AdamL2SP', 1e-2)])
def test_backbone_is_anchored_and_new_modules_keep_adamws_decay(
        built, name, optimizer, strength):
    built_optimizer, options = built[name]
    assert built_optimizer == optimizer
    adamw = built['coco_adamw'][1]
    assert set(options) == set(adamw)
    counts = dict(backbone=0, new=0)
    for param, (decay, anchor, decoupled, lr) in options.items():
        assert lr == 1e-4, param
        if param.startswith('backbone.'):
            # every backbone tensor: SPD / L2-SP toward its pretrained
            # value, norms and position tables included; no decay to zero
            assert (decay, anchor, decoupled) == (strength, 'init', 0.0), \
                param
            counts['backbone'] += 1
        else:
            assert param.startswith(NEW_MODULES), param
            # no pull, no anchor, AdamW's decay: the one coco_adamw.py gives
            assert (decay, anchor) == (0.0, 'zero'), param
            assert decoupled == adamw[param][0] == 0.05, param
            counts['new'] += 1
    assert counts['backbone'] > 100 and counts['new'] > 10, counts


@pytest.mark.slow
def test_the_swin_t_file_loads_strictly_into_the_detector(tmp_path):
    cfg = config('coco_spd', tmp_path)
    path = str(tmp_path / 'swin_tiny_patch4_window7_224.pth')
    state = write_coco_swin_t(path, cfg.model.backbone)
    cfg.model.backbone.init_cfg.checkpoint = path
    model = build_pretrained_model(cfg)  # raises on any mismatch
    backbone = dict(model.backbone.named_parameters())
    for name, param in backbone.items():
        if name.startswith(tuple(f'norm{i}.' for i in range(4))):
            continue  # new output norms: not in the classifier's file
        assert torch.equal(param.detach(), state[f'backbone.{name}']), name


def test_the_test_sweep_is_the_benchmark_and_a_subset_is_one_option():
    from mmspd.corruption import CORRUPTION_SETS
    from mmspd.engine.runner.corruption_summary import expand_sweep
    sweep = config('coco_spd').test_cfg.corruption_sweep
    corruptions, severities, sets = expand_sweep(sweep)
    assert corruptions == CORRUPTION_SETS['benchmark']
    assert len(corruptions) == 15 and tuple(severities) == (1, 2, 3, 4, 5)
    assert len(sets) == 75 and sets[0]['name'] == 'gaussian_noise-1'
    assert sets[0]['transforms'] == [dict(
        type='ImageCorruption', corruption='gaussian_noise', severity=1)]
    assert sets[0]['insert_after'] == 'LoadImageFromFile'
    holdout = expand_sweep(dict(sweep, corruptions='holdout'))
    assert len(holdout[2]) == 20
