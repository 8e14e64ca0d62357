"""Run under torchrun (gloo, CPU): AdamSPD / AdamL2SP on DTensor parameters
against the same optimizer on whole tensors, for test_sharded_step.py.

    python -m torch.distributed.run --nproc_per_node=N \\
        tests/test_optim/sharded_step_worker.py OUT_JSON

Every process builds the same tensors and gradient stream (seeded). Each
case steps (a) the optimizer over DTensors of those tensors, sharded over a
1-d mesh of all processes (uneven shards included: 33 rows over 2 or 3
processes, 2 rows over 3), and (b) the same optimizer over plain copies,
which is what one process would compute. Rank 0 writes, per case, the
largest difference of (a) from (b) relative to the size of the update, how
often SPD projected, and the all-reduces per step. Also: a model sharded by
``fully_shard`` (FSDP2) on the global batch split over the processes against
one unsharded model on the whole batch (also under CPUOffloadPolicy: the
``offload`` argument), and FSDP1 refusals.
"""
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from mmspd.optim import AdamL2SP, AdamSPD

#: (shape, placements) of the sharded parameters; uneven on purpose
LAYOUT = [((33, 4), 'shard0'), ((7, ), 'shard0'), ((5, 3, 2), 'shard1'),
          ((2, 3), 'shard0'), ((4, 4), 'replicate'), ((1, ), 'shard0')]
STEPS = 30
KERNELS = {'loop': dict(foreach=False), 'foreach': dict(fused=False),
           'fused': dict(fused=True), 'default': {},
           'capturable': dict(capturable=True),
           'bf16-anchors': dict(anchor_dtype='bfloat16')}


def placements(kind):
    return {'shard0': [Shard(0)], 'shard1': [Shard(1)],
            'replicate': [Replicate()]}[kind]


def initial_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for shape, _ in LAYOUT]


def gradient_stream(seed=1):
    """Gradients that keep pointing away from the anchor for a while, so
    that SPD's condition holds and projections fire."""
    g = torch.Generator().manual_seed(seed)
    drift = [torch.randn(shape, generator=g) for shape, _ in LAYOUT]
    return [[d + 0.5 * torch.randn(d.shape, generator=g) for d in drift]
            for _ in range(STEPS)]


class CountingAllReduce:
    """Counts dist.all_reduce calls while active (patched in place), and
    the sizes of the process groups they ran over."""

    def __init__(self):
        self.count, self._original = 0, dist.all_reduce
        self.group_sizes = set()

    def __enter__(self):
        def counting(*args, **kwargs):
            self.count += 1
            self.group_sizes.add(dist.get_world_size(kwargs.get('group')))
            return self._original(*args, **kwargs)
        dist.all_reduce = counting
        return self

    def __exit__(self, *exc):
        dist.all_reduce = self._original


def run_case(mesh, cls, kernel, anchor, amsgrad, groups):
    """One case; returns its record."""
    start = initial_tensors()
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    sharded = [
        torch.nn.Parameter(distribute_tensor(t.clone(), mesh, placements(k)))
        for t, (_, k) in zip(start, LAYOUT)
    ]

    def build(params):
        options = dict(lr=3e-2, weight_decay=1.0 if cls is AdamSPD else 0.3,
                       amsgrad=amsgrad, anchor=anchor, **KERNELS[kernel])
        if groups == 1:
            return cls(params, **options)
        return cls([dict(params=params[:3]), dict(params=params[3:])],
                   **options)

    opt_plain, opt_sharded = build(plain), build(sharded)
    fired, reduces = 0, []
    for grads in gradient_stream():
        for p, q, grad in zip(plain, sharded, grads):
            p.grad = grad.clone()
            q.grad = distribute_tensor(grad.clone(), mesh, q.placements)
        opt_plain.step()
        with CountingAllReduce() as counter:
            opt_sharded.step()
        reduces.append(counter.count)
        if cls is AdamSPD:
            stats = opt_sharded.projection_statistics()
            fired += int(stats['projected_fraction'] > 0)
    diffs = []
    for p, q, s in zip(plain, sharded, start):
        update = float((p.detach() - s).abs().max())
        diff = float((q.detach().full_tensor() - p.detach()).abs().max())
        diffs.append(diff / max(update, 1e-12))
    anchors_sharded = all(
        type(opt_sharded.state[q]['anchor']).__name__ == 'DTensor'
        for q in sharded) if anchor == 'init' else None
    return dict(optimizer=cls.__name__, kernel=kernel, anchor=anchor,
                amsgrad=amsgrad, groups=groups, max_rel_diff=max(diffs),
                steps_projected=fired, all_reduces_per_step=sorted(
                    set(reduces)), anchors_are_dtensors=anchors_sharded)


