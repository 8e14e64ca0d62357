"""AdamSPD: Adam with Selective Projection Decay.

From "Rethinking Weight Decay for Robust Fine-Tuning of Foundation Models"
(Tian, Huang, Kira; NeurIPS 2024, arXiv:2411.01713). Written from the
algorithm's statement in the paper; no code of the authors' is used.
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Union

import torch
from torch import Tensor

from . import _native, _triton_kernels, _two_pass
from ._adam_math import (adam_moments_, adam_moments_foreach_,
                         adam_update_foreach_, fused_adam_, kernel_lr)
from ._dispatch import pick_kernel
from ._dtensor import ShardedSums, reduce_sharded_sums
from ._grouping import scratch_like
from ._spd_rule import apply_keep, keep_factors, keep_factors_from_sums
from ._step_lists import StepLists
from ._tensor_sums import flat_dot, l2_norm, l2_norms
from .anchored_adam import AnchoredAdam, GroupTensors

__all__ = ['AdamSPD', 'adam_spd']


class AdamSPD(AnchoredAdam):
    r"""Adam with Selective Projection Decay toward pretrained anchors.

    For every parameter tensor :math:`p` with anchor :math:`a`, gradient
    :math:`g` and Adam moments :math:`m, v` (step :math:`t`)::

        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2   (amsgrad: max)
        q = p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
        if  g . (p - a) > 0:                       # drift does not help
            r = clamp((|q - a| - |p - a|) / |q - a|, 0, 1)      (0 if q == a)
            q = q - lambda * r * (q - a)
        p = q

    Norms and the dot product run over the whole tensor. ``weight_decay`` is
    lambda; the only other decay is AdamW's decoupled one, off unless a
    group sets ``decoupled_decay`` (applied to ``p`` before all of the
    above; see :mod:`mmspd.optim.anchored_adam`). With ``lambda = 1`` a
    selected tensor's distance to its anchor cannot grow; ``lambda = 0`` is
    Adam.

    The condition and the ratio are computed and applied as tensors: a step
    never reads a tensor's value on the host (no device synchronisation).
    Anchors: see :mod:`mmspd.optim.anchored_adam` (``anchor='init'`` or
    ``'zero'`` per parameter group, saved in the state dict).

    Args: as :class:`~mmspd.optim.anchored_adam.AnchoredAdam`, with
        ``weight_decay`` the SPD strength lambda.

    Example:
        >>> opt = AdamSPD(model.parameters(), lr=2e-5, weight_decay=1.0)
        >>> # new layers: no anchor memory, decay of |W| instead of |W - W0|
        >>> opt = AdamSPD([dict(params=backbone.parameters()),
        ...                dict(params=head.parameters(), anchor='zero')],
        ...               lr=2e-5, weight_decay=1.0)
    """

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; return the closure's loss, if any."""
        self._last_ratios: List[Tensor] = []
        self._awaiting_sums: List[_AwaitingProjection] = []
        return super().step(closure)

    def _update_group(self, group: Dict, tensors: GroupTensors,
                      kernel: str) -> None:
        beta1, beta2 = group['betas']
        hyper = dict(amsgrad=group['amsgrad'], beta1=beta1, beta2=beta2,
                     lr=group['lr'], eps=group['eps'])
        if tensors.shards is None or group['weight_decay'] == 0:
            adam_spd(*tensors.lists, kernel=kernel,
                     weight_decay=group['weight_decay'],
                     ratios_out=self._last_ratios, **hyper)
            return
        # Sharded: pass 1 now; the sums of every group are reduced together
        # in _finish_step (one all-reduce per step), then pass 2.
        lists = tensors.lists.for_amsgrad(group['amsgrad'])
        if lists.params:
            hyper['lr'] = kernel_lr(hyper['lr'], kernel, lists.steps)
            sums, proposals = _two_pass.propose(kernel, lists, **hyper)
        else:  # nothing stepped here: zero rows in the all-reduce
            sums = torch.zeros((0, 3), dtype=torch.float64,
                               device=tensors.shards.device)
            proposals = []
        self._awaiting_sums.append(_AwaitingProjection(
            kernel, lists, group['weight_decay'], tensors.shards, sums,
            proposals))

    def _finish_step(self) -> None:
        awaiting = getattr(self, '_awaiting_sums', [])
        if not awaiting:
            return
        self._awaiting_sums = []
        reduced = reduce_sharded_sums([(a.shards, a.sums) for a in awaiting])
        for item, sums in zip(awaiting, reduced):
            if not item.lists.params:
                continue
            keeps = keep_factors_from_sums(sums, item.weight_decay,
                                           self._last_ratios)
            _two_pass.project(item.kernel, item.lists.params,
                              item.lists.anchors, keeps, item.proposals)

    def projection_statistics(self) -> Dict[str, float]:
        """What SPD did at the last step, over the tensors it considered.

        ``tensors``: how many tensors SPD considered (those stepped in groups
        with ``weight_decay > 0``); ``projected_fraction``: the fraction it
        projected (selected and ``r > 0``); ``mean_ratio``: the mean ``r``
        of the projected ones (0 if none). The step keeps these as tensors;
        this call is where they are read (one host synchronisation), so call
        it at logging time, not every step.
        """
        last = getattr(self, '_last_ratios', [])
        if not last:
            return dict(tensors=0, projected_fraction=0.0, mean_ratio=0.0)
        device = last[0].device
        ratios = torch.cat([r.float().to(device) for r in last]).cpu()
        projected = int((ratios > 0).sum())
        return dict(
            tensors=ratios.numel(),
            projected_fraction=projected / ratios.numel(),
            mean_ratio=float(ratios.sum()) / projected if projected else 0.0)


