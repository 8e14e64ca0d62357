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
