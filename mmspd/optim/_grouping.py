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