class _AwaitingProjection(NamedTuple):
    """A sharded group between its two passes, waiting for the reduced
    sums of the step."""
    kernel: str
    lists: StepLists
    weight_decay: float
    shards: ShardedSums
    sums: Tensor
    proposals: List[Optional[Tensor]]


def adam_spd(params: List[Tensor], grads: List[Tensor],
             exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
             max_exp_avg_sqs: Optional[List[Tensor]],
             anchors: Optional[List[Tensor]],
             steps: List[Union[float, Tensor]], *, kernel: str,
             amsgrad: bool, beta1: float, beta2: float,
             lr: float, weight_decay: float, eps: float,
             ratios_out: Optional[List[Tensor]] = None,
             reduce_sums: Optional[Callable[[Tensor], Tensor]] = None
             ) -> None:
    """Functional AdamSPD step (see :class:`AdamSPD` for the math).

    Updates ``params`` and the moments in place. ``anchors=None`` means zero
    anchors; ``max_exp_avg_sqs`` may be ``None`` unless ``amsgrad``. ``steps``
    are the step counts *after* this step's increment (1 at the first step):
    numbers, or with ``kernel='foreach'`` the counter tensors themselves
    (``capturable``). ``kernel`` is one of
    :data:`mmspd.optim._dispatch.KERNELS` (the module docstring there says
    what each is); all give the same numbers to float32 rounding.
    If ``ratios_out`` is a list, the tensors of per-tensor projection ratios
    (0 where not projected) are appended to it; with ``weight_decay == 0``
    SPD is off and nothing is appended.
    ``reduce_sums`` is for tensors that are local shards of larger ones: it
    maps the ``[n, 3]`` local sums ``g . (p - a)``, ``|p - a|^2``,
    ``|q - a|^2`` to the sums over whole tensors (e.g.
    :meth:`mmspd.optim._dtensor.ShardedSums.reduce`, one all-reduce); the
    kernel then runs in two passes around it (:mod:`mmspd.optim._two_pass`).
    """
    run = pick_kernel(_KERNELS, kernel)
    lists = StepLists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                      anchors, steps).for_amsgrad(amsgrad)
    hyper = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2,
                 lr=kernel_lr(lr, kernel, steps),  # a tensor lr: see there
                 eps=eps)
    if reduce_sums is not None and weight_decay != 0:
        # sharded: decide from the sums over every shard (two passes)
        sums, proposals = _two_pass.propose(kernel, lists, **hyper)
        keeps = keep_factors_from_sums(reduce_sums(sums), weight_decay,
                                       ratios_out)
        _two_pass.project(kernel, lists.params, lists.anchors, keeps,
                          proposals)
        return
    run(lists, weight_decay=weight_decay, ratios_out=ratios_out, **hyper)