def rank0_only_branch_case(mesh):
    """A parameter whose gradient exists on rank 0 only (a branch the other
    processes' batches did not use), beside ordinary ones, in two groups.
    Returns the largest difference of the ordinary parameters from whole
    tensors (their sums must not be mixed with the branch's), whether the
    other ranks left their shard of the branch untouched, and the
    all-reduces per step."""
    branch, rank = 1, dist.get_rank()
    start = initial_tensors()
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    sharded = [
        torch.nn.Parameter(distribute_tensor(t.clone(), mesh, placements(k)))
        for t, (_, k) in zip(start, LAYOUT)
    ]

    def build(params):
        return AdamSPD([dict(params=params[:3]), dict(params=params[3:])],
                       lr=3e-2, weight_decay=1.0)

    opt_plain, opt_sharded = build(plain), build(sharded)
    branch_before = sharded[branch].to_local().clone()
    reduces = []
    for grads in gradient_stream():
        for i, (p, q, grad) in enumerate(zip(plain, sharded, grads)):
            p.grad = grad.clone()
            q.grad = distribute_tensor(grad.clone(), mesh, q.placements)
            if i == branch and rank != 0:
                q.grad = None
        opt_plain.step()
        with CountingAllReduce() as counter:
            opt_sharded.step()
        reduces.append(counter.count)
    diffs = []
    for i, (p, q, s) in enumerate(zip(plain, sharded, start)):
        if i == branch:
            continue
        update = float((p.detach() - s).abs().max())
        diff = float((q.detach().full_tensor() - p.detach()).abs().max())
        diffs.append(diff / max(update, 1e-12))
    local = sharded[branch].to_local()
    untouched = bool(torch.equal(local, branch_before)) if rank != 0 else \
        bool(torch.isfinite(local).all())
    flags = [None] * dist.get_world_size()
    dist.all_gather_object(flags, untouched)
    return dict(max_rel_diff=max(diffs), branch_ok=all(flags),
                all_reduces_per_step=sorted(set(reduces)))


def mixed_kernel_case(mesh):
    """Rank 0 steps with the compiled CPU kernel where it is built (its
    sums are float64), the other ranks with the foreach kernel (float32
    sums): the all-reduce must still add equal layouts."""
    kernel = 'default' if dist.get_rank() == 0 else 'foreach'
    return run_case(mesh, AdamSPD, kernel, 'init', False, groups=2)


def fully_sharded_case(mesh, cls, kernel, world, offload=False):
    """fully_shard(model) on the batch split over the ranks vs one model on
    the whole batch (with ``offload``: under CPUOffloadPolicy); returns the
    largest relative weight difference."""
    from torch.distributed.fsdp import (CPUOffloadPolicy, OffloadPolicy,
                                        fully_shard)
    policy = CPUOffloadPolicy(pin_memory=False) if offload else \
        OffloadPolicy()
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.GELU(),
                                    torch.nn.Linear(9, 3))
    model = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.GELU(),
                                torch.nn.Linear(9, 3))
    model.load_state_dict(reference.state_dict())
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh, offload_policy=policy)
    fully_shard(model, mesh=mesh, offload_policy=policy)
    strength = 1.0 if cls is AdamSPD else 0.3
    opt_ref = cls(reference.parameters(), lr=2e-2, weight_decay=strength,
                  **KERNELS[kernel])
    opt = cls(model.parameters(), lr=2e-2, weight_decay=strength,
              **KERNELS[kernel])
    g = torch.Generator().manual_seed(3)
    rank, fired = dist.get_rank(), 0
    for _ in range(STEPS):
        x = torch.randn(6 * world, 6, generator=g)
        y = torch.randn(6 * world, 3, generator=g) + 2.0
        for net, optimizer, inputs, targets in (
                (reference, opt_ref, x, y),
                (model, opt, x[6 * rank:6 * rank + 6],
                 y[6 * rank:6 * rank + 6])):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(inputs), targets).backward()
            optimizer.step()
        if cls is AdamSPD:
            fired += int(
                opt.projection_statistics()['projected_fraction'] > 0)
    worst = 0.0
    for (name, p), s in zip(reference.state_dict().items(), start.values()):
        q = model.state_dict()[name].full_tensor()
        update = float((p - s).abs().max())
        worst = max(worst, float((q - p).abs().max()) / max(update, 1e-12))
    return dict(optimizer=cls.__name__, kernel=kernel, max_rel_diff=worst,
                steps_projected=fired,
                shards_on=sorted({str(p.to_local().device)
                                  for p in model.parameters()}))


