"""The full-size PASCAL-Context configs: what they promise users."""
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from .seg_files import write_pascal_context
from .seg_runs import config_path, tiny_config, tiny_options, write_pretrained

METHODS = ('spd', 'adamw', 'l2sp')
SETS = ('ctx', 'mt')
SWIN_T_URL = ('https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/'
              'swin/swin_tiny_patch4_window7_224_20220317-1cdeb081.pth')


def _load(data, method):
    return Config.fromfile(config_path(f'pascal_{data}_{method}'))


@pytest.mark.parametrize('data', SETS)
def test_the_three_methods_differ_only_in_the_optimizer(data):
    configs = [_load(data, m).to_dict() for m in METHODS]
    optimizers = [c.pop('optim_wrapper') for c in configs]
    assert configs[0] == configs[1] == configs[2]
    assert [o['optimizer']['type'] for o in optimizers] == [
        'AdamSPD', 'AdamW', 'AdamL2SP']


@pytest.mark.parametrize('data, num_classes, dataset', [
    ('ctx', 59, 'CheckedPascalContextDataset59'), ('mt', 21, 'PascalMTDataset')])
def test_swin_t_upernet_40k_at_batch_16_with_the_corruption_test(
        data, num_classes, dataset):
    cfg = _load(data, 'spd')
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.embed_dims, list(backbone.depths),
            list(backbone.num_heads), backbone.window_size) == (
                'SwinTransformer', 96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=SWIN_T_URL)
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.model.decode_head.num_classes == num_classes
    assert cfg.model.auxiliary_head.num_classes == num_classes
    assert tuple(cfg.model.data_preprocessor.size) == (480, 480)
    assert cfg.train_dataloader.dataset.type == dataset
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.param_scheduler[-1]['end'] == 40000
    checkpoint = cfg.default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule) == ('mIoU', 'greater')
    assert cfg.test_cfg.type == 'RobustTestLoop'
    assert [s['name'] for s in cfg.test_cfg.ood_sets] == [
        'fog', 'defocus_blur', 'gaussian_noise', 'brightness']
    for spec in cfg.test_cfg.ood_sets:
        assert spec['transforms'] == [dict(
            type='ImageCorruption', corruption=spec['name'], severity=3)]
    assert 'mmspd.segmentation' in cfg.custom_imports.imports


@pytest.fixture(scope='module')
def tiny_model_options(tmp_path_factory):
    root = tmp_path_factory.mktemp('groups')
    voc = write_pascal_context(str(root), {'train': ['a', 'b'],
                                           'val': ['c']})
    pretrained = str(root / 'swin.pth')
    write_pretrained(pretrained)
    return root, tiny_options(voc, pretrained)


def _groups(tmp_path, options, method):
    runner = Runner.from_cfg(tiny_config(f'pascal_ctx_{method}', tmp_path,
                                         options))
    model = runner.model
    names = {id(p): n for n, p in model.named_parameters()}
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    # wrapper.param_groups would add mmengine's base-lr pseudo group
    return {names[id(p)]: group for group in wrapper.optimizer.param_groups
            for p in group['params']}, model


@pytest.mark.parametrize('method, backbone_decay', [('spd', 1.0),
                                                    ('l2sp', 1e-2)])
def test_spd_and_l2sp_anchor_the_backbone_and_leave_the_new_heads_free(
        tiny_model_options, tmp_path, method, backbone_decay):
    _, options = tiny_model_options
    groups, model = _groups(tmp_path, options, method)
    assert len(groups) == len(list(model.parameters()))
    for name, group in groups.items():
        if name.startswith(('decode_head.', 'auxiliary_head.')):
            assert (group['weight_decay'], group['anchor']) == (0., 'zero')
        else:
            assert name.startswith('backbone.'), name
            # norms and position-bias tables too: their anchor is pretrained
            assert (group['weight_decay'], group['anchor']) == (
                backbone_decay, 'init'), name


def test_adamw_keeps_mmsegs_swin_recipe(tiny_model_options, tmp_path):
    _, options = tiny_model_options
    groups, _ = _groups(tmp_path, options, 'adamw')
    no_decay = ('norm', 'relative_position_bias_table', 'absolute_pos_embed')
    for name, group in groups.items():
        expected = 0. if any(k in name for k in no_decay) else 0.01
        assert group['weight_decay'] == pytest.approx(expected), name
    assert any(g['weight_decay'] == 0. for g in groups.values())
