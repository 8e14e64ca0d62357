"""Anchors are the pretrained weights, all of them: a partial or mismatched
``init_cfg`` / ``load_from`` load stops tools/train.py and tools/test.py
before the first step with one error listing the differences, unless the
config opts out (strict_loading)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from mmspd.engine.strict_loading import (LoadMismatchError,
                                         add_strict_loading_hook,
                                         build_pretrained_model,
                                         check_checkpoint_loaded,
                                         check_pretrained_loaded,
                                         strict_loading_settings)
from tests.test_classification.clip_runs import (load_tool, tiny_config,
                                                 write_tiny_clip_weights)
from tests.test_classification.data_files import write_domainnet

#: The toy ViT's block and pre_norm: 14 of its 19 backbone tensors.
BLOCK_AND_PRE_NORM = ('backbone.layers.0.', 'backbone.pre_norm.')


@pytest.fixture(scope='module')
def clip_weights(tmp_path_factory):
    return write_tiny_clip_weights(tmp_path_factory.mktemp('clip'))


@pytest.fixture(scope='module')
def domainnet(tmp_path_factory):
    data = str(tmp_path_factory.mktemp('data') / 'domainnet')
    write_domainnet(data, per_class=1)
    return data


def _config_file(tmp_path, weights, data, **options):
    """configs/domainnet_spd.py shrunk (tests/test_classification/
    clip_runs.py), 2 epochs of 1 iteration, written to a file for the
    tools."""
    options.update({f'{s}_dataloader.dataset.data_root': data
                    for s in ('train', 'val', 'test')})
    cfg = tiny_config('domainnet_spd', tmp_path / 'work', weights, options)
    path = str(tmp_path / 'domainnet_spd_tiny.py')
    cfg.dump(path)
    return path


def _partial_weights(weights, folder, drop=BLOCK_AND_PRE_NORM, extra=None):
    state = torch.load(weights, map_location='cpu',
                       weights_only=True)['state_dict']
    kept = {k: v for k, v in state.items() if not k.startswith(drop)}
    kept.update(extra or {})
    path = osp.join(str(folder), 'partial.pth')
    torch.save({'state_dict': kept}, path)
    return path, sorted(set(state) - set(kept))


def test_a_partial_clip_file_stops_training_naming_the_tensors(
        tmp_path, clip_weights, domainnet):
    partial, dropped = _partial_weights(clip_weights, tmp_path)
    assert len(dropped) == 14
    config = _config_file(tmp_path, partial, domainnet)
    with pytest.raises(LoadMismatchError) as error:
        load_tool('train.py').main([config])
    message = str(error.value)
    assert '14 missing from the checkpoint' in message
    assert all(key in message for key in dropped)
    assert 'strict_loading.pretrained_missing_ok' in message
    # stopped before the first step: no checkpoint written
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))


@pytest.mark.parametrize('opt_out', [
    {'strict_loading.pretrained': False},
    {'strict_loading.pretrained_missing_ok': ['backbone.layers.0.*',
                                              'backbone.pre_norm.*']},
])
def test_an_intentional_partial_load_is_an_explicit_opt_out(
        tmp_path, clip_weights, domainnet, opt_out):
    partial, _ = _partial_weights(clip_weights, tmp_path)
    config = _config_file(tmp_path, partial, domainnet, **opt_out)
    load_tool('train.py').main([config])
    assert glob.glob(str(tmp_path / 'work' / 'epoch_2.pth'))


def test_the_full_clip_file_trains(tmp_path, clip_weights, domainnet):
    config = _config_file(tmp_path, clip_weights, domainnet)
    load_tool('train.py').main([config])
    [checkpoint] = glob.glob(str(tmp_path / 'work' / 'epoch_2.pth'))
    # ... and its checkpoint tests; one missing tensor stops the test tool
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    load_tool('test.py').main([config, checkpoint, '--work-dir',
                               str(tmp_path / 'test_ok')])
    head = [k for k in state['state_dict'] if k.startswith('head.')][0]
    del state['state_dict'][head]
    broken = str(tmp_path / 'broken.pth')
    torch.save(state, broken)
    with pytest.raises(LoadMismatchError,
                       match=rf"Checkpoint '.*broken.pth' .* 1 missing "
                       rf"from the checkpoint: {head}"):
        load_tool('test.py').main([config, broken, '--work-dir',
                                   str(tmp_path / 'test_broken')])
    load_tool('test.py').main([
        config, broken, '--work-dir', str(tmp_path / 'test_opt_out'),
        '--cfg-options', f'strict_loading.load_from_missing_ok=[{head}]'])
    # load_from in training: an unused tensor is an error too
    state['state_dict'][head] = torch.zeros(1)
    state['state_dict']['head.extra.weight'] = torch.zeros(2)
    torch.save(state, broken)
    with pytest.raises(LoadMismatchError) as error:
        load_tool('train.py').main([
            config, '--work-dir', str(tmp_path / 'load_from'),
            '--cfg-options', f'load_from={broken}'])
    assert '1 in the checkpoint but not in the model: head.extra.weight' \
        in str(error.value)
    assert f'1 of another shape: {head}' in str(error.value)


def _tiny_model(weights, tmp_path, domainnet):
    from mmengine.config import Config
    cfg = Config.fromfile(_config_file(tmp_path, weights, domainnet))
    return cfg, build_pretrained_model(cfg)


def test_a_tensor_changed_after_loading_is_named(tmp_path, clip_weights,
                                                 domainnet):
    cfg, model = _tiny_model(clip_weights, tmp_path, domainnet)
    assert check_pretrained_loaded(model) == 19
    with torch.no_grad():
        model.backbone.pos_embed.add_(1e-3)  # e.g. re-initialised
    with pytest.raises(LoadMismatchError,
                       match=r"1 not holding the checkpoint's values .*: "
                       r"backbone\.pos_embed\."):
        check_pretrained_loaded(model)


def test_shape_mismatch_and_unexpected_tensors_are_listed(
        tmp_path, clip_weights, domainnet):
    state = torch.load(clip_weights, map_location='cpu',
                       weights_only=True)['state_dict']
    state['backbone.ln1.weight'] = torch.ones(8)
    state['backbone.layers.7.ln1.weight'] = torch.ones(16)
    path = str(tmp_path / 'odd.pth')
    torch.save({'state_dict': state}, path)
    cfg, _ = _tiny_model(clip_weights, tmp_path, domainnet)
    cfg.model.backbone.init_cfg.checkpoint = path
    with pytest.raises(LoadMismatchError) as error:
        build_pretrained_model(cfg)
    message = str(error.value)
    assert "of module 'backbone'" in message
    assert '1 of another shape: backbone.ln1.weight (model (16,) vs file ' \
        '(8,))' in message
    assert '1 in the checkpoint but not in the model: ' \
        'backbone.layers.7.ln1.weight' in message


def test_settings_are_validated_and_the_hook_added_once():
    from mmengine.config import Config
    cfg = Config(dict(strict_loading=dict(pretrained=False)))
    assert strict_loading_settings(cfg)['pretrained'] is False
    assert strict_loading_settings(cfg)['load_from'] is True
    add_strict_loading_hook(cfg)
    add_strict_loading_hook(cfg)
    assert cfg.custom_hooks == [dict(type='StrictLoadingHook')]
    with pytest.raises(ValueError, match=r"Unknown strict_loading settings "
                       r"\['strict'\]"):
        strict_loading_settings(Config(dict(strict_loading=dict(
            strict=True))))


def test_check_checkpoint_loaded_on_a_bare_module(tmp_path):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(type='LeNet5', num_classes=3))
    path = str(tmp_path / 'lenet.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    assert check_checkpoint_loaded(model, path) == len(model.state_dict())
    torch.save({'state_dict': {'module.' + k: v for k, v in
                               model.state_dict().items()}}, path)
    assert check_checkpoint_loaded(model, path) == len(model.state_dict())


# ------------------------------------------- sharded checkpoint directories
class _Net(torch.nn.Module):
    def __init__(self, extra: bool = False, width: int = 3):
        super().__init__()
        self.body = torch.nn.Linear(4, width)
        if extra:
            self.new = torch.nn.Linear(width, 2)


def _sharded_dir(tmp_path, model) -> str:
    from mmspd.engine.sharded_checkpoint import save_sharded_checkpoint
    path = str(tmp_path / 'iter_1.pth')
    save_sharded_checkpoint(path, model)  # one process: no process group
    return path


def test_a_sharded_directory_is_checked_like_a_file(tmp_path):
    from mmspd.engine.strict_loading import (LoadMismatchError,
                                             check_checkpoint_loaded)
    path = _sharded_dir(tmp_path, _Net())
    assert check_checkpoint_loaded(_Net(), path) == 2
    with pytest.raises(LoadMismatchError) as error:
        check_checkpoint_loaded(_Net(extra=True), path)
    assert 'missing from the checkpoint: new.weight, new.bias' in str(
        error.value)
    assert check_checkpoint_loaded(_Net(extra=True), path,
                                   missing_ok=['new.*']) == 4
    with pytest.raises(LoadMismatchError, match=r'body.weight \(model '
                       r'\(5, 4\) vs file \(3, 4\)\)'):
        check_checkpoint_loaded(_Net(width=5), path)
    bigger = _sharded_dir(tmp_path / 'big', _Net(extra=True))
    with pytest.raises(LoadMismatchError,
                       match='in the checkpoint but not in the model'):
        check_checkpoint_loaded(_Net(), bigger)
