"""Checks of the hyper-parameters of :class:`~mmspd.optim.AnchoredAdam`'s
groups: each invalid value is a ``ValueError`` that names it and what was
expected."""
import math
import numbers
from typing import Any, Dict, Optional

import torch
from torch import Tensor

#: The values the ``anchor`` option of a parameter group may take.
ANCHOR_MODES = ('init', 'zero')


#: Names accepted for ``anchor_dtype`` (a ``torch.dtype`` works as well).
ANCHOR_DTYPES = ('float32', 'float64', 'bfloat16', 'float16')


def resolve_dtype(value: Any) -> Optional[torch.dtype]:
    """``torch.dtype`` for an ``anchor_dtype`` value; ``None`` if invalid."""
    if isinstance(value, str):
        value = value[len('torch.'):] if value.startswith('torch.') else value
        return getattr(torch, value) if value in ANCHOR_DTYPES else None
    if isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    return None


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_hyperparameters(group: Dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming the first invalid hyper-parameter."""
    lr = group['lr']
    if isinstance(lr, Tensor):
        if lr.dim() != 0 or not lr.is_floating_point():
            raise ValueError(f'Invalid learning rate lr={lr!r} in {where}: '
                             f'expected a 0-d floating-point tensor (or a '
                             f'number)')
        # read once per group, not per step (a meta tensor has no value)
        value = 0.0 if lr.is_meta else float(lr.detach())
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f'Invalid learning rate lr={lr!r} in {where}: '
                             f'expected a finite value >= 0')
    elif not (_is_real(lr) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f'Invalid learning rate lr={lr!r} in {where}: '
                         f'expected a finite number >= 0 or a 0-d tensor')
    eps = group['eps']
    if not (_is_real(eps) and math.isfinite(eps) and eps > 0):
        raise ValueError(f'Invalid eps={eps!r} in {where}: expected a finite '
                         f'number > 0 (it keeps m / sqrt(v) finite where '
                         f'v == 0)')
    betas = group['betas']
    if (isinstance(betas, (str, bytes)) or not hasattr(betas, '__len__')
            or len(betas) != 2):
        raise ValueError(f'Invalid betas={betas!r} in {where}: expected a '
                         f'pair (beta1, beta2)')
    for i, beta in enumerate(betas):
        if not (_is_real(beta) and 0.0 <= beta < 1.0):
            raise ValueError(f'Invalid beta{i + 1}={beta!r} in {where}: '
                             f'expected a number in [0, 1)')
    decay = group['weight_decay']
    if not (_is_real(decay) and math.isfinite(decay) and decay >= 0):
        raise ValueError(f'Invalid weight_decay={decay!r} in {where}: '
                         f'expected a finite number >= 0')
    decoupled = group['decoupled_decay']
    if not (_is_real(decoupled) and math.isfinite(decoupled)
            and decoupled >= 0):
        raise ValueError(f'Invalid decoupled_decay={decoupled!r} in {where}:'
                         f' expected a finite number >= 0 (AdamW\'s weight '
                         f'decay; 0 turns it off)')
    anchor = group['anchor']
    if anchor not in ANCHOR_MODES:
        raise ValueError(f'Invalid anchor={anchor!r} in {where}: expected '
                         f'one of {", ".join(map(repr, ANCHOR_MODES))}')
    anchor_dtype = group['anchor_dtype']
    if anchor_dtype is not None and resolve_dtype(anchor_dtype) is None:
        raise ValueError(f'Invalid anchor_dtype={anchor_dtype!r} in {where}: '
                         f'expected None (the parameter\'s dtype) or one of '
                         f'{", ".join(ANCHOR_DTYPES)}')
    if not isinstance(group['amsgrad'], bool):
        raise ValueError(f'Invalid amsgrad={group["amsgrad"]!r} in {where}: '
                         f'expected True or False')
    for flag in ('foreach', 'fused'):
        if group[flag] not in (None, True, False):
            raise ValueError(f'Invalid {flag}={group[flag]!r} in {where}: '
                             f'expected None, True or False')
    if group['fused'] and group['foreach'] is False:
        raise ValueError(f'fused=True and foreach=False in {where} ask for '
                         f'two different kernels: choose one')
    capturable = group['capturable']
    if not isinstance(capturable, bool):
        raise ValueError(f'Invalid capturable={capturable!r} in {where}: '
                         f'expected True or False')
    if capturable and (group['fused'] or group['foreach'] is False):
        chosen = 'fused=True' if group['fused'] else 'foreach=False'
        raise ValueError(f'capturable=True and {chosen} in {where}: a '
                         f'capturable step runs on the foreach kernel (the '
                         f'fused CPU kernel and the reference loop keep step '
                         f'counters on the host); leave fused/foreach unset')
