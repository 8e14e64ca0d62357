"""FSDP2Strategy with HSDP's 2-D mesh (mesh=dict(replicate=2, shard=2)) on
4 CPU processes: equal to DDP on the same global batch, its gradient norm
logged as DDP's, and its sharded checkpoint resumed on a 1-D mesh of the
same 4 processes."""
import re

import pytest
import torch

from mmspd.engine.sharded_checkpoint import consolidate_sharded_checkpoint
from mmspd.engine.strategies import FSDP2Strategy
from tests.dataset_files import write_custom_classification_set
from tests.test_engine.strategies.test_fsdp2_strategy import (
    MAX_ITERS, _grad_norms, _initial_weights, _max_diff, _optimizer_diff,
    _start, _wait)

HSDP = ('strategy.mesh.replicate=2', 'strategy.mesh.shard=2')


@pytest.fixture(scope='module')
def hsdp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('hsdp')
    data_root = write_custom_classification_set(str(root / 'data'),
                                                per_class=12)
    init = str(root / 'init.pth')
    _initial_weights(init)
    _wait(_start('ddp', 4, root / 'ddp', data_root, init))
    _wait(_start('fsdp2', 4, root / 'hsdp', data_root, init, None, *HSDP))
    _wait(_start('fsdp2', 4, root / 'resumed', data_root, init,
                 str(root / 'hsdp' / 'iter_3.pth')))
    return root


@pytest.mark.slow
def test_hsdp_equals_ddp_on_the_same_global_batch(hsdp_runs):
    ddp = torch.load(hsdp_runs / 'ddp' / f'iter_{MAX_ITERS}.pth',
                     map_location='cpu')
    hsdp = consolidate_sharded_checkpoint(
        str(hsdp_runs / 'hsdp' / f'iter_{MAX_ITERS}.pth'))
    init = torch.load(hsdp_runs / 'init.pth', map_location='cpu')
    update = _max_diff(ddp['state_dict'], init['state_dict'])
    assert update > 1e-3  # it trained
    assert _max_diff(ddp['state_dict'], hsdp['state_dict']) <= 1e-5 * update
    assert _optimizer_diff(ddp['optimizer'], hsdp['optimizer']) <= 1e-5
    with open(f'{hsdp_runs / "hsdp"}.log') as f:
        assert 'mesh (2, 2)' in f.read()
    # the logged gradient norm is the global one, as DDP's
    ddp_norms = _grad_norms(f'{hsdp_runs / "ddp"}.log')
    assert len(ddp_norms) == MAX_ITERS
    # (the log prints 4 decimals: one unit of the last one apart at most)
    assert _grad_norms(f'{hsdp_runs / "hsdp"}.log') == pytest.approx(
        ddp_norms, rel=0, abs=1.01e-4)


@pytest.mark.slow
def test_hsdp_checkpoint_resumes_on_a_1d_mesh(hsdp_runs):
    uninterrupted = consolidate_sharded_checkpoint(
        str(hsdp_runs / 'hsdp' / f'iter_{MAX_ITERS}.pth'))
    resumed = consolidate_sharded_checkpoint(
        str(hsdp_runs / 'resumed' / f'iter_{MAX_ITERS}.pth'))
    init = torch.load(hsdp_runs / 'init.pth', map_location='cpu')
    update = _max_diff(uninterrupted['state_dict'], init['state_dict'])
    # the same processes, another mesh: the sums are added up in other
    # groups (rounding), nothing else differs
    assert _max_diff(uninterrupted['state_dict'],
                     resumed['state_dict']) <= 1e-5 * update
    assert _optimizer_diff(uninterrupted['optimizer'],
                           resumed['optimizer']) <= 1e-5
    assert resumed['meta']['iter'] == MAX_ITERS


@pytest.mark.parametrize('mesh, error', [
    (dict(replicate=2), 'expected dict'),
    (dict(replicate=0, shard=2), 'mesh.replicate=0'),
    (dict(replicate=2, shard='4'), "mesh.shard='4'"),
    ([2, 2], 'expected dict'),
])
def test_bad_mesh_is_a_clear_error(mesh, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        FSDP2Strategy(mesh=mesh)
