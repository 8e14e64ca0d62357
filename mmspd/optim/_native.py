"""mmspd's compiled CPU kernel of AdamSPD, when the install built it.

``pip install -e .`` (and ``make install``) compiles
``mmspd/optim/csrc/adam_spd_cpu.cpp`` into ``mmspd.optim._adam_spd_cpu``
unless ``MMSPD_WITH_OPS=0``. The fused kernel of :class:`~mmspd.optim.AdamSPD`
runs on it for contiguous CPU float32/float64 parameters; without it the
fused kernel is composed of torch ops (same numbers, 2 to 2.5 times slower
on ViT shapes), and the first such step warns once, naming why the compiled
kernel is missing. ``extension.cpu_isa()`` names the instruction set its
loops run with (``set_cpu_isa`` picks another, for tests and benchmarks).
"""
import warnings
from typing import List, Optional

import torch
from torch import Tensor

try:
    from . import _adam_spd_cpu as extension
    LOAD_ERROR: Optional[str] = None
except ImportError as error:  # not built, or built against another torch
    extension = None
    LOAD_ERROR = f'{type(error).__name__}: {error}'

#: The parameter dtypes the compiled kernel steps.
NATIVE_DTYPES = (torch.float32, torch.float64)

_warned = False


def serves(params: List[Tensor]) -> bool:
    """Whether the compiled kernel steps this same-device, same-dtype list
    (whose tensors, and those aligned with them, are contiguous).

    Parameters must be CPU float32/float64. Warns once (per process) when
    only the missing build stands in the way.
    """
    p = params[0]
    if p.device.type != 'cpu' or p.dtype not in NATIVE_DTYPES:
        return False
    if extension is None:
        _warn_missing()
        return False
    return True


def _warn_missing() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f'mmspd.optim._adam_spd_cpu is not available ({LOAD_ERROR}); '
            f"AdamSPD's fused CPU step falls back to torch ops (same "
            f'numbers, slower). Build it with `pip install --no-build-'
            f'isolation -e .` (needs a C++ compiler) or `make install`.',
            RuntimeWarning, stacklevel=4)


def adam_spd_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                  anchors, steps, *, beta1: float, beta2: float, lr: float,
                  eps: float, weight_decay: float) -> Tensor:
    """One AdamSPD step of the lists in the compiled kernel (in place).

    ``max_exp_avg_sqs`` / ``anchors`` may be ``None`` (no amsgrad / zero
    anchors). Returns the per-tensor projection ratios (float64, 0 where a
    tensor was not projected).
    """
    return extension.adam_spd_step(params, grads, exp_avgs, exp_avg_sqs,
                                   max_exp_avg_sqs or [], anchors or [],
                                   [float(s) for s in steps], beta1, beta2,
                                   lr, eps, weight_decay)


def serves_two_pass(params: List[Tensor]) -> bool:
    """:func:`serves`, for a build that also has the two-pass entry points
    (:func:`adam_spd_propose`, :func:`adam_spd_project`)."""
    return serves(params) and hasattr(extension, 'adam_spd_propose')


def adam_spd_propose(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                     anchors, steps, *, beta1: float, beta2: float, lr: float,
                     eps: float) -> Tensor:
    """Pass 1 of the step in the compiled kernel (in place: moments, and
    Adam's proposal ``q`` in ``params``). Returns the per-tensor sums
    ``g . (p - a)``, ``|p - a|^2``, ``|q - a|^2`` (``[n, 3]``, float64)."""
    return extension.adam_spd_propose(params, grads, exp_avgs, exp_avg_sqs,
                                      max_exp_avg_sqs or [], anchors or [],
                                      [float(s) for s in steps], beta1, beta2,
                                      lr, eps)


def adam_spd_project(params, anchors, keeps: Tensor) -> None:
    """Pass 2 in the compiled kernel: ``p = a + keep * (p - a)`` where a
    tensor's keep factor (``keeps``, one per tensor, CPU) is not 1."""
    extension.adam_spd_project(params, anchors or [], keeps.tolist())