def _single_tensor_adam_spd(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                            weight_decay, eps, ratios_out=None) -> None:
    """The reference: tensor by tensor, as the math is written."""
    for i, param in enumerate(lists.params):
        grad, exp_avg = lists.grads[i], lists.exp_avgs[i]
        denom, step_size = adam_moments_(
            grad, exp_avg, lists.exp_avg_sqs[i],
            lists.max_exp_avg_sqs[i] if amsgrad else None, lists.steps[i],
            beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        if weight_decay == 0:
            param.addcdiv_(exp_avg, denom, value=-step_size)
            continue
        anchor = None if lists.anchors is None else lists.anchors[i]
        # deviation from the anchor before the step: p - a
        deviation = param if anchor is None else param - anchor
        dot = flat_dot(grad, deviation)
        deviation_norm = l2_norm(deviation)
        # Adam's proposal, as a deviation from the anchor: q - a
        proposal = torch.addcdiv(deviation, exp_avg, denom, value=-step_size)
        keep = keep_factors(dot, deviation_norm, l2_norm(proposal),
                            weight_decay, ratios_out)
        # p = a + (1 - lambda * r) * (q - a)
        if anchor is None:
            torch.mul(proposal, keep, out=param)
        else:
            torch.addcmul(anchor, proposal, keep, out=param)


def _multi_tensor_adam_spd(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                           weight_decay, eps, ratios_out=None) -> None:
    """Multi-tensor ops per device and dtype (cache-sized chunks on CPU)."""
    for (device, _), bucket in lists.by_device_and_dtype().items():
        for chunk in bucket.cache_chunks(device):
            denoms, neg_step_sizes = adam_moments_foreach_(
                chunk.grads, chunk.exp_avgs, chunk.exp_avg_sqs,
                chunk.max_exp_avg_sqs, chunk.steps, beta1=beta1,
                beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
            if weight_decay == 0:
                adam_update_foreach_(chunk.params, chunk.exp_avgs, denoms,
                                     neg_step_sizes)
                continue
            # Zero anchors: the deviation is the parameter itself, so the
            # proposal is built in place in it. Otherwise in a buffer.
            deviations = (chunk.params if chunk.anchors is None else
                          torch._foreach_sub(chunk.params, chunk.anchors))
            dots = torch.stack(
                [flat_dot(g, d) for g, d in zip(chunk.grads, deviations)])
            deviation_norms = l2_norms(deviations)
            adam_update_foreach_(deviations, chunk.exp_avgs, denoms,
                                 neg_step_sizes)
            keeps = keep_factors(dots, deviation_norms, l2_norms(deviations),
                                 weight_decay, ratios_out)
            apply_keep(chunk.params, chunk.anchors, deviations, keeps)


def _fused_adam_spd(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                    weight_decay, eps, ratios_out=None) -> None:
    """One or two passes per tensor, per same-device, same-dtype bucket.

    Contiguous CPU float32/float64 buckets run in mmspd's compiled kernel
    (:mod:`mmspd.optim._native`): Adam, the three sums and the proposal in
    one pass, the projection in a second pass over projected tensors only.
    Other buckets (bfloat16, or no compiled kernel) are composed of torch
    ops around torch's fused Adam. Non-contiguous tensors (e.g.
    channels_last) take the foreach kernel.
    """
    hyper = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
                 weight_decay=weight_decay, ratios_out=ratios_out)
    for (device, _), bucket in lists.by_device_and_dtype().items():
        contiguous, strided = bucket.split_contiguous()
        if strided is not None:
            _multi_tensor_adam_spd(strided, **hyper)
        if contiguous is None:
            continue
        if weight_decay != 0 and _native.serves(contiguous.params):
            ratios = _native.adam_spd_step(
                *contiguous, beta1=beta1, beta2=beta2, lr=lr, eps=eps,
                weight_decay=weight_decay)
            if ratios_out is not None:
                ratios_out.append(ratios)
            continue
        for chunk in contiguous.cache_chunks(device):
            _composed_fused_adam_spd(chunk, **hyper)


def _composed_fused_adam_spd(lists: StepLists, *, amsgrad, beta1, beta2,
                             lr, weight_decay, eps, ratios_out=None) -> None:
    """Adam's part in torch's fused kernel (one pass), SPD's around it.

    For one cache-sized chunk: ``p - a`` into a scratch buffer with its dot
    and norm, the fused Adam update of ``p`` to ``q``, ``q - a`` into the
    same scratch buffer with its norm, then ``p = a + keep * (q - a)``. Only
    the fused pass and the first read of the chunk touch main memory.
    """
    params, anchors = lists.params, lists.anchors

    def fused_adam():
        fused_adam_(params, lists.grads, lists.exp_avgs, lists.exp_avg_sqs,
                    lists.max_exp_avg_sqs, lists.steps, amsgrad=amsgrad,
                    beta1=beta1, beta2=beta2, lr=lr, eps=eps)

    if weight_decay == 0:
        fused_adam()
        return
    if anchors is None:
        deviations = params  # zero anchors: p - a is p itself
    else:
        deviations = scratch_like(params)
        for p, a, d in zip(params, anchors, deviations):
            torch.sub(p, a, out=d)
    dots = torch.stack(
        [flat_dot(g, d) for g, d in zip(lists.grads, deviations)])
    deviation_norms = l2_norms(deviations)
    fused_adam()
    if anchors is not None:
        for p, a, d in zip(params, anchors, deviations):
            torch.sub(p, a, out=d)
    keeps = keep_factors(dots, deviation_norms, l2_norms(deviations),
                         weight_decay, ratios_out)
    apply_keep(params, anchors, deviations, keeps)


def _triton_adam_spd(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                     weight_decay, eps, ratios_out=None) -> None:
    """Per bucket: the Triton kernel's propose, keep factors on the device,
    its project. Tensors it does not serve (float64, non-contiguous) take
    the foreach kernel."""
    hyper = dict(beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
    for served, bucket in _triton_kernels.served_buckets(lists):
        if not served:
            _multi_tensor_adam_spd(bucket, weight_decay=weight_decay,
                                   ratios_out=ratios_out, **hyper)
        elif weight_decay == 0:  # Adam
            _triton_kernels.adam_with_pull(*bucket._replace(anchors=None),
                                           pull=0.0, **hyper)
        else:
            sums = _triton_kernels.propose(*bucket, **hyper)
            keeps = keep_factors_from_sums(sums, weight_decay, ratios_out)
            _triton_kernels.project(bucket.params, bucket.anchors, keeps)


#: this optimizer's function per kernel name (:mod:`mmspd.optim._dispatch`)
_KERNELS = dict(loop=_single_tensor_adam_spd,
                foreach=_multi_tensor_adam_spd, fused=_fused_adam_spd,
                triton=_triton_adam_spd)
