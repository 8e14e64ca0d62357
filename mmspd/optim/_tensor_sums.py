"""Whole-tensor sums SPD decides with: dot products and L2 norms over all
elements of a tensor, accumulated in float32 for half-precision inputs."""
from typing import List

import torch
from torch import Tensor


def flat_dot(x: Tensor, y: Tensor) -> Tensor:
    """Dot product of two same-shape tensors over all elements (0-d).

    Half-precision inputs are accumulated in float32.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    return torch.dot(x.reshape(-1), y.reshape(-1))


def l2_norm(x: Tensor) -> Tensor:
    """L2 norm over all elements (0-d); float32 for half precision."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.linalg.vector_norm(x, dtype=torch.float32)
    return torch.linalg.vector_norm(x)


def l2_norms(tensors: List[Tensor]) -> Tensor:
    """:func:`l2_norm` of each tensor, stacked (one C++ call for the list
    where the dtype allows, with the same per-tensor arithmetic)."""
    if tensors[0].dtype in (torch.float16, torch.bfloat16):
        return torch.stack([l2_norm(t) for t in tensors])
    return torch.stack(torch._foreach_norm(tensors))
