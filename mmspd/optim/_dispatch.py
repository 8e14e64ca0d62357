"""The kernel policy of AdamSPD and AdamL2SP: which kernel steps a group.

The kernels (each optimizer front-end has all four):

``'loop'``
    tensor by tensor in torch ops, the readable reference
    (``foreach=False``);
``'foreach'``
    multi-tensor ``torch._foreach_*`` ops, per device and dtype;
``'fused'``
    CPU only: mmspd's compiled kernel (:mod:`mmspd.optim._native`) where it
    is built, else torch ops around torch's fused Adam;
``'triton'``
    CUDA only: mmspd's Triton kernel (:mod:`mmspd.optim._triton_kernels`),
    opt-in with ``fused=True``.

All give the same numbers to float32 rounding. :func:`select_kernel` is the
whole policy; the front-ends only map a name to their function.
"""
from typing import Any, Callable, Dict, List

import torch
from torch import Tensor

from . import _triton_kernels

#: every kernel name, in the order of the module docstring
KERNELS = ('loop', 'foreach', 'fused', 'triton')


def fused_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused kernel serves tensors of this device and dtype.

    It is built on torch's fused Adam kernel on the CPU; on CUDA,
    ``fused=True`` asks for the Triton kernel instead (:func:`select_kernel`).
    """
    return (device.type == 'cpu' and hasattr(torch, '_fused_adam_')
            and dtype in (torch.float32, torch.float64, torch.bfloat16))


def pick_kernel(kernels: Dict[str, Callable], name: str) -> Callable:
    """``kernels[name]``, or a ``ValueError`` listing the known names."""
    if name not in kernels:
        raise ValueError(f'Unknown kernel {name!r}: expected one of '
                         f'{", ".join(kernels)}')
    return kernels[name]


def select_kernel(group: Dict[str, Any], params: List[Tensor]) -> str:
    """``'triton'``, ``'fused'``, ``'foreach'`` or ``'loop'`` for one
    group's step.

    ``foreach=False`` asks for the loop and ``fused=False`` for the foreach
    kernel. What ``fused=True`` asks for depends on the device:

    - a group whose parameters are all on CUDA takes the foreach kernel
      (torch's own ops) by default. mmspd's Triton kernel is opt-in there
      (``fused=True``): it has been checked only through Triton's
      interpreter on CPU, not yet on a GPU, and ``fused=True`` raises where
      Triton cannot run;
    - other groups take the compiled CPU kernel (``'fused'``) wherever every
      tensor supports it (required by ``fused=True``), except
      ``capturable`` ones, which take the foreach kernel.
    """
    if group['foreach'] is False:
        return 'loop'
    if group['fused'] is False:
        return 'foreach'
    devices = {p.device for p in params}
    if devices and all(device.type == 'cuda' for device in devices):
        if not group['fused']:
            return 'foreach'
        reasons = sorted({
            reason for reason in map(_triton_kernels.unavailable_reason,
                                     devices) if reason is not None})
        if not reasons:
            return 'triton'
        raise RuntimeError(f'fused=True on CUDA asks for mmspd\'s '
                           f'Triton kernel, which cannot run here '
                           f'({"; ".join(reasons)}); use fused=None for '
                           f'the foreach path')
    if group.get('capturable'):
        return 'foreach'
    kinds = {(p.device, p.dtype) for p in params}
    unsupported = sorted(f'{device.type}/{dtype}' for device, dtype in kinds
                         if not fused_available(device, dtype))
    supported = not unsupported
    if group['fused'] and not supported:
        raise RuntimeError(f'fused=True but the fused kernel does not serve '
                           f'{", ".join(unsupported)} parameters (it serves '
                           f'CPU float32/float64/bfloat16, and CUDA through '
                           f'Triton); use fused=None to fall back to the '
                           f'foreach path')
    return 'fused' if supported else 'foreach'
