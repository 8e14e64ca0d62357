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
from ._grouping import (group_by_device_and_dtype, split_contiguous,
                        split_for_cache)
from .adam_spd import _scratch_like
from .anchored_adam import AnchoredAdam, GroupTensors, pick_kernel

__all__ = ['AdamL2SP', 'adam_l2sp']


class AdamL2SP(AnchoredAdam):
    r"""Adam on the gradient ``g + weight_decay * (p - a)``.

    ``a`` is the parameter's anchor, with the same anchor modes, state-dict
    behaviour and checks as :class:`~mmspd.optim.AdamSPD`; with
    ``anchor='zero'`` this is Adam with classic (coupled) L2 regularisation.
    The parameter's ``.grad`` is left untouched.

    Args: as :class:`~mmspd.optim.anchored_adam.AnchoredAdam`, with
        ``weight_decay`` the L2-SP coefficient.
    """

    def _update_group(self, group: Dict, tensors: GroupTensors,
                      kernel: str) -> None:
        beta1, beta2 = group['betas']
        adam_l2sp(tensors.params, tensors.grads, tensors.exp_avgs,
                  tensors.exp_avg_sqs, tensors.max_exp_avg_sqs,
                  tensors.anchors, tensors.steps,
                  kernel=kernel,
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
    kernels = dict(loop=_single_tensor_adam_l2sp,
                   foreach=_multi_tensor_adam_l2sp, fused=_fused_adam_l2sp,
                   triton=_triton_kernels.adam_l2sp_step)
    run = pick_kernel(kernels, kernel)
    lr = kernel_lr(lr, kernel, steps)  # a tensor lr: see kernel_lr
    run(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, anchors, steps,
        amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
        weight_decay=weight_decay, eps=eps)


def _single_tensor_adam_l2sp(params, grads, exp_avgs, exp_avg_sqs,
                             max_exp_avg_sqs, anchors, steps, *, amsgrad,
                             beta1, beta2, lr, weight_decay, eps) -> None:
    for i, param in enumerate(params):
        grad = grads[i]
        if weight_decay != 0:
            pull = param if anchors is None else param - anchors[i]
            grad = grad.add(pull, alpha=weight_decay)
        denom, step_size = adam_moments_(
            grad, exp_avgs[i], exp_avg_sqs[i],
            max_exp_avg_sqs[i] if amsgrad else None, steps[i], beta1=beta1,
            beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        param.addcdiv_(exp_avgs[i], denom, value=-step_size)


def _multi_tensor_adam_l2sp(params, grads, exp_avgs, exp_avg_sqs,
                            max_exp_avg_sqs, anchors, steps, *, amsgrad,
                            beta1, beta2, lr, weight_decay, eps) -> None:
    buckets = group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs,
                                        max_exp_avg_sqs, anchors, steps)
    chunks = [
        chunk for (device, _), lists in buckets.items()
        for chunk in split_for_cache(device, lists)
    ]
    for (b_params, b_grads, b_exp_avgs, b_exp_avg_sqs, b_max_exp_avg_sqs,
         b_anchors, b_steps) in chunks:
        if weight_decay != 0:
            pulls = (b_params if b_anchors is None else
                     torch._foreach_sub(b_params, b_anchors))
            b_grads = torch._foreach_add(b_grads, pulls, alpha=weight_decay)
        denoms, neg_step_sizes = adam_moments_foreach_(
            b_grads, b_exp_avgs, b_exp_avg_sqs, b_max_exp_avg_sqs, b_steps,
            beta1=beta1, beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad)
        adam_update_foreach_(b_params, b_exp_avgs, denoms, neg_step_sizes)


def _fused_adam_l2sp(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                     anchors, steps, *, amsgrad, beta1, beta2, lr,
                     weight_decay, eps) -> None:
    """``g + lambda * (p - a)`` per cache-sized chunk, then torch's fused
    Adam kernel on it."""
    buckets = group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs,
                                        max_exp_avg_sqs, anchors, steps)
    for (device, _), bucket in buckets.items():
        lists, strided = split_contiguous(bucket)
        if strided is not None:  # torch's fused Adam needs flat layouts
            _multi_tensor_adam_l2sp(
                *strided, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
                weight_decay=weight_decay, eps=eps)
        if lists is None:
            continue
        for (b_params, b_grads, b_exp_avgs, b_exp_avg_sqs, b_max_exp_avg_sqs,
             b_anchors, b_steps) in split_for_cache(device, lists):
            if weight_decay != 0:
                pulled = _scratch_like(b_params)
                for g, p, out, i in zip(b_grads, b_params, pulled,
                                        range(len(b_params))):
                    pull = p if b_anchors is None else p - b_anchors[i]
                    torch.add(g, pull, alpha=weight_decay, out=out)
                b_grads = pulled
            fused_adam_(b_params, b_grads, b_exp_avgs, b_exp_avg_sqs,
                        b_max_exp_avg_sqs, b_steps, amsgrad=amsgrad,
                        beta1=beta1, beta2=beta2, lr=lr, eps=eps)
