"""AdamSPD / AdamL2SP on sharded (DTensor) parameters, 2 and 3 CPU processes
(gloo): every kernel equals the same optimizer on whole tensors, with one
all-reduce per parameter group and mesh; a model sharded by FSDP2's
``fully_shard`` equals one process on the same global batch; FSDP1's flat
parameters are refused. The processes run tests/test_optim/
sharded_step_worker.py under torchrun; see there for the cases."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from mmspd.optim import AdamL2SP, AdamSPD, adam_spd
from tests.distributed import free_port
from tests.tool_modules import REPO

WORKER = osp.join(REPO, 'tests', 'test_optim', 'sharded_step_worker.py')
#: required agreement: max |sharded - whole| / max |update| over 30 steps
TOLERANCE = 1e-6


@pytest.fixture(scope='module', params=[2, 3], ids=['2proc', '3proc'])
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp('sharded') / 'results.json'
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={request.param}',
           f'--master_port={free_port()}', WORKER, str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    with open(out) as f:
        return json.load(f)


def _worker_case(tmp_path_factory, nproc: int, case: str):
    """The worker's ``case`` alone on ``nproc`` processes."""
    out = tmp_path_factory.mktemp(case) / 'results.json'
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
           WORKER, str(out), case]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    with open(out) as f:
        return json.load(f)[case]


@pytest.fixture(scope='module')
def hsdp_results(tmp_path_factory):
    """The worker's HSDP case on 4 processes (a 2 x 2 mesh)."""
    return _worker_case(tmp_path_factory, 4, 'hsdp')


@pytest.mark.slow
def test_fully_shard_with_cpu_offload_equals_one_process(tmp_path_factory):
    """A plain fully_shard(..., offload_policy=CPUOffloadPolicy()) model
    (2 gloo processes) steps with AdamSPD like one process on the global
    batch, within the tolerance of the model without offload."""
    cases = _worker_case(tmp_path_factory, 2, 'offload')
    assert [c['kernel'] for c in cases] == ['default', 'foreach']
    for case in cases:
        assert case['max_rel_diff'] <= 2 * TOLERANCE, case
        assert case['steps_projected'] >= 3, case
        assert case['shards_on'] == ['cpu'], case


@pytest.mark.slow
def test_hsdp_reduces_over_the_shard_dimension_only(hsdp_results):
    case = hsdp_results
    assert case['max_rel_diff'] <= TOLERANCE, case
    assert case['steps_projected'] >= 5, case
    assert case['all_reduces_per_step'] == [1], case
    # groups of the 2 shards, never all 4 processes (no cross-replica call)
    assert case['group_sizes'] == [2], case


@pytest.mark.slow
def test_every_kernel_equals_whole_tensors(results):
    assert len(results['cases']) == 31
    for case in results['cases']:
        assert case['max_rel_diff'] <= TOLERANCE, case
        if case['optimizer'] == 'AdamSPD':
            # the projection fired, so the reduced sums were used
            assert case['steps_projected'] >= 5, case
        if case['anchor'] == 'init':
            assert case['anchors_are_dtensors'] is True, case


@pytest.mark.slow
def test_one_all_reduce_per_step_whatever_the_groups(results):
    for case in results['cases']:
        expected = 0 if case['optimizer'] == 'AdamL2SP' else 1
        assert case['all_reduces_per_step'] == [expected], case


@pytest.mark.slow
def test_a_gradient_on_some_processes_only_keeps_the_layout(results):
    case = results['rank0_only_branch']
    assert case['all_reduces_per_step'] == [1], case
    # the other tensors' sums were not mixed with the branch's
    assert case['max_rel_diff'] <= TOLERANCE, case
    # processes without the gradient left their shard alone
    assert case['branch_ok'] is True, case


@pytest.mark.slow
def test_processes_on_different_kernels_add_the_same_sums(results):
    case = results['mixed_kernels']
    # the kernels round Adam's update differently (float32 ulps); sums of
    # different layouts added together would be off by the projection
    assert case['max_rel_diff'] <= 10 * TOLERANCE, case
    assert case['steps_projected'] >= 5, case
    assert case['all_reduces_per_step'] == [1], case


