"""Split tensor lists into same-device, same-dtype buckets for foreach ops."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor


def group_by_device_and_dtype(
    params: Sequence[Tensor], *others: Optional[Sequence[Optional[Tensor]]]
) -> Dict[Tuple[torch.device, torch.dtype], List[list]]:
    """Bucket ``params`` (and the lists aligned with them) by device/dtype.

    Each value is ``[params, *others]`` restricted to one bucket, in the
    original order. An entry of ``others`` may be ``None`` (a list that is not
    used, e.g. amsgrad buffers when amsgrad is off); it stays ``None``.
    """
    buckets: Dict[Tuple[torch.device, torch.dtype], List[list]] = \
        defaultdict(lambda: [[] for _ in range(1 + len(others))])
    for i, p in enumerate(params):
        bucket = buckets[(p.device, p.dtype)]
        bucket[0].append(p)
        for j, other in enumerate(others, start=1):
            if other is not None:
                bucket[j].append(other[i])
    result = {}
    for key, lists in buckets.items():
        result[key] = [lists[0]] + [
            lists[j] if others[j - 1] is not None else None
            for j in range(1, len(lists))
        ]
    return result


#: On CPU, foreach ops are a loop over tensors, one op at a time: each op
#: streams the whole list through memory. Working on chunks of about this
#: many elements keeps a chunk's tensors in cache across the step's ops.
CPU_CHUNK_NUMEL = 1 << 18


def split_for_cache(device: torch.device, lists: List[Optional[list]],
                    max_numel: int = CPU_CHUNK_NUMEL) -> List[List[list]]:
    """Split aligned lists (``lists[0]`` holds tensors) into cache chunks.

    On accelerators the lists are returned whole (one chunk): their foreach
    kernels are horizontally fused, and more chunks would mean more launches.
    A tensor larger than ``max_numel`` forms a chunk of its own.
    """
    if device.type != 'cpu':
        return [lists]
    chunks, start, size = [], 0, 0
    tensors = lists[0]
    for i, t in enumerate(tensors):
        if i > start and size + t.numel() > max_numel:
            chunks.append(start)
            start, size = i, 0
        size += t.numel()
    chunks.append(start)
    bounds = chunks + [len(tensors)]
    return [[None if lst is None else lst[a:b] for lst in lists]
            for a, b in zip(bounds[:-1], bounds[1:])]


def split_contiguous(
        lists: List[Optional[list]]
) -> Tuple[Optional[List[list]], Optional[List[list]]]:
    """Split aligned lists into ``(contiguous, other)`` by position.

    Position ``i`` is contiguous when every tensor at ``i`` is (non-tensor
    entries, such as step counts, do not count). Fused kernels index the
    tensors of a position by one flat offset, which is only right for
    contiguous tensors (torch's ``_fused_adam_`` silently mixes up elements
    of a transposed parameter with a contiguous gradient). Either part is
    ``None`` when it would be empty.
    """
    tensor_lists = [
        lst for lst in lists
        if lst is not None and lst and isinstance(lst[0], Tensor)
    ]
    if all(all(map(Tensor.is_contiguous, lst)) for lst in tensor_lists):
        return lists, None  # the common case, checked in C++ per list
    dense = [
        all(lst[i].is_contiguous() for lst in tensor_lists)
        for i in range(len(lists[0]))
    ]

    def pick(keep: bool) -> Optional[List[list]]:
        if keep not in dense:
            return None
        return [None if lst is None else
                [x for x, d in zip(lst, dense) if d == keep] for lst in lists]

    return pick(True), pick(False)


def scratch_like(tensors: Sequence[Tensor]) -> List[Tensor]:
    """Uninitialised tensors shaped like ``tensors`` (one device and
    dtype), as views of one allocation."""
    flat = torch.empty(sum(t.numel() for t in tensors),
                       dtype=tensors[0].dtype, device=tensors[0].device)
    views, offset = [], 0
    for t in tensors:
        views.append(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return views
