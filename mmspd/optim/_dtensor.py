"""Sharded parameters: what the optimizers need to stay exact on them.

SPD decides per whole tensor from three sums over all of its elements
(``g . (p - a)``, ``|p - a|^2``, ``|q - a|^2``). On a parameter sharded as a
``DTensor`` (FSDP2's ``fully_shard``, tensor parallelism) the kernels run on
each process's local shard, so these sums are partial; :class:`ShardedSums`
adds them up over the shards with **one** all-reduce per step and device
mesh (the partial sums of every group's tensors stacked in one float64
buffer of the same layout on every process), never a gather of a
parameter. Everything else AdamSPD and AdamL2SP
compute is element-wise and needs no communication. The all-reduce runs
where the sums are when the group's backend serves that device, else on the
mesh's device (:func:`reduction_device`: CPU-offloaded shards on an NCCL-only
group).

Sharding schemes that hide tensor boundaries are refused
(:func:`flat_sharding_refusal`): FSDP1's flat parameters (with either
``use_orig_params``) and DeepSpeed ZeRO-3 partitions hold slices of several
tensors, or a slice of one, with no way to recover a whole tensor's sums.
"""
from collections import OrderedDict
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch without DTensor: nothing can be sharded
    DTensor = None

#: What to use instead of a refused sharding scheme (one sentence).
SHARDING_ADVICE = (
    "shard with FSDP2 instead: torch.distributed.fsdp.fully_shard in plain "
    "PyTorch, or strategy=dict(type='FSDP2Strategy') with mmengine's "
    'FlexibleRunner (mmspd registers it)')


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor``."""
    return DTensor is not None and isinstance(t, DTensor)


def local_tensor(t: Tensor) -> Tensor:
    """The process's local shard of a DTensor (sharing its storage, so
    in-place updates reach the DTensor), or ``t`` itself.

    Reads the DTensor's ``_local_tensor`` (what FSDP2 itself steps) where it
    exists: ``to_local()`` goes through an autograd function, several
    microseconds a call, and a step makes five calls per parameter.
    """
    if not is_dtensor(t):
        return t
    local = getattr(t, '_local_tensor', None)
    return t.to_local() if local is None else local


def flat_sharding_refusal(p: Tensor) -> Optional[str]:
    """Why ``p`` cannot be stepped exactly (``None`` when it can).

    Detects FSDP1's ``FlatParameter`` and the original parameters FSDP1
    flattened (``use_orig_params=True``: views of a flat shard), both marked
    ``_fsdp_flattened`` by torch, and DeepSpeed ZeRO-3 partitioned
    parameters (``ds_id``).
    """
    if type(p).__name__ == 'FlatParameter':
        return ('it is an FSDP1 FlatParameter (FullyShardedDataParallel with '
                'use_orig_params=False, as in mmengine\'s FSDPStrategy), a '
                'concatenation of slices of several tensors')
    if getattr(p, '_fsdp_flattened', False):
        return ('it was flattened by FSDP1 (FullyShardedDataParallel, as in '
                "mmengine's FSDPStrategy): each process holds a flat slice, "
                'so per-tensor sums would cover only that slice')
    if hasattr(p, 'ds_id'):
        return ('it is partitioned by DeepSpeed ZeRO-3: each process holds a '
                'flat slice, so per-tensor sums would cover only that slice')
    return None


def check_dtensor_step(p: Tensor, index: int, state: Dict, name: str) -> None:
    """Raise if sharded parameter ``p`` (or its gradient or state) cannot be
    stepped shard by shard; a plain tensor with plain state passes.

    The gradient must be a DTensor with the parameter's mesh and placements
    (FSDP2's are); the parameter must not be ``Partial``; optimizer state
    made for a full tensor (a full state dict loaded with
    ``load_state_dict``) cannot be used on a shard.
    """
    sharded = is_dtensor(p)
    for key in ('exp_avg', 'anchor'):
        value = state.get(key)
        if value is not None and is_dtensor(value) != sharded:
            have = 'sharded (DTensor)' if is_dtensor(value) else 'a full tensor'
            want = 'sharded' if sharded else 'a plain tensor'
            raise RuntimeError(
                f'{name}: the optimizer state {key!r} of parameter {index} '
                f'is {have} but the parameter is {want}; load optimizer '
                f'state of sharded models with torch.distributed.checkpoint.'
                f'state_dict.set_optimizer_state_dict (it reshards full and '
                f'sharded state dicts), not Optimizer.load_state_dict')
    if not sharded:
        return
    if any(placement.is_partial() for placement in p.placements):
        raise RuntimeError(
            f'{name}: parameter {index} is a DTensor with placements '
            f'{p.placements}: a Partial parameter has no well-defined value '
            f'to project; expected Shard or Replicate placements')
    grad = p.grad
    if not is_dtensor(grad) or grad.device_mesh != p.device_mesh or \
            tuple(grad.placements) != tuple(p.placements):
        got = (f'placements {tuple(grad.placements)}' if is_dtensor(grad)
               else 'a plain tensor')
        raise RuntimeError(
            f'{name}: the gradient of sharded parameter {index} is {got}, '
            f'expected a DTensor on the same mesh with the parameter\'s '
            f'placements {tuple(p.placements)} (as FSDP2 produces); '
            f'redistribute it first')


def _mesh_group(mesh) -> Optional['dist.ProcessGroup']:
    """A process group spanning every rank of ``mesh``."""
    if mesh.ndim == 1:
        return mesh.get_group()
    if mesh.size() == dist.get_world_size():
        return None  # the default group spans the mesh
    if hasattr(mesh, '_flatten'):
        return mesh._flatten().get_group()
    raise NotImplementedError(
        f'AdamSPD: reducing over a {mesh.ndim}-d device mesh that does not '
        f'span all {dist.get_world_size()} processes needs '
        f'DeviceMesh._flatten, which this torch lacks')


def _reduction(mesh, sharded_dims: Tuple[int, ...]
               ) -> Tuple[Optional['dist.ProcessGroup'], bool]:
    """``(group, over_shards_only)``: the process group that adds up a
    tensor's partial sums, and whether it spans exactly the mesh dimensions
    the tensor is sharded along (replicas along the others hold the same
    sums, so they need no communication: HSDP's replicas, often on other
    nodes, are left out). Otherwise the group is the whole mesh, and only
    the processes at coordinate 0 of the replicated dimensions contribute.
    """
    if len(sharded_dims) == mesh.ndim:
        return _mesh_group(mesh), True
    if len(sharded_dims) == 1:
        return mesh.get_group(mesh_dim=sharded_dims[0]), True
    names = mesh.mesh_dim_names
    if names and hasattr(mesh, '_flatten'):
        sub = mesh[tuple(names[d] for d in sharded_dims)]
        return sub._flatten().get_group(), True
    return _mesh_group(mesh), False


def backend_device_types(backend: str) -> Optional[FrozenSet[str]]:
    """The device types a process group backend string serves, from
    torch's own table (``torch.distributed.Backend.backend_capability``):
    ``'nccl'`` -> ``{'cuda'}``, ``'gloo'`` -> ``{'cpu', 'cuda'}``, a
    per-device string such as ``'cuda:nccl,cpu:gloo'`` -> the devices it
    names. ``None`` for a backend torch does not list (a plug-in)."""
    backend = str(backend).lower()
    if ':' in backend:
        return frozenset(part.split(':', 1)[0].strip()
                         for part in backend.split(',') if part.strip())
    capability = getattr(dist.Backend, 'backend_capability', {})
    served = capability.get(backend)
    return None if served is None else frozenset(served)


def reduction_device(backend: str, sums_device: torch.device,
                     mesh_device_type: str) -> torch.device:
    """Where the all-reduce of sums computed on ``sums_device`` runs, for
    a process group of ``backend`` over a mesh of ``mesh_device_type``.

    The sums' own device when the backend serves it. Otherwise (the step
    runs on CPU shards, FSDP2's ``CPUOffloadPolicy``, while the group is
    NCCL only) the mesh's device: the ``[n, 3]`` float64 buffer is copied
    there, reduced, and copied back (a few kB each way per step). A backend
    torch does not list is taken to serve the mesh's device. Raises
    ``RuntimeError`` when neither device is served.
    """
    served = backend_device_types(backend)
    if served is None:  # a plug-in backend: it serves its mesh's device
        served = frozenset([mesh_device_type])
    if sums_device.type in served:
        return sums_device
    if mesh_device_type in served:
        return torch.device(mesh_device_type)
    raise RuntimeError(
        f'AdamSPD: the per-tensor sums are on {sums_device.type} and the '
        f'device mesh on {mesh_device_type}, but the process group\'s '
        f'backend {backend!r} serves {sorted(served)} only; initialise the '
        f'process group with a backend for both (e.g. '
        f'\'{mesh_device_type}:nccl,cpu:gloo\')')


class ShardedSums:
    """How one parameter group's per-tensor partial sums are added up over
    the shards.

    Built from **all** parameters of the group (DTensors or plain tensors,
    in the group's order) and the positions, in that list, of the ones
    stepped now (those with a gradient on this process). The all-reduce
    has one row per sharded DTensor parameter of the group, whether or not
    it has a gradient here (a row of zeros where it has none), and is
    float64 whatever kernel made the sums: its layout is the same on every
    process by construction, even when a module was used on some processes
    only or a process runs another kernel.

    - A tensor's sums are added up over the mesh dimensions it is sharded
      along only: the processes of one shard group. Replicas along the
      other dimensions (HSDP's replicate dimension) hold the same sums and
      are not reduced over (no cross-replica collective). Where such a
      group cannot be formed (a mesh without dimension names), the group is
      the whole mesh and the sums come from the processes at coordinate 0
      of every replicated dimension (0 from the others), so each element
      still counts once;
    - fully replicated DTensors and plain tensors already hold whole-tensor
      sums and are left out of the reduction.

    :func:`reduce_sharded_sums` reduces several groups' sums with one
    all-reduce per device mesh; :meth:`reduce` is that for one group.
    Nothing is read on the host: on accelerators the all-reduce is queued
    on the device like any kernel, and the index tensors are made once.
    """

    def __init__(self, params: Sequence[Tensor],
                 stepped: Optional[Sequence[int]] = None) -> None:
        stepped = list(range(len(params))) if stepped is None else \
            list(stepped)
        #: (mesh, sharded dims) -> (positions in the group, 0/1 weight of
        #: this process); one all-reduce per key
        self._meshes: 'OrderedDict[object, Tuple[List[int], List[float]]]' \
            = OrderedDict()
        self._groups: Dict[object, Optional['dist.ProcessGroup']] = {}
        self.device: Optional[torch.device] = None
        for position, p in enumerate(params):
            if not is_dtensor(p):
                continue
            sharded_dims = [d for d, placement in enumerate(p.placements)
                            if placement.is_shard()]
            if not sharded_dims:
                continue
            mesh = p.device_mesh
            key = (mesh, tuple(sharded_dims))
            if key not in self._groups:
                self._groups[key] = _reduction(mesh, key[1])
            group, over_shards_only = self._groups[key]
            coordinate = mesh.get_coordinate()
            counts = over_shards_only or all(
                coordinate[d] == 0
                for d in range(mesh.ndim) if d not in sharded_dims)
            positions, weights = self._meshes.setdefault(key, ([], []))
            positions.append(position)
            weights.append(1.0 if counts else 0.0)
            if self.device is None:
                self.device = p.to_local().device
        self._groups = {key: group for key, (group, _) in
                        self._groups.items()}
        #: per reduction: the device its all-reduce runs on
        self._reduce_on = {
            key: reduction_device(dist.get_backend(group), self.device,
                                  key[0].device_type)
            for key, group in self._groups.items()}
        # per mesh: (rows of the local sums, their rows in the mesh's block)
        self._rows: Dict[object, Tuple[List[int], List[int]]] = {}
        for mesh, (positions, _) in self._meshes.items():
            block = {position: i for i, position in enumerate(positions)}
            pairs = [(row, block[position])
                     for row, position in enumerate(stepped)
                     if position in block]
            self._rows[mesh] = ([r for r, _ in pairs], [b for _, b in pairs])
        self._tensors: Dict[tuple, Tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def meshes(self) -> List[object]:
        """The reductions (a device mesh and the dimensions reduced over)
        this group's sums take part in, in order."""
        return list(self._meshes)

    def block_rows(self, mesh) -> int:
        """Rows this group adds to the all-reduce ``mesh`` (one of
        :attr:`meshes`): one per sharded parameter, with or without a
        gradient."""
        return len(self._meshes[mesh][0])

    def _indices(self, mesh, device: torch.device
                 ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(local rows, block rows, weights)`` on ``device``, cached."""
        key = (mesh, device)
        if key not in self._tensors:
            local, block = self._rows[mesh]
            weights = self._meshes[mesh][1]
            self._tensors[key] = (
                torch.tensor(local, dtype=torch.int64, device=device),
                torch.tensor(block, dtype=torch.int64, device=device),
                torch.tensor([weights[b] for b in block],
                             dtype=torch.float64, device=device)[:, None])
        return self._tensors[key]

    def reduce(self, sums: Tensor) -> Tensor:
        """Global ``[n, k]`` sums from this process's local ones (rows: the
        stepped parameters), with one all-reduce per mesh."""
        return reduce_sharded_sums([(self, sums)])[0]


def reduce_sharded_sums(items: Sequence[Tuple[ShardedSums, Tensor]]
                        ) -> List[Tensor]:
    """Reduce the local ``[n_i, k]`` sums of several groups (each with its
    :class:`ShardedSums`) with **one all-reduce per device mesh** (and set
    of sharded dimensions: one for FSDP and HSDP) over all of them, so a step with many parameter groups (e.g. layer-wise lr
    decay) still costs one latency-bound collective. Returns the global
    sums per item: float64 where something was reduced (new tensors), the
    item's own sums where its group has nothing sharded.

    The block of every group is in the order of ``items``; callers pass
    every group that has sharded parameters, stepped here or not, in the
    optimizer's group order, so every process builds the same layout.
    """
    results = [sums for _, sums in items]
    blocks: 'OrderedDict[object, List[int]]' = OrderedDict()
    for i, (plan, _) in enumerate(items):
        for mesh in plan.meshes:
            blocks.setdefault(mesh, []).append(i)
    if not blocks:
        return results
    columns = items[0][1].shape[1]
    for i, (plan, sums) in enumerate(items):
        if plan.meshes:
            results[i] = sums.to(torch.float64, copy=True)
    for mesh, members in blocks.items():
        device = next(items[i][0].device for i in members)
        total = sum(items[i][0].block_rows(mesh) for i in members)
        buffer = torch.zeros((total, columns), dtype=torch.float64,
                             device=device)
        offset = 0
        for i in members:
            plan, sums = items[i]
            local, block, weights = plan._indices(mesh, device)
            rows = plan.block_rows(mesh)
            if local.numel():
                buffer.narrow(0, offset, rows).index_copy_(
                    0, block, sums.index_select(0, local).double() * weights)
            offset += rows
        reduce_on = plan._reduce_on[mesh]
        if reduce_on == buffer.device:
            dist.all_reduce(buffer, group=plan._groups[mesh])
        else:  # CPU sums, accelerator-only backend (offload)
            moved = buffer.to(reduce_on)
            dist.all_reduce(moved, group=plan._groups[mesh])
            buffer.copy_(moved)
        offset = 0
        for i in members:
            plan, _ = items[i]
            local, block, _ = plan._indices(mesh, device)
            rows = plan.block_rows(mesh)
            if local.numel():
                reduced = buffer.narrow(0, offset, rows).index_select(
                    0, block)
                results[i].index_copy_(0, local, reduced)
            offset += rows
    return results