@pytest.mark.slow
def test_reduced_sums_count_every_element_once(results):
    # includes a 2-d mesh whose first dimension replicates
    assert results['reduced_sums_error'] < 1e-12


@pytest.mark.slow
def test_fully_shard_equals_one_process_on_the_global_batch(results):
    assert len(results['fully_shard']) == 12
    # The gradients themselves differ here (averaged over split batches):
    # AdamL2SP, which reduces no sums, is already 4.2e-7 off on 3
    # processes; SPD's float64 sums against one process's float32 ones add
    # about as much again.
    for case in results['fully_shard']:
        assert case['max_rel_diff'] <= 2 * TOLERANCE, case
        if case['optimizer'] == 'AdamSPD':
            assert case['steps_projected'] >= 3, case


@pytest.mark.slow
def test_fsdp1_parameters_are_refused(results):
    assert len(results['fsdp1']) == 4
    for key, message in results['fsdp1'].items():
        assert message is not None, key
        assert 'FSDP1' in message and 'FSDP2Strategy' in message, message


# ------------------------------------- two shards in one process, no group
def halves_of(lists):
    """Functional-API lists with every tensor split in two halves along
    dim 0 (the two shards a 2-process Shard(0) gives), in pairs."""
    out = {}
    for key, values in lists.items():
        if values is None or key == 'steps':
            out[key] = (None if values is None else
                        [s for s in values for _ in range(2)])
            continue
        out[key] = [half.clone() for t in values
                    for half in torch.tensor_split(t, 2, dim=0)]
    return out


def pairwise_reduce(sums):
    """What the all-reduce of two shards gives: each pair of rows summed."""
    pairs = sums.reshape(-1, 2, sums.shape[1]).sum(dim=1, keepdim=True)
    return pairs.expand(-1, 2, -1).reshape(sums.shape)


@pytest.mark.parametrize('kernel', ['loop', 'foreach', 'fused'])
@pytest.mark.parametrize('anchored', [True, False])
def test_two_pass_step_on_halves_equals_whole_tensors(kernel, anchored):
    g = torch.Generator().manual_seed(0)
    shapes = [(12, 3), (9, ), (5, 2, 2), (1, )]  # (1,): an empty half
    params = [torch.randn(s, generator=g) for s in shapes]
    anchors = [p + 0.3 * torch.randn(p.shape, generator=g) for p in params]
    reference = anchors if anchored else [torch.zeros_like(p)
                                          for p in params]
    whole = dict(
        params=params,
        grads=[0.1 * (p - a) for p, a in zip(params, reference)],
        exp_avgs=[-(p - a) for p, a in zip(params, reference)],
        exp_avg_sqs=[torch.rand(s, generator=g) * 0.1 for s in shapes],
        max_exp_avg_sqs=None, anchors=anchors if anchored else None,
        steps=[3.0, 2.0, 5.0, 4.0])
    halves = halves_of(whole)
    kwargs = dict(amsgrad=False, beta1=0.9, beta2=0.999, lr=0.05, eps=1e-8,
                  weight_decay=1.0)
    ratios = []
    adam_spd(*halves.values(), kernel=kernel, reduce_sums=pairwise_reduce,
             ratios_out=ratios, **kwargs)
    adam_spd(*whole.values(), kernel='loop', **kwargs)
    for i, p in enumerate(whole['params']):
        joined = torch.cat(halves['params'][2 * i:2 * i + 2])
        torch.testing.assert_close(joined, p, rtol=0, atol=1e-6)
    assert int((torch.cat(ratios) > 0).sum()) >= 6  # projected


# ------------------------------------------------ one process, in this one
@pytest.fixture
def one_process_group():
    """A 1-process gloo group with a 1-D CPU device mesh."""
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(free_port())
    dist.init_process_group('gloo', rank=0, world_size=1)
    try:
        from torch.distributed.device_mesh import init_device_mesh
        yield init_device_mesh('cpu', (1, ))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP])
@pytest.mark.parametrize('kernel', [{}, dict(foreach=True), dict(fused=True),
                                    dict(fused=False), dict(foreach=False)])
