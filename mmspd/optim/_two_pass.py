"""AdamSPD as two passes with the per-tensor sums in between.

A sharded step (see :mod:`mmspd.optim._dtensor`) must add each tensor's
partial sums up over its shards before SPD can decide, so its kernels run

1. :func:`propose`: Adam's moments and proposal ``q``, and per tensor the
   sums ``g . (p - a)``, ``|p - a|^2``, ``|q - a|^2`` over the local
   elements, as an ``[n, 3]`` tensor. The fused kernels write ``q`` into the
   parameters; the loop and foreach kernels with anchors keep ``q - a`` in
   buffers, as their one-pass forms do (same rounding);
2. the caller reduces the sums and turns them into keep factors
   (:func:`mmspd.optim._spd_rule.keep_factors_from_sums`);
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
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _native, _triton_kernels
from ._adam_math import (adam_moments_, adam_moments_foreach_,
                         adam_update_foreach_, fused_adam_)
from ._grouping import group_by_device_and_dtype, split_contiguous
from ._step_lists import StepLists
from ._tensor_sums import flat_dot, l2_norms


def propose(kernel: str, lists: StepLists, *, amsgrad: bool, beta1: float,
            beta2: float, lr: float, eps: float
            ) -> Tuple[Tensor, List[Optional[Tensor]]]:
    """Pass 1 with ``kernel``. Returns the ``[n, 3]`` local sums (rows in
    the order of ``lists.params``; float64 if any bucket's are, else
    float32) and per tensor its proposal ``q - a`` where it is kept apart
    (``None`` where ``q`` is in the parameter), for :func:`project`."""
    hyper = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps)
    if kernel == 'loop':
        return _propose_loop(lists, **hyper)
    n = len(lists.params)
    compiled = dict(fused=_propose_fused, triton=_propose_triton).get(kernel)
    parts, proposals = [], [None] * n
    for rows, bucket in _buckets_with_rows(lists):
        if compiled is not None:
            # compiled kernels index tensors by one flat offset
            contiguous, strided = _split_rows(rows, bucket)
        else:
            contiguous, strided = None, (rows, bucket)
        if kernel == 'triton' and contiguous is not None and \
                contiguous[1].params[0].dtype not in \
                _triton_kernels.SERVED_DTYPES:
            contiguous, strided = None, (rows, bucket)  # float64: foreach
        for part, run in ((strided, _propose_foreach),
                          (contiguous, compiled)):
            if part is not None:
                part_rows, part_lists = part
                sums, kept = run(part_lists, **hyper)
                parts.append((part_rows, sums))
                for row, proposal in zip(part_rows, kept):
                    proposals[row] = proposal
    return _in_order(parts, n), proposals


def project(kernel: str, params: List[Tensor],
            anchors: Optional[List[Tensor]], keeps: Tensor,
            proposals: List[Optional[Tensor]]) -> None:
    """Pass 2: ``p = a + keep * (q - a)`` (``keep * p`` for zero anchors)
    with the ``[n]`` keep factors and what :func:`propose` returned."""
    rows = list(range(len(params)))
    buckets = group_by_device_and_dtype(params, anchors, proposals, rows)
    for b_params, b_anchors, b_proposals, b_rows in buckets.values():
        b_keeps = (keeps.index_select(0, row_index(b_rows, keeps.device))
                   if len(b_rows) != len(params) else keeps)
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


#: device index tensors of row lists, most recent last (see row_index)
_ROW_INDEX: 'OrderedDict[tuple, Tensor]' = OrderedDict()
_ROW_INDEX_KEPT = 64


def row_index(rows: Sequence[int], device: torch.device) -> Tensor:
    """``rows`` as an int64 tensor on ``device``, cached, so that a step
    that selects or scatters rows does not copy an index from the host
    each time (a Python-list index is a pageable copy, and a wait, on an
    accelerator)."""
    key = (device, *rows)
    index = _ROW_INDEX.get(key)
    if index is None:
        host = torch.tensor(list(rows), dtype=torch.int64,
                            pin_memory=device.type == 'cuda')
        index = _ROW_INDEX[key] = host.to(device, non_blocking=True)
        while len(_ROW_INDEX) > _ROW_INDEX_KEPT:
            _ROW_INDEX.popitem(last=False)
    else:
        _ROW_INDEX.move_to_end(key)
    return index


def _buckets_with_rows(lists: StepLists):
    """``(rows, bucket)`` per device and dtype: the bucket's positions in
    ``lists`` and its lists."""
    rows = list(range(len(lists.params)))
    for grouped in group_by_device_and_dtype(*lists, rows).values():
        yield grouped[-1], StepLists(*grouped[:-1])


def _split_rows(rows: List[int], bucket: StepLists):
    """:meth:`StepLists.split_contiguous` with the rows of each part."""
    contiguous, strided = split_contiguous(list(bucket) + [rows])
    return tuple(None if part is None else (part[-1], StepLists(*part[:-1]))
                 for part in (contiguous, strided))


def _in_order(parts, n: int) -> Tensor:
    """Stack ``(rows, sums)`` parts into one ``[n, 3]`` tensor by row."""
    if len(parts) == 1 and list(parts[0][0]) == list(range(n)):
        return parts[0][1]
    dtype = (torch.float64 if any(s.dtype == torch.float64 for _, s in parts)
             else torch.float32)
    out = torch.empty((n, 3), dtype=dtype, device=parts[0][1].device)
    for rows, sums in parts:
        out.index_copy_(0, row_index(rows, out.device), sums.to(dtype))
    return out


def _deviations(params, anchors):
    return params if anchors is None else torch._foreach_sub(params, anchors)


def _propose_loop(lists: StepLists, *, amsgrad, beta1, beta2, lr, eps):
    rows, proposals = [], []
    for i, param in enumerate(lists.params):
        grad, exp_avg = lists.grads[i], lists.exp_avgs[i]
        denom, step_size = adam_moments_(
            grad, exp_avg, lists.exp_avg_sqs[i],
            lists.max_exp_avg_sqs[i] if amsgrad else None, lists.steps[i],
            beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        anchor = None if lists.anchors is None else lists.anchors[i]
        deviation = param if anchor is None else param - anchor
        dot, deviation_sq = flat_dot(grad, deviation), flat_dot(
            deviation, deviation)
        # Adam's proposal as a deviation from the anchor, q - a (in place:
        # in the parameter for zero anchors, else in the fresh p - a)
        deviation.addcdiv_(exp_avg, denom, value=-step_size)
        rows.append(torch.stack([dot, deviation_sq,
                                 flat_dot(deviation, deviation)]))
        proposals.append(None if anchor is None else deviation)
    sums = torch.stack(rows)
    return (sums if sums.dtype == torch.float64 else sums.float()), \
        proposals


def _sums_before(grads, deviations) -> List[Tensor]:
    dots = torch.stack([flat_dot(g, d) for g, d in zip(grads, deviations)])
    return [dots, l2_norms(deviations).square()]


def _propose_foreach(lists: StepLists, *, amsgrad, beta1, beta2, lr, eps):
    denoms, neg_step_sizes = adam_moments_foreach_(
        lists.grads, lists.exp_avgs, lists.exp_avg_sqs,
        lists.max_exp_avg_sqs, lists.steps, beta1=beta1, beta2=beta2, lr=lr,
        eps=eps, amsgrad=amsgrad)
    deviations = _deviations(lists.params, lists.anchors)
    before = _sums_before(lists.grads, deviations)
    # q - a: in the parameters for zero anchors, else in the buffers
    adam_update_foreach_(deviations, lists.exp_avgs, denoms, neg_step_sizes)
    after = l2_norms(deviations).square()
    kept = ([None] * len(lists.params) if lists.anchors is None
            else deviations)
    return torch.stack(before + [after], dim=1), kept


def _propose_triton(lists: StepLists, *, amsgrad, beta1, beta2, lr, eps):
    """Contiguous float32/bfloat16/float16 CUDA tensors: the Triton
    kernel's first pass (q written into the parameters)."""
    return _triton_kernels.propose(
        *lists, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
        amsgrad=amsgrad), [None] * len(lists.params)


def _propose_fused(lists: StepLists, *, amsgrad, beta1, beta2, lr, eps):
    """Contiguous tensors: the compiled kernel's pass 1 where it serves,
    else torch's fused Adam between the sums."""
    params, anchors = lists.params, lists.anchors
    if _native.serves_two_pass(params):
        return _native.adam_spd_propose(
            *lists, beta1=beta1, beta2=beta2, lr=lr,
            eps=eps), [None] * len(params)
    before = _sums_before(lists.grads, _deviations(params, anchors))
    fused_adam_(params, lists.grads, lists.exp_avgs, lists.exp_avg_sqs,
                lists.max_exp_avg_sqs, lists.steps, amsgrad=amsgrad,
                beta1=beta1, beta2=beta2, lr=lr, eps=eps)
    after = l2_norms(_deviations(params, anchors)).square()
    return torch.stack(before + [after], dim=1), [None] * len(params)
