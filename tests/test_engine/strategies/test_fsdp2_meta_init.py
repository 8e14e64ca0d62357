"""FSDP2Strategy(meta_init=True): ranks other than 0 build the model on
the meta device and receive rank 0's initialised values after sharding.
Through tools/dist_train.sh on 2 gloo processes, with a Pretrained
init_cfg, a random head and stochastic depth, the run equals the same run
without meta_init bit for bit (weights, moments, anchors) and passes
StrictLoadingHook's pretrained check; what cannot be exact is refused."""
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModule

from mmspd.engine.sharded_checkpoint import consolidate_sharded_checkpoint
from mmspd.engine.strategies import FSDP2Strategy
from mmspd.engine.strategies.fsdp2_strategy import _pretrained_urls
from tests.dataset_files import write_custom_classification_set
from tests.test_engine.strategies.test_fsdp2_strategy import (
    CONFIGS, MAX_ITERS, _max_diff, _optimizer_diff, _start, _wait)
from tests.tool_modules import REPO


def _write_backbone(path: str) -> dict:
    """A backbone checkpoint for tiny_vit_fsdp2_pretrained.py (values
    unlike the random initialisation)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(osp.join(REPO, CONFIGS, 'tiny_vit_ddp.py'))
    torch.manual_seed(1)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(cfg.model.backbone)
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point()
             else v for k, v in backbone.state_dict().items()}
    torch.save(dict(state_dict=state), path)
    return state


@pytest.fixture(scope='module')
def meta_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('meta_init')
    data_root = write_custom_classification_set(str(root / 'data'))
    backbone = str(root / 'backbone.pth')
    _write_backbone(backbone)
    pretrained = (f'model.backbone.init_cfg.checkpoint={backbone}', )
    _wait(_start('fsdp2_pretrained', 2, root / 'plain', data_root, 'None',
                 None, *pretrained),
          _start('fsdp2_pretrained', 2, root / 'meta', data_root, 'None',
                 None, 'strategy.meta_init=True', *pretrained))
    return root


@pytest.mark.slow
def test_meta_init_equals_the_ordinary_init(meta_runs):
    plain, meta = (consolidate_sharded_checkpoint(
        str(meta_runs / run / f'iter_{MAX_ITERS}.pth'))
        for run in ('plain', 'meta'))
    assert _max_diff(plain['state_dict'], meta['state_dict']) == 0.0
    assert _optimizer_diff(plain['optimizer'], meta['optimizer']) == 0.0
    assert all('anchor' in s for s in meta['optimizer']['state'].values())
    for run in ('plain', 'meta'):
        with open(f'{meta_runs / run}.log') as f:
            log = f.read()
        # the backbone holds the file's values (checked on every rank)
        assert "hold exactly their pretrained checkpoints' values" in log
        assert ('FSDP2 meta_init: ranks 1-1 built the model on the meta '
                'device' in log) == (run == 'meta')  # (rank 0's log)


@pytest.mark.slow
def test_meta_init_anchors_are_the_pretrained_backbone(meta_runs):
    """AdamSPD's anchors (captured at the first step) hold the file's
    tensors: rank 0 read the file, the other ranks got its values."""
    meta = consolidate_sharded_checkpoint(
        str(meta_runs / 'meta' / f'iter_{MAX_ITERS}.pth'))
    saved = torch.load(meta_runs / 'backbone.pth')['state_dict']
    anchors = [s['anchor'] for s in meta['optimizer']['state'].values()]
    for name, tensor in saved.items():
        assert any(a.shape == tensor.shape and torch.equal(a, tensor)
                   for a in anchors), name


def test_meta_init_with_rank_dependent_seeds_is_refused(tmp_path):
    strategy = FSDP2Strategy(
        meta_init=True, work_dir=str(tmp_path),
        env_kwargs=dict(launcher='none', randomness=dict(
            seed=0, diff_rank_seed=True)))
    with pytest.raises(ValueError, match='diff_rank_seed=True is refused'):
        strategy.build_model(dict(type='Linear'))


def test_pretrained_urls_are_found_for_the_refusal():
    class Net(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=[
                dict(type='Normal', layer='Linear'),
                dict(type='Pretrained', checkpoint='https://host/a.pth')])
            self.inner = BaseModule(init_cfg=dict(
                type='Pretrained', checkpoint='local/b.pth'))
    assert _pretrained_urls(Net()) == ['https://host/a.pth']


def test_meta_init_must_be_a_bool():
    with pytest.raises(TypeError, match='meta_init must be a bool'):
        FSDP2Strategy(meta_init=1)