def test_a_dtensor_on_one_process_steps_like_whole_tensors(
        one_process_group, cls, kernel):
    """Was a segmentation fault (the compiled kernel read the DTensor)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(4, 4, generator=g)
    grads = [torch.randn(4, 4, generator=g) + 1 for _ in range(5)]
    p = torch.nn.Parameter(distribute_tensor(start.clone(),
                                             one_process_group, [Shard(0)]))
    q = torch.nn.Parameter(start.clone())
    opts = [cls([x], lr=1e-2, weight_decay=1.0, **kernel) for x in (p, q)]
    for grad in grads:
        p.grad = distribute_tensor(grad, one_process_group, [Shard(0)])
        q.grad = grad.clone()
        for opt in opts:
            opt.step()
    assert isinstance(p, DTensor)
    torch.testing.assert_close(p.detach().full_tensor(), q.detach(),
                               rtol=0, atol=1e-6)
    assert isinstance(opts[0].state[p]['exp_avg'], DTensor)


def test_full_state_loaded_into_sharded_parameters_is_an_error(
        one_process_group):
    p = torch.nn.Parameter(distribute_tensor(torch.ones(4, 2),
                                             one_process_group, [Shard(0)]))
    q = torch.nn.Parameter(torch.ones(4, 2))
    whole = AdamSPD([q], lr=1e-2, weight_decay=1.0)
    q.grad = torch.ones(4, 2)
    whole.step()
    sharded = AdamSPD([p], lr=1e-2, weight_decay=1.0)
    sharded.load_state_dict(whole.state_dict())
    p.grad = distribute_tensor(torch.ones(4, 2), one_process_group,
                               [Shard(0)])
    before = p.detach().full_tensor().clone()
    with pytest.raises(RuntimeError, match='set_optimizer_state_dict'):
        sharded.step()
    torch.testing.assert_close(p.detach().full_tensor(), before)


def test_plain_gradient_of_a_sharded_parameter_is_an_error(
        one_process_group):
    p = torch.nn.Parameter(distribute_tensor(torch.ones(4, 2),
                                             one_process_group, [Shard(0)]))
    p.grad = torch.ones(4, 2)
    with pytest.raises(RuntimeError, match='gradient of sharded parameter 0'):
        AdamSPD([p], lr=1e-2, weight_decay=1.0).step()


# ------------------------------- where the sums are reduced (no group)
@pytest.mark.parametrize('backend, sums, mesh, expected', [
    ('gloo', 'cpu', 'cpu', 'cpu'),
    ('nccl', 'cuda:1', 'cuda', 'cuda:1'),
    # CPU-offloaded shards on an NCCL-only group: on the mesh's device
    ('nccl', 'cpu', 'cuda', 'cuda'),
    # a group with a CPU backend too (what FSDP2Strategy(offload=True) makes)
    ('cuda:nccl,cpu:gloo', 'cpu', 'cuda', 'cpu'),
    ('cpu:gloo,cuda:nccl', 'cuda:0', 'cuda', 'cuda:0'),
    ('gloo', 'cpu', 'cuda', 'cpu'),
    ('xccl', 'cpu', 'xpu', 'xpu'),
    # a backend torch does not list serves its mesh's device
    ('plugin', 'cpu', 'hpu', 'hpu'),
    ('plugin', 'hpu:0', 'hpu', 'hpu:0'),
])
def test_sums_are_reduced_on_a_device_the_backend_serves(backend, sums, mesh,
                                                          expected):
    from mmspd.optim._dtensor import reduction_device
    assert reduction_device(backend, torch.device(sums), mesh) == \
        torch.device(expected)


def test_a_backend_serving_neither_device_is_a_clear_error():
    from mmspd.optim._dtensor import backend_device_types, reduction_device
    assert backend_device_types('NCCL') == {'cuda'}
    assert backend_device_types('cuda:nccl, cpu:gloo') == {'cuda', 'cpu'}
    with pytest.raises(RuntimeError, match=r"backend 'cuda:nccl' serves "
                       r"\['cuda'\] only"):
        reduction_device('cuda:nccl', torch.device('cpu'), 'cpu')
