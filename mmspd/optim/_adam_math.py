"""Adam's moment updates, shared by every optimizer in :mod:`mmspd.optim`.

Both helpers update the moments in place and return what the parameter
update needs: the denominator ``sqrt(v_hat) + eps`` and the step size
``lr / (1 - beta1^t)``. They follow ``torch.optim.Adam``'s arithmetic term for
term, so a zero-strength SPD / L2-SP step reproduces Adam.

Step counters are 0-d float32 tensors kept on the host (CPU), as in
``torch.optim.Adam`` without ``capturable``: reading them never waits for an
accelerator. With ``capturable`` they stay on the parameters' device and the
foreach helpers compute the bias corrections there.
"""
import math
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor


def kernel_lr(lr: Union[float, Tensor], kernel: str,
              steps: List[Union[float, Tensor]]) -> Union[float, Tensor]:
    """The learning rate as ``kernel`` takes it.

    A 0-d tensor ``lr`` (as ``torch.optim.Adam`` allows, so that a captured
    CUDA graph follows a schedule that writes into it) stays a tensor for
    the kernels that compute the step size on the device: ``'triton'``, and
    ``'foreach'`` with counter tensors (``capturable``). The others take its
    value: free for a CPU tensor, a device read for an accelerator's.
    """
    if not isinstance(lr, Tensor):
        return lr
    if kernel == 'triton' or (kernel == 'foreach' and steps
                              and isinstance(steps[0], Tensor)):
        return lr
    return float(lr.detach())


def adam_moments_(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                  max_exp_avg_sq: Optional[Tensor], step: float, *,
                  beta1: float, beta2: float, lr: Union[float, Tensor],
                  eps: float, amsgrad: bool) -> Tuple[Tensor, float]:
    """Update one tensor's moments; return ``(denominator, step_size)``."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    second = exp_avg_sq
    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    if isinstance(lr, Tensor):
        lr = float(lr.detach())
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
    return denom, lr / bias_correction1


def adam_moments_foreach_(grads: List[Tensor], exp_avgs: List[Tensor],
                          exp_avg_sqs: List[Tensor],
                          max_exp_avg_sqs: List[Tensor],
                          steps: List[Union[float, Tensor]], *, beta1: float,
                          beta2: float, lr: Union[float, Tensor], eps: float,
                          amsgrad: bool
                          ) -> Tuple[List[Tensor], Optional[List[float]]]:
    """Multi-tensor :func:`adam_moments_` over same-device, same-dtype lists.

    Returns the denominators and the *negated* step sizes, ready for
    :func:`adam_update_foreach_`. With ``steps`` as counter tensors
    (``capturable``) the bias corrections are computed on the device, the
    step sizes are folded into the denominators (``denom / -step_size``)
    and ``None`` is returned in their place: nothing is read on the host.
    """
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    second = exp_avg_sqs
    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        second = max_exp_avg_sqs
    denoms = torch._foreach_sqrt(second)
    if steps and isinstance(steps[0], Tensor):
        # -step_size = lr / (beta1^t - 1); sqrt(1 - beta2^t), as tensors in
        # the parameters' dtype (float32 counters would round float64 ones)
        if steps[0].dtype != denoms[0].dtype:
            steps = [s.to(denoms[0].dtype) for s in steps]
        neg_step_sizes = torch._foreach_pow(beta1, steps)
        torch._foreach_sub_(neg_step_sizes, 1)
        if isinstance(lr, Tensor):  # read on the device, not the host
            lr = lr.detach().to(device=denoms[0].device,
                                dtype=denoms[0].dtype, non_blocking=True)
        torch._foreach_div_(neg_step_sizes, lr)
        torch._foreach_reciprocal_(neg_step_sizes)
        bias2_sqrts = torch._foreach_pow(beta2, steps)
        torch._foreach_neg_(bias2_sqrts)
        torch._foreach_add_(bias2_sqrts, 1)
        torch._foreach_sqrt_(bias2_sqrts)
        torch._foreach_div_(denoms, bias2_sqrts)
        torch._foreach_add_(denoms, eps)
        torch._foreach_div_(denoms, neg_step_sizes)
        return denoms, None
    if isinstance(lr, Tensor):
        lr = float(lr.detach())
    torch._foreach_div_(denoms, [math.sqrt(1 - beta2**s) for s in steps])
    torch._foreach_add_(denoms, eps)
    neg_step_sizes = [-lr / (1 - beta1**s) for s in steps]
    return denoms, neg_step_sizes


def adam_update_foreach_(targets: List[Tensor], exp_avgs: List[Tensor],
                         denoms: List[Tensor],
                         neg_step_sizes: Optional[List[float]]) -> None:
    """``target -= step_size * m / denom`` per tensor, with what
    :func:`adam_moments_foreach_` returned."""
    if neg_step_sizes is None:  # folded into the denominators
        torch._foreach_addcdiv_(targets, exp_avgs, denoms)
    else:
        torch._foreach_addcdiv_(targets, exp_avgs, denoms, neg_step_sizes)


def fused_adam_(params: List[Tensor], grads: List[Tensor],
                exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
                max_exp_avg_sqs: Optional[List[Tensor]], steps: List[float],
                *, amsgrad: bool, beta1: float, beta2: float, lr: float,
                eps: float) -> None:
    """Plain Adam over same-device, same-dtype contiguous lists in torch's
    fused kernel (one pass), with host step counts (after the increment)."""
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs,
                       max_exp_avg_sqs if amsgrad else [],
                       [torch.tensor(float(s)) for s in steps],
                       amsgrad=amsgrad, lr=lr, beta1=beta1, beta2=beta2,
                       weight_decay=0.0, eps=eps, maximize=False)
