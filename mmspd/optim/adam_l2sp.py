"""AdamL2SP: Adam with the L2-SP penalty, the baseline SPD is compared with.

L2-SP (Li, Grandvalet, Davoine; ICML 2018) adds
``weight_decay / 2 * |p - a|^2`` to the loss, i.e. ``weight_decay * (p - a)``
to every gradient, every step, before Adam's moments.
"""
from typing import Dict, List, Optional, Union

import torch
from torch import Tensor

from . import _triton_kernels
from ._adam_math import (adam_moments_, adam_moments_foreach_,
                         adam_update_foreach_, fused_adam_, kernel_lr)
from ._dispatch import pick_kernel
from ._grouping import scratch_like
from ._step_lists import StepLists
from .anchored_adam import AnchoredAdam, GroupTensors

__all__ = ['AdamL2SP', 'adam_l2sp']


class AdamL2SP(AnchoredAdam):
    r"""Adam on the gradient ``g + weight_decay * (p - a)``.

    ``a`` is the parameter's anchor, with the same anchor modes, state-dict
    behaviour and checks as :class:`~mmspd.optim.AdamSPD`; with
    ``anchor='zero'`` this is Adam with classic (coupled) L2 regularisation.
    A group's ``decoupled_decay`` (default 0) adds AdamW's decoupled decay,
    ``p <- p * (1 - lr * decoupled_decay)`` before the update.
    The parameter's ``.grad`` is left untouched.

    Args: as :class:`~mmspd.optim.anchored_adam.AnchoredAdam`, with
        ``weight_decay`` the L2-SP coefficient.
    """

    def _update_group(self, group: Dict, tensors: GroupTensors,
                      kernel: str) -> None:
        beta1, beta2 = group['betas']
        adam_l2sp(*tensors.lists, kernel=kernel,
                  amsgrad=group['amsgrad'], beta1=beta1, beta2=beta2,
                  lr=group['lr'], weight_decay=group['weight_decay'],
                  eps=group['eps'])


def adam_l2sp(params: List[Tensor], grads: List[Tensor],
              exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
              max_exp_avg_sqs: Optional[List[Tensor]],
              anchors: Optional[List[Tensor]],
              steps: List[Union[float, Tensor]], *, kernel: str,
              amsgrad: bool, beta1: float, beta2: float, lr: float,
              weight_decay: float, eps: float) -> None:
    """Functional AdamL2SP step; arguments as :func:`mmspd.optim.adam_spd`."""
    run = pick_kernel(_KERNELS, kernel)
    lists = StepLists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                      anchors, steps).for_amsgrad(amsgrad)
    run(lists, amsgrad=amsgrad, beta1=beta1, beta2=beta2,
        lr=kernel_lr(lr, kernel, steps),  # a tensor lr: see kernel_lr
        weight_decay=weight_decay, eps=eps)


def _single_tensor_adam_l2sp(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                             weight_decay, eps) -> None:
    """The reference: tensor by tensor, as the math is written."""
    for i, param in enumerate(lists.params):
        grad = lists.grads[i]
        if weight_decay != 0:
            pull = param if lists.anchors is None else param - lists.anchors[i]
            grad = grad.add(pull, alpha=weight_decay)
        denom, step_size = adam_moments_(
            grad, lists.exp_avgs[i], lists.exp_avg_sqs[i],
            lists.max_exp_avg_sqs[i] if amsgrad else None, lists.steps[i],
            beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        param.addcdiv_(lists.exp_avgs[i], denom, value=-step_size)


def _multi_tensor_adam_l2sp(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                            weight_decay, eps) -> None:
    """Multi-tensor ops per device and dtype (cache-sized chunks on CPU)."""
    for (device, _), bucket in lists.by_device_and_dtype().items():
        for chunk in bucket.cache_chunks(device):
            grads = chunk.grads
            if weight_decay != 0:
                pulls = (chunk.params if chunk.anchors is None else
                         torch._foreach_sub(chunk.params, chunk.anchors))
                grads = torch._foreach_add(grads, pulls, alpha=weight_decay)
            denoms, neg_step_sizes = adam_moments_foreach_(
                grads, chunk.exp_avgs, chunk.exp_avg_sqs,
                chunk.max_exp_avg_sqs, chunk.steps, beta1=beta1,
                beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
            adam_update_foreach_(chunk.params, chunk.exp_avgs, denoms,
                                 neg_step_sizes)


def _fused_adam_l2sp(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                     weight_decay, eps) -> None:
    """``g + lambda * (p - a)`` per cache-sized chunk, then torch's fused
    Adam kernel on it (non-contiguous tensors: the foreach kernel)."""
    hyper = dict(amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, eps=eps)
    for (device, _), bucket in lists.by_device_and_dtype().items():
        contiguous, strided = bucket.split_contiguous()
        if strided is not None:  # torch's fused Adam needs flat layouts
            _multi_tensor_adam_l2sp(strided, weight_decay=weight_decay,
                                    **hyper)
        if contiguous is None:
            continue
        for chunk in contiguous.cache_chunks(device):
            grads = chunk.grads
            if weight_decay != 0:
                grads = scratch_like(chunk.params)
                for i, (g, p, out) in enumerate(
                        zip(chunk.grads, chunk.params, grads)):
                    pull = p if chunk.anchors is None else p - chunk.anchors[i]
                    torch.add(g, pull, alpha=weight_decay, out=out)
            fused_adam_(chunk.params, grads, chunk.exp_avgs,
                        chunk.exp_avg_sqs, chunk.max_exp_avg_sqs, chunk.steps,
                        **hyper)


def _triton_adam_l2sp(lists: StepLists, *, amsgrad, beta1, beta2, lr,
                      weight_decay, eps) -> None:
    """The Triton kernel's one pass per bucket it serves; the foreach
    kernel for the rest (float64, non-contiguous)."""
    hyper = dict(beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
    for served, bucket in _triton_kernels.served_buckets(lists):
        if served:
            _triton_kernels.adam_with_pull(*bucket, pull=weight_decay,
                                           **hyper)
        else:
            _multi_tensor_adam_l2sp(bucket, weight_decay=weight_decay,
                                    **hyper)


#: this optimizer's function per kernel name (:mod:`mmspd.optim._dispatch`)
_KERNELS = dict(loop=_single_tensor_adam_l2sp,
                foreach=_multi_tensor_adam_l2sp, fused=_fused_adam_l2sp,
                triton=_triton_adam_l2sp)
