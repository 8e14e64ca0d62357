"""AdamSPD as two passes with the per-tensor sums in between.

A sharded step (see :mod:`mmspd.optim._dtensor`) must add each tensor's
partial sums up over its shards before SPD can decide, so its kernels run

1. :func:`propose`: Adam's moments and proposal ``q``, and per tensor the
   sums ``g . (p - a)``, ``|p - a|^2``, ``|q - a|^2`` over the local
   elements, as an ``[n, 3]`` tensor. The fused kernels write ``q`` into the
   parameters; the loop and foreach kernels with anchors keep ``q - a`` in
   buffers, as their one-pass forms do (same rounding);
2. the caller reduces the sums and turns them into keep factors
   (:func:`mmspd.optim.adam_spd.keep_factors_from_sums`);
3. :func:`project`: ``p = a + keep * (p - a)`` per tensor.

Each kernel of :func:`mmspd.optim.adam_spd.adam_spd` has its two-pass form
here, with the kernel's own arithmetic: ``'loop'`` tensor by tensor,
``'foreach'`` with multi-tensor ops, ``'fused'`` in mmspd's compiled CPU
kernel (or around torch's fused Adam where that does not serve),
``'triton'`` in the Triton kernel (float64 and non-contiguous tensors take
the foreach form, as in the one-pass kernels). Unsharded
steps do not use this module: their kernels decide chunk by chunk, while
the data is in cache.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import _native, _triton_kernels
from ._adam_math import (adam_moments_, adam_moments_foreach_,
                         adam_update_foreach_, fused_adam_)
from ._grouping import group_by_device_and_dtype, split_contiguous
from ._tensor_sums import flat_dot, l2_norms


def propose(kernel: str, params, grads, exp_avgs, exp_avg_sqs,
            max_exp_avg_sqs, anchors, steps, *, amsgrad: bool, beta1: float,
            beta2: float, lr: float, eps: float
            ) -> Tuple[Tensor, List[Optional[Tensor]]]:
    """Pass 1 with ``kernel``. Returns the ``[n, 3]`` local sums (rows in
    the order of ``params``; float64 if any bucket's are, else float32) and
    per tensor its proposal ``q - a`` where it is kept apart (``None`` where
    ``q`` is in the parameter), for :func:`project`."""
    hyper = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps)
    if kernel == 'loop':
        return _propose_loop(params, grads, exp_avgs, exp_avg_sqs,
                             max_exp_avg_sqs, anchors, steps, **hyper)
    rows = list(range(len(params)))
    buckets = group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs,
                                        max_exp_avg_sqs if amsgrad else None,
                                        anchors, steps, rows)
    compiled = dict(fused=_propose_fused, triton=_propose_triton).get(kernel)
    parts, proposals = [], [None] * len(params)
    for bucket in buckets.values():
        if compiled is not None:
            # compiled kernels index tensors by one flat offset
            contiguous, strided = split_contiguous(bucket)
        else:
            contiguous, strided = None, bucket
        if kernel == 'triton' and contiguous is not None and \
                contiguous[0][0].dtype not in _triton_kernels.SERVED_DTYPES:
            contiguous, strided = None, bucket  # float64: foreach
        for lists, run in ((strided, _propose_foreach),
                           (contiguous, compiled)):
            if lists is not None:
                sums, kept = run(*lists[:-1], **hyper)
                parts.append((lists[-1], sums))
                for row, proposal in zip(lists[-1], kept):
                    proposals[row] = proposal
    return _in_order(parts, len(params)), proposals


def project(kernel: str, params: List[Tensor],
            anchors: Optional[List[Tensor]], keeps: Tensor,
            proposals: List[Optional[Tensor]]) -> None:
    """Pass 2: ``p = a + keep * (q - a)`` (``keep * p`` for zero anchors)
    with the ``[n]`` keep factors and what :func:`propose` returned."""
    rows = list(range(len(params)))
    buckets = group_by_device_and_dtype(params, anchors, proposals, rows)
    for b_params, b_anchors, b_proposals, b_rows in buckets.values():
        b_keeps = keeps[b_rows] if len(b_rows) != len(params) else keeps
        # q in the parameters of contiguous tensors: the compiled kernels
        in_place = all(d is None for d in b_proposals) and all(
            t.is_contiguous() for t in b_params + (b_anchors or []))
        if in_place and kernel == 'fused' and \
                _native.serves_two_pass(b_params):
            _native.adam_spd_project(b_params, b_anchors, b_keeps)
        elif in_place and kernel == 'triton' and \
                b_params[0].dtype in _triton_kernels.SERVED_DTYPES:
            _triton_kernels.project(b_params, b_anchors, b_keeps)
        elif b_anchors is None:
            torch._foreach_mul_(b_params, b_keeps.to(b_params[0].dtype)
                                .unbind(0))
        else:
            for p, a, d, k in zip(b_params, b_anchors, b_proposals,
                                  b_keeps.to(b_params[0].dtype).unbind(0)):
                torch.addcmul(a, p - a if d is None else d, k, out=p)


def _in_order(parts, n: int) -> Tensor:
    """Stack ``(rows, sums)`` parts into one ``[n, 3]`` tensor by row."""
    if len(parts) == 1 and list(parts[0][0]) == list(range(n)):
        return parts[0][1]
    dtype = (torch.float64 if any(s.dtype == torch.float64 for _, s in parts)
             else torch.float32)
    out = torch.empty((n, 3), dtype=dtype, device=parts[0][1].device)
    for rows, sums in parts:
        out[rows] = sums.to(dtype)
    return out


def _deviations(params, anchors):
    return params if anchors is None else torch._foreach_sub(params, anchors)


def _propose_loop(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                  anchors, steps, *, amsgrad, beta1, beta2, lr, eps):
    rows, proposals = [], []
    for i, param in enumerate(params):
        grad = grads[i]
        denom, step_size = adam_moments_(
            grad, exp_avgs[i], exp_avg_sqs[i],
            max_exp_avg_sqs[i] if amsgrad else None, steps[i], beta1=beta1,
            beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        anchor = None if anchors is None else anchors[i]
        deviation = param if anchor is None else param - anchor
        dot, deviation_sq = flat_dot(grad, deviation), flat_dot(
            deviation, deviation)
        # Adam's proposal as a deviation from the anchor, q - a (in place:
        # in the parameter for zero anchors, else in the fresh p - a)
        deviation.addcdiv_(exp_avgs[i], denom, value=-step_size)
        rows.append(torch.stack([dot, deviation_sq,
                                 flat_dot(deviation, deviation)]))
        proposals.append(None if anchor is None else deviation)
    sums = torch.stack(rows)
    return (sums if sums.dtype == torch.float64 else sums.float()), \
        proposals


def _sums_before(grads, deviations) -> List[Tensor]:
    dots = torch.stack([flat_dot(g, d) for g, d in zip(grads, deviations)])
    return [dots, l2_norms(deviations).square()]


def _propose_foreach(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                     anchors, steps, *, amsgrad, beta1, beta2, lr, eps):
    denoms, neg_step_sizes = adam_moments_foreach_(
        grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, beta1=beta1,
        beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
    deviations = _deviations(params, anchors)
    before = _sums_before(grads, deviations)
    # q - a: in the parameters for zero anchors, else in the buffers
    adam_update_foreach_(deviations, exp_avgs, denoms, neg_step_sizes)
    after = l2_norms(deviations).square()
    kept = [None] * len(params) if anchors is None else deviations
    return torch.stack(before + [after], dim=1), kept


def _propose_triton(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                    anchors, steps, *, amsgrad, beta1, beta2, lr, eps):
    """Contiguous float32/bfloat16/float16 CUDA tensors: the Triton
    kernel's first pass (q written into the parameters)."""
    return _triton_kernels.propose(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, anchors,
        steps, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
        amsgrad=amsgrad), [None] * len(params)


def _propose_fused(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                   anchors, steps, *, amsgrad, beta1, beta2, lr, eps):
    """Contiguous tensors: the compiled kernel's pass 1 where it serves,
    else torch's fused Adam between the sums."""
    if _native.serves_two_pass(params):
        return _native.adam_spd_propose(
            params, grads, exp_avgs, exp_avg_sqs,
            max_exp_avg_sqs if amsgrad else None, anchors, steps,
            beta1=beta1, beta2=beta2, lr=lr, eps=eps), [None] * len(params)
    before = _sums_before(grads, _deviations(params, anchors))
    fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps)
    after = l2_norms(_deviations(params, anchors)).square()
    return torch.stack(before + [after], dim=1), [None] * len(params)
