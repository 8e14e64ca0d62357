"""SPD's selection and projection rule, from per-tensor sums.

The one place every AdamSPD kernel takes its decision from: the loop,
foreach and composed kernels, the two-pass form of sharded steps and the
Triton kernel all call :func:`keep_factors` (the compiled CPU kernel
implements the same formulas in C++, tested against these). Nothing here
reads a value on the host.
"""
from typing import List, Optional

import torch
from torch import Tensor


def projection_ratios(dots: Tensor, deviation_norms: Tensor,
                      proposal_norms: Tensor) -> Tensor:
    """Per tensor SPD's ratio ``r`` where the condition selects it, else 0.

    ``dots`` is ``g . (p - a)``, ``deviation_norms`` is ``|p - a|`` and
    ``proposal_norms`` is ``|q - a|``, each with one entry per tensor (or
    0-d). ``q == a`` gives ``r = 0`` rather than 0/0.
    """
    growth = proposal_norms - deviation_norms
    ratio = (growth / proposal_norms).clamp(0.0, 1.0)
    ratio = torch.where(proposal_norms > 0, ratio, torch.zeros_like(ratio))
    selected = dots > 0  # SPD's condition c = -g.(p - a) < 0
    return ratio * selected


def keep_factors(dots: Tensor, deviation_norms: Tensor,
                 proposal_norms: Tensor, weight_decay: float,
                 ratios_out: Optional[List[Tensor]] = None) -> Tensor:
    """Per tensor ``1 - lambda * r`` (``1`` where not selected).

    The new deviation is ``keep * (q - a)``. Arguments as
    :func:`projection_ratios`; the ratios are appended to ``ratios_out``
    when it is given (telemetry, read later by the caller).
    """
    ratios = projection_ratios(dots, deviation_norms, proposal_norms)
    if ratios_out is not None:
        ratios_out.append(ratios.reshape(-1))
    return 1.0 - weight_decay * ratios


def keep_factors_from_sums(sums: Tensor, weight_decay: float,
                           ratios_out: Optional[List[Tensor]] = None
                           ) -> Tensor:
    """:func:`keep_factors` from per-tensor sums, as two-pass kernels (and
    sharded steps, which reduce the sums between the passes) have them.

    ``sums`` is ``[n, 3]``: per tensor ``g . (p - a)``, ``|p - a|^2`` and
    ``|q - a|^2`` over all its elements. Returns the ``[n]`` keep factors.
    """
    dots, deviation_sq, proposal_sq = sums.unbind(1)
    return keep_factors(dots, deviation_sq.sqrt(), proposal_sq.sqrt(),
                        weight_decay, ratios_out)


def apply_keep(params: List[Tensor], anchors: Optional[List[Tensor]],
               proposals: List[Tensor], keeps: Tensor) -> None:
    """``p = a + keep * (q - a)`` per tensor (``proposals`` hold ``q - a``;
    with zero anchors they are the parameters themselves)."""
    keeps = keeps.unbind(0)
    if anchors is None:
        torch._foreach_mul_(params, keeps)
        return
    for param, anchor, proposal, keep in zip(params, anchors, proposals,
                                             keeps):
        torch.addcmul(anchor, proposal, keep, out=param)
