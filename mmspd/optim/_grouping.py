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