def fsdp1_refusals():
    """Message of the error AdamSPD raises for FSDP1 parameters, per
    ``use_orig_params`` (None: no error)."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    messages = {}
    for use_orig in (False, True):
        model = FullyShardedDataParallel(
            torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)),
            device_id=torch.device('cpu'), use_orig_params=use_orig)
        for cls in (AdamSPD, AdamL2SP):
            try:
                cls(model.parameters(), lr=1e-2, weight_decay=1.0)
                messages[f'{cls.__name__}/{use_orig}'] = None
            except ValueError as error:
                messages[f'{cls.__name__}/{use_orig}'] = str(error)
    return messages


def reduced_sums_error(world):
    """ShardedSums.reduce of local sums against the whole tensors' sums, on
    a 1-d mesh and on a 2-d (world x 1) mesh whose first dimension
    replicates; plain tensors pass through. Returns the largest error."""
    from mmspd.optim._dtensor import ShardedSums, local_tensor
    meshes = [(init_device_mesh('cpu', (world, )), []),
              (init_device_mesh('cpu', (world, 1)), [Replicate()])]
    worst = 0.0
    for mesh, outer in meshes:
        full = [t.double() for t in initial_tensors(seed=5)]
        params = [distribute_tensor(t, mesh, outer + placements(k))
                  for t, (_, k) in zip(full, LAYOUT)] + [full[0]]
        full = full + [full[0]]

        def sums(tensors):
            return torch.stack([torch.stack([t.sum(), t.square().sum()])
                                for t in tensors])

        got = ShardedSums(params).reduce(sums(map(local_tensor, params)))
        worst = max(worst, float((got - sums(full)).abs().max()))
    return worst


def hsdp_case():
    """4 processes as HSDP's 2-D mesh (2 replicas x 2 shards): parameters
    replicated along the first dimension and sharded along the second,
    against whole tensors; the sums must be reduced over the shard
    dimension only (groups of 2), once per step."""
    mesh = init_device_mesh('cpu', (2, 2),
                            mesh_dim_names=('replicate', 'shard'))
    start = initial_tensors()
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    sharded = [torch.nn.Parameter(distribute_tensor(
        t.clone(), mesh, [Replicate(), *placements(k)]))
        for t, (_, k) in zip(start, LAYOUT)]

    def build(params):
        return AdamSPD([dict(params=params[:3]), dict(params=params[3:])],
                       lr=3e-2, weight_decay=1.0)

    opt_plain, opt_sharded = build(plain), build(sharded)
    reduces, sizes, fired = [], set(), 0
    for grads in gradient_stream():
        for p, q, grad in zip(plain, sharded, grads):
            p.grad = grad.clone()
            q.grad = distribute_tensor(grad.clone(), mesh, q.placements)
        opt_plain.step()
        with CountingAllReduce() as counter:
            opt_sharded.step()
        reduces.append(counter.count)
        sizes |= counter.group_sizes
        fired += int(opt_sharded.projection_statistics()[
            'projected_fraction'] > 0)
    diffs = []
    for p, q, s in zip(plain, sharded, start):
        update = float((p.detach() - s).abs().max())
        diff = float((q.detach().full_tensor() - p.detach()).abs().max())
        diffs.append(diff / max(update, 1e-12))
    return dict(max_rel_diff=max(diffs), steps_projected=fired,
                all_reduces_per_step=sorted(set(reduces)),
                group_sizes=sorted(sizes))


def main(out_path, only=None):
    dist.init_process_group('gloo')
    if only in ('hsdp', 'offload'):
        if only == 'hsdp':
            result = dict(hsdp=hsdp_case())
        else:
            mesh = init_device_mesh('cpu', (dist.get_world_size(), ))
            result = dict(offload=[
                fully_sharded_case(mesh, AdamSPD, kernel,
                                   dist.get_world_size(), offload=True)
                for kernel in ('default', 'foreach')])
        if dist.get_rank() == 0:
            with open(out_path, 'w') as f:
                json.dump(result, f, indent=1)
        dist.barrier()
        dist.destroy_process_group()
        return
    world = dist.get_world_size()
    mesh = init_device_mesh('cpu', (world, ))
    cases = []
    for kernel in KERNELS:
        for anchor in ('init', 'zero'):
            for amsgrad in (False, True):
                cases.append(run_case(mesh, AdamSPD, kernel, anchor, amsgrad,
                                      groups=1))
        cases.append(run_case(mesh, AdamL2SP, kernel, 'init', False, 1))
    cases.append(run_case(mesh, AdamSPD, 'default', 'init', False, groups=2))
    result = dict(world=world, cases=cases,
                  fully_shard=[
                      fully_sharded_case(mesh, cls, kernel, world)
                      for cls in (AdamSPD, AdamL2SP) for kernel in KERNELS],
                  fsdp1=fsdp1_refusals(),
                  rank0_only_branch=rank0_only_branch_case(mesh),
                  mixed_kernels=mixed_kernel_case(mesh),
                  reduced_sums_error=reduced_sums_error(world))
    if dist.get_rank() == 0:
        with open(out_path, 'w') as f:
            json.dump(result, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
