"""FSDP2Strategy(offload=True): torch's CPUOffloadPolicy on every unit.
On 2 gloo CPU processes (the only backend tested here) the run trains the
tiny ViT config like the run without offload, writes sharded checkpoints
and resumes from them; a process group whose backend cannot reduce CPU
tensors is refused; the policy reaches fully_shard."""
import pytest
import torch
import torch.distributed as dist

from mmspd.engine.sharded_checkpoint import consolidate_sharded_checkpoint
from mmspd.engine.strategies import FSDP2Strategy
from mmspd.engine.strategies.fsdp2_strategy import process_group_backend
from tests.distributed import free_port
from tests.dataset_files import write_custom_classification_set
from tests.test_engine.strategies.test_fsdp2_strategy import (
    MAX_ITERS, _initial_weights, _max_diff, _optimizer_diff, _start, _wait)

OFFLOAD = ('strategy.offload=True', )


@pytest.fixture(scope='module')
def offload_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('offload')
    data_root = write_custom_classification_set(str(root / 'data'))
    init = str(root / 'init.pth')
    _initial_weights(init)
    _wait(_start('fsdp2', 2, root / 'plain', data_root, init),
          _start('fsdp2', 2, root / 'offload', data_root, init, None,
                 *OFFLOAD))
    _wait(_start('fsdp2', 2, root / 'resumed', data_root, init,
                 str(root / 'offload' / 'iter_3.pth'), *OFFLOAD))
    return root


def _final(root, run):
    return consolidate_sharded_checkpoint(
        str(root / run / f'iter_{MAX_ITERS}.pth'))


@pytest.mark.slow
def test_offloaded_run_equals_the_run_without_offload(offload_runs):
    plain, offload = (_final(offload_runs, r) for r in ('plain', 'offload'))
    init = torch.load(offload_runs / 'init.pth', map_location='cpu')
    update = _max_diff(plain['state_dict'], init['state_dict'])
    diff = _max_diff(plain['state_dict'], offload['state_dict'])
    print(f'offload vs no offload: weights {diff:.3e} (update '
          f'{update:.3e})')
    assert update > 1e-3  # it trained
    assert diff <= 1e-5 * update
    assert _optimizer_diff(plain['optimizer'], offload['optimizer']) <= 1e-5
    assert all('anchor' in s for s in offload['optimizer']['state'].values())
    with open(f'{offload_runs / "offload"}.log') as f:
        assert ', CPU offload' in f.read()


@pytest.mark.slow
def test_offloaded_run_resumes_from_its_checkpoint(offload_runs):
    uninterrupted, resumed = (_final(offload_runs, r)
                              for r in ('offload', 'resumed'))
    assert _max_diff(uninterrupted['state_dict'], resumed['state_dict']) \
        == 0.0
    assert _optimizer_diff(uninterrupted['optimizer'],
                           resumed['optimizer']) == 0.0


def test_offload_must_be_a_bool():
    with pytest.raises(TypeError, match="offload must be a bool, got 'yes'"):
        FSDP2Strategy(offload='yes')


@pytest.mark.parametrize('backend, offload, expected', [
    ('nccl', True, 'cuda:nccl,cpu:gloo'),
    ('nccl', False, 'nccl'),
    ('gloo', True, 'gloo'),
    ('cuda:nccl,cpu:gloo', True, 'cuda:nccl,cpu:gloo'),
])
def test_offload_starts_gpu_processes_with_a_cpu_backend(backend, offload,
                                                         expected):
    assert process_group_backend(backend, offload) == expected


def test_offload_on_a_group_without_a_cpu_backend_is_refused(monkeypatch):
    """A group made beforehand for the GPU only ('cuda:gloo' stands in
    for NCCL here: one process, no GPU needed)."""
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    dist.init_process_group('cuda:gloo', rank=0, world_size=1)
    try:
        strategy = FSDP2Strategy(offload=True,
                                 env_kwargs=dict(launcher='pytorch'))
        with pytest.raises(ValueError, match="backend 'cuda:gloo' does not "
                           'serve CPU tensors'):
            strategy._offload_policy()
    finally:
        dist.destroy_process_group()
