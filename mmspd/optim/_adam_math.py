"""Adam's moment updates, shared by every optimizer in :mod:`mmspd.optim`.

Both helpers update the moments in place and return what the parameter
update needs: the denominator ``sqrt(v_hat) + eps`` and the step size
``lr / (1 - beta1^t)``. They follow ``torch.optim.Adam``'s arithmetic term for
term, so a zero-strength SPD / L2-SP step reproduces Adam.

Step counters are 0-d float32 tensors kept on the host (CPU), as in
``torch.optim.Adam`` without ``capturable``: reading them never waits for an
accelerator.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def host_step_value(step: Tensor) -> float:
    """Return the value of a host-side step counter as a Python float."""
    if step.device.type != 'cpu':
        raise RuntimeError(
            f'optimizer step counters must live on the CPU, got one on '
            f'{step.device}; reading it would synchronise with the device')
    return float(step)


def adam_moments_(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                  max_exp_avg_sq: Optional[Tensor], step: float, *,
                  beta1: float, beta2: float, lr: float, eps: float,
                  amsgrad: bool) -> Tuple[Tensor, float]:
    """Update one tensor's moments; return ``(denominator, step_size)``."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    second = exp_avg_sq
    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
    return denom, lr / bias_correction1


def adam_moments_foreach_(grads: List[Tensor], exp_avgs: List[Tensor],
                          exp_avg_sqs: List[Tensor],
                          max_exp_avg_sqs: List[Tensor], steps: List[float],
                          *, beta1: float, beta2: float, lr: float,
                          eps: float,
                          amsgrad: bool) -> Tuple[List[Tensor], List[float]]:
    """Multi-tensor :func:`adam_moments_` over same-device, same-dtype lists.

    Returns the denominators and the *negated* step sizes, ready for
    ``torch._foreach_addcdiv_``.
    """
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    second = exp_avg_sqs
    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        second = max_exp_avg_sqs
    denoms = torch._foreach_sqrt(second)
    torch._foreach_div_(denoms, [math.sqrt(1 - beta2**s) for s in steps])
    torch._foreach_add_(denoms, eps)
    neg_step_sizes = [-lr / (1 - beta1**s) for s in steps]
    return denoms, neg_step_sizes
