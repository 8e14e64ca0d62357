"""Configs pairing AdamSPD / AdamL2SP with a tensor-flattening strategy are
refused by mmspd's build_runner before anything is built."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmspd.engine.launch import build_runner
from mmspd.engine.sharding_refusal import refuse_flat_sharding
from tests.tool_modules import REPO

CONFIG = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_lenet_spd.py')


def _config(optimizer, strategy):
    cfg = Config.fromfile(CONFIG)
    cfg.optim_wrapper.optimizer.type = optimizer
    cfg.runner_type = 'FlexibleRunner'
    cfg.strategy = strategy
    return cfg


@pytest.mark.parametrize('optimizer', ['AdamSPD', 'AdamL2SP'])
@pytest.mark.parametrize('strategy', [
    dict(type='FSDPStrategy'),
    dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2)),
    dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=3)),
])
def test_flattening_strategies_are_refused(optimizer, strategy, tmp_path):
    cfg = _config(optimizer, strategy)
    cfg.work_dir = str(tmp_path)
    with pytest.raises(ValueError) as error:
        build_runner(cfg)
    message = str(error.value)
    assert strategy['type'] in message and optimizer in message
    assert "type='FSDP2Strategy'" in message
    assert not list(tmp_path.iterdir())  # refused before the Runner made it


@pytest.mark.parametrize('optimizer, strategy', [
    ('AdamW', dict(type='FSDPStrategy')),
    ('AdamSPD', dict(type='FSDP2Strategy')),
    ('AdamSPD', dict(type='DeepSpeedStrategy',
                     zero_optimization=dict(stage=0))),
    ('AdamSPD', dict(type='DDPStrategy')),
])
def test_exact_combinations_pass(optimizer, strategy):
    refuse_flat_sharding(_config(optimizer, strategy))  # no error


def test_optimizers_inside_a_wrapper_dict_are_checked():
    cfg = _config('AdamW', dict(type='FSDPStrategy'))
    cfg.optim_wrapper = dict(
        backbone=dict(type='OptimWrapper',
                      optimizer=dict(type='AdamW', lr=1e-3)),
        head=dict(type='OptimWrapper',
                  optimizer=dict(type='AdamSPD', lr=1e-3)))
    with pytest.raises(ValueError, match='AdamSPD'):
        refuse_flat_sharding(cfg)


# -------------------------------- DeepSpeed: the stage as DeepSpeed reads it
@pytest.mark.parametrize('strategy, stage', [
    (dict(type='DeepSpeedStrategy',
          config=dict(zero_optimization=dict(stage=2))), 2),
    (dict(type='DeepSpeedStrategy', config='ds.json'), 1),
    # the option overrides the file, as DeepSpeedStrategy merges them
    (dict(type='DeepSpeedStrategy', config='ds.json',
          zero_optimization=dict(stage=3)), 3),
])
def test_deepspeed_stage_is_read_from_the_merged_configuration(
        strategy, stage, tmp_path):
    (tmp_path / 'ds.json').write_text('{"zero_optimization": {"stage": 1}}')
    if strategy.get('config') == 'ds.json':
        strategy = dict(strategy, config=str(tmp_path / 'ds.json'))
    with pytest.raises(ValueError) as error:
        refuse_flat_sharding(_config('AdamSPD', strategy))
    assert f'ZeRO stage {stage}' in str(error.value)


def test_deepspeed_option_stage_0_overrides_a_partitioning_file(tmp_path):
    (tmp_path / 'ds.json').write_text('{"zero_optimization": {"stage": 2}}')
    refuse_flat_sharding(_config('AdamSPD', dict(
        type='DeepSpeedStrategy', config=str(tmp_path / 'ds.json'),
        zero_optimization=dict(stage=0))))  # no error


@pytest.mark.parametrize('config, expected', [
    ('missing.json', 'missing.json'),
    (dict(zero_optimization=dict(stage='two')), "stage='two'"),
])
def test_unreadable_deepspeed_configuration_is_a_clear_error(
        config, expected, tmp_path):
    if config == 'missing.json':
        config = str(tmp_path / config)
    with pytest.raises(ValueError, match=expected):
        refuse_flat_sharding(_config('AdamSPD', dict(
            type='DeepSpeedStrategy', config=config)))


@pytest.fixture
def deepspeed_importable(monkeypatch):
    """Let mmengine's DeepSpeedStrategy be built here. DeepSpeed is not
    installed, and the strategy only checks at construction that it is
    importable; the refusal must come before any DeepSpeed call, so a
    stand-in for the module is all the strategy sees of it."""
    import mmengine._strategy.deepspeed as deepspeed_strategy
    monkeypatch.setattr(deepspeed_strategy, 'deepspeed', object())


@pytest.mark.parametrize('optimizer', ['AdamSPD', 'AdamL2SP'])
def test_flexible_runner_from_cfg_refuses_zero_partitions(
        optimizer, deepspeed_importable, tiny_classification_data, tmp_path):
    """The refusal holds without mmspd's build_runner (FlexibleRunner
    straight from a config, as other projects' train.py and mim do)."""
    from mmengine.runner import FlexibleRunner
    cfg = _config(optimizer, dict(
        type='DeepSpeedStrategy', config=dict(zero_optimization=dict(
            stage=2)), train_micro_batch_size_per_gpu=4))
    cfg.work_dir = str(tmp_path / 'work')
    data_root = tiny_classification_data
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            cfg[loader].dataset.data_root = data_root
    runner = FlexibleRunner.from_cfg(cfg)
    with pytest.raises(ValueError) as error:
        runner.train()
    message = str(error.value)
    assert 'ZeRO stage 2' in message and optimizer in message
    assert not list((tmp_path / 'work').rglob('*.pth'))  # nothing trained
