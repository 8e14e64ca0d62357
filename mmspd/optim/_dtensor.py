"""Sharded parameters: what the optimizers need to stay exact on them.

SPD decides per whole tensor from three sums over all of its elements
(``g . (p - a)``, ``|p - a|^2``, ``|q - a|^2``). On a parameter sharded as a
``DTensor`` (FSDP2's ``fully_shard``, tensor parallelism) the kernels run on
each process's local shard, so these sums are partial; :class:`ShardedSums`
adds them up over the shards with **one** all-reduce per parameter group and
device mesh (the partial sums of all of a group's tensors stacked in one
buffer), never a gather of a parameter. Everything else AdamSPD and AdamL2SP
compute is element-wise and needs no communication.

Sharding schemes that hide tensor boundaries are refused
(:func:`flat_sharding_refusal`): FSDP1's flat parameters (with either
``use_orig_params``) and DeepSpeed ZeRO-3 partitions hold slices of several
tensors, or a slice of one, with no way to recover a whole tensor's sums.
"""
from typing import Dict, List, Optional, Sequence, Tuple

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


class ShardedSums:
    """Adds a group's per-tensor partial sums up over the shards.

    Built from the group's parameters as stepped (DTensors or plain tensors,
    in the order of the kernels' sums). ``reduce(sums)`` takes the ``[n, k]``
    partial sums computed on the local shards and returns the global sums,
    with one ``all_reduce`` per device mesh among the sharded tensors:

    - a tensor sharded along some mesh dimensions contributes its local sums
      from the processes at coordinate 0 of every mesh dimension it is
      replicated along, and 0 from the others, so that an all-reduce over the
      whole mesh counts each element exactly once;
    - fully replicated DTensors and plain tensors already hold whole-tensor
      sums and are left out of the reduction.

    Nothing is read on the host: on accelerators the all-reduce is queued on
    the device like any kernel.
    """

    def __init__(self, params: Sequence[Tensor]) -> None:
        # mesh -> (rows, per-row 0/1 weight of this process's contribution)
        plans: Dict[object, Tuple[List[int], List[float]]] = {}
        for row, p in enumerate(params):
            if not is_dtensor(p):
                continue
            sharded_dims = [d for d, placement in enumerate(p.placements)
                            if placement.is_shard()]
            if not sharded_dims:
                continue
            mesh = p.device_mesh
            coordinate = mesh.get_coordinate()
            counts = all(coordinate[d] == 0
                         for d in range(mesh.ndim) if d not in sharded_dims)
            rows, weights = plans.setdefault(mesh, ([], []))
            rows.append(row)
            weights.append(1.0 if counts else 0.0)
        self._plans = [(_mesh_group(mesh), rows, weights)
                       for mesh, (rows, weights) in plans.items()]
        # (device, dtype) -> per plan (row index, weights or None) tensors,
        # made once: later steps copy nothing from the host
        self._tensors: Dict[tuple, list] = {}

    def _plan_tensors(self, sums: Tensor) -> list:
        key = (sums.device, sums.dtype)
        if key not in self._tensors:
            self._tensors[key] = [
                (torch.tensor(rows, device=sums.device),
                 None if all(weights) else torch.tensor(
                     weights, dtype=sums.dtype, device=sums.device)[:, None])
                for _, rows, weights in self._plans]
        return self._tensors[key]

    def reduce(self, sums: Tensor) -> Tensor:
        """Global ``[n, k]`` sums from local ones (a new tensor)."""
        if not self._plans:
            return sums
        sums = sums.clone()
        for (group, _, _), (index, weights) in zip(
                self._plans, self._plan_tensors(sums)):
            partial = sums.index_select(0, index)
            if weights is not None:
                partial.mul_(weights)
            dist.all_reduce(partial, group=group)
            sums.index_copy_(0, index, partial)
        return sums
