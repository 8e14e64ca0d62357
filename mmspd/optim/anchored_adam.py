"""Base class for Adam variants that pull parameters toward an anchor.

:class:`AnchoredAdam` owns everything :class:`~mmspd.optim.AdamSPD` and
:class:`~mmspd.optim.AdamL2SP` share: hyper-parameter checks, the per-group
``anchor`` option, lazily captured anchors stored in the optimizer state, and
state-dict loading that never re-captures or silently mis-matches an anchor.
Subclasses implement one method, :meth:`AnchoredAdam._update_group`.

Anchor modes (the ``anchor`` key of every parameter group):

``'init'`` (default)
    The anchor is the value the parameter has at the first :meth:`step` that
    updates it, kept in ``optimizer.state[p]['anchor']``. Capturing lazily
    (not in ``__init__``) means that weights loaded after the optimizer was
    built, as mmengine's Runner does with ``init_cfg``/``load_from``, become
    the anchors. The anchors are saved by :meth:`state_dict` and restored by
    :meth:`load_state_dict`; they are never re-captured after a load.
``'zero'``
    The anchor is 0 and nothing is stored: for PEFT modules (LoRA, adapters)
    and new layers whose pretrained value is zero or meaningless.

Decoupled weight decay (the ``decoupled_decay`` option of every group,
default 0: off): before the group's Adam / SPD / L2-SP update, every
parameter it steps is shrunk toward zero as ``torch.optim.AdamW`` does,
``p <- p * (1 - lr * decoupled_decay)``. It is for modules without a
pretrained value (a detector's neck and heads) that a recipe trains with
AdamW's decay while the backbone is pulled toward its anchors: with SPD's
lambda 0 (or L2-SP's coefficient 0), ``anchor='zero'`` and
``decoupled_decay=w`` a group is stepped exactly as ``AdamW(weight_decay=w)``
steps it. With a non-zero lambda as well, the pull toward the anchor acts
on the decayed parameter.
"""
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._adam_math import kernel_lr
from ._dispatch import select_kernel
from ._dtensor import (SHARDING_ADVICE, ShardedSums, check_dtensor_step,
                       flat_sharding_refusal, is_dtensor, local_tensor)
from ._hyperparameters import (ANCHOR_MODES, check_hyperparameters,
                               resolve_dtype)
from ._step_lists import StepLists

__all__ = ['AnchoredAdam', 'ANCHOR_MODES', 'GroupTensors']

def anchor_of(p: Tensor, group: Dict[str, Any]) -> Tensor:
    """A new anchor tensor for ``p``: its current value, in the group's
    ``anchor_dtype`` (default: the parameter's dtype)."""
    dtype = group.get('anchor_dtype')
    dtype = p.dtype if dtype is None else resolve_dtype(dtype)
    return p.detach().to(dtype=dtype, copy=True,
                         memory_format=torch.preserve_format)


def _decay_decoupled(group: Dict[str, Any], lists: StepLists,
                     kernel: str) -> None:
    """AdamW's ``p <- p * (1 - lr * decoupled_decay)`` on the tensors that
    ``kernel`` is about to step (local shards of DTensors: the product is
    elementwise). A tensor ``lr`` stays on the device where ``kernel``
    reads it there (:func:`~mmspd.optim._adam_math.kernel_lr`)."""
    decay = group['decoupled_decay']
    if decay == 0:
        return
    lr = kernel_lr(group['lr'], kernel, lists.steps)
    if not isinstance(lr, Tensor):
        torch._foreach_mul_(lists.params, 1 - lr * decay)
        return
    factor = 1 - lr.detach() * decay  # in lr's dtype, as torch's AdamW
    for (device, _), bucket in lists.by_device_and_dtype().items():
        torch._foreach_mul_(bucket.params,
                            factor.to(device=device, non_blocking=True))


class GroupTensors:
    """What one parameter group brings to one step.

    ``lists`` are the tensors that take part (the local shards of
    DTensors), ``shards`` says how their per-tensor sums are added up over
    the shards (``None``: whole tensors).
    """

    def __init__(self, lists: StepLists,
                 shards: Optional[ShardedSums] = None) -> None:
        self.lists = lists
        self.shards = shards


class AnchoredAdam(Optimizer):
    """Adam plus an anchor per parameter; see the module docstring.

    Args:
        params: parameters or parameter-group dicts.
        lr: learning rate (>= 0): a number, or a 0-d tensor (as
            ``torch.optim.Adam``) that capturable steps and the CUDA kernel
            read on the device, so a captured CUDA graph follows values
            written into it.
        betas: Adam's moment coefficients, each in [0, 1).
        eps: term added to the denominator (> 0).
        weight_decay: strength of the pull toward the anchor (>= 0); its
            meaning is the subclass's (lambda for SPD, the L2-SP coefficient).
        amsgrad: use the running maximum of the second moment.
        anchor: default anchor mode of the groups, one of
            :data:`ANCHOR_MODES`.
        anchor_dtype: dtype the anchors are stored in (``None``: the
            parameter's). ``'bfloat16'`` halves the anchors' memory (state
            2.5x instead of 3x the float32 parameter bytes) at the cost of
            rounding the anchor to 8 bits of mantissa (docs/anchors.md). It
            must be one the parameter's dtype contains (a wider one is an
            error at the first step: it would cost memory for nothing).
        decoupled_decay: AdamW's decoupled weight decay (>= 0, default 0:
            none): ``p <- p * (1 - lr * decoupled_decay)`` before the
            update, toward zero whatever the anchor (see the module
            docstring). Usually set per group, for modules that have no
            pretrained value.
        foreach: ``False`` selects the per-tensor reference loop.
        fused: ``None`` (default) uses mmspd's compiled kernel for CPU
            tensors it serves and the multi-tensor ``torch._foreach_*``
            path elsewhere (CUDA included); ``True`` requires a fused
            kernel (CPU: the compiled one; CUDA: mmspd's Triton kernel,
            which is opt-in), ``False`` forbids it. All paths give the
            same numbers (to float32 rounding); see
            :mod:`mmspd.optim._dispatch`.
        capturable: keep each step counter as a tensor on its parameter's
            device and compute the bias corrections there (as
            ``torch.optim.Adam(capturable=True)``), so that a step can be
            captured in a CUDA graph and replayed; runs the foreach
            kernel.
            Without it the counters live on the host (no device reads
            either way: a step never synchronises).

    Parameters may be float32, float64 or bfloat16 (the per-tensor sums are
    accumulated in float32). float16 parameters share ``torch.optim.Adam``'s
    limit: ``(1 - beta2) * g^2`` underflows, so ``m / (sqrt(v) + eps)``
    overflows; train with mixed precision (float32 master weights) instead.
    """

    def __init__(self,
                 params: Iterable,
                 lr: float = 1e-3,
                 betas=(0.9, 0.999),
                 eps: float = 1e-8,
                 weight_decay: float = 0.0,
                 amsgrad: bool = False,
                 *,
                 anchor: str = 'init',
                 foreach: Optional[bool] = None,
                 fused: Optional[bool] = None,
                 capturable: bool = False,
                 anchor_dtype=None,
                 decoupled_decay: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad,
                        anchor=anchor, foreach=foreach, fused=fused,
                        capturable=capturable, anchor_dtype=anchor_dtype,
                        decoupled_decay=decoupled_decay)
        check_hyperparameters(defaults, f'{type(self).__name__} arguments')
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    # Run eagerly under torch.compile, as torch's own optimizers do: traced,
    # dynamo's reads of param_groups would write capturable=True into the
    # real groups of CUDA parameters.
    @torch._disable_dynamo
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group (as ``torch.optim.Optimizer``) and validate it."""
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        try:
            check_hyperparameters(self.param_groups[index],
                                  f'parameter group {index}')
            self._refuse_flat_sharding(self.param_groups[index]['params'])
        except ValueError:
            self.param_groups.pop()
            raise

    def _refuse_flat_sharding(self, params: List[Tensor]) -> None:
        for p in params:
            reason = flat_sharding_refusal(p)
            if reason is not None:
                raise ValueError(
                    f'{type(self).__name__} cannot step a parameter of shape '
                    f'{tuple(p.shape)} exactly: {reason}, while its '
                    f'decision needs sums over the whole tensor. '
                    f'{SHARDING_ADVICE[0].upper()}{SHARDING_ADVICE[1:]}.')

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            # State dicts written before a key existed still load.
            group.setdefault('anchor', 'init')
            group.setdefault('amsgrad', False)
            group.setdefault('foreach', None)
            group.setdefault('fused', None)
            group.setdefault('capturable', False)
            group.setdefault('anchor_dtype', None)
            group.setdefault('decoupled_decay', 0.0)

    # ----------------------------------------------------------------- anchors
    @torch.no_grad()
    def reset_anchors(self) -> int:
        """Take the current weights as the anchors of every ``'init'`` group.

        For users who load weights after training started (the usual mmengine
        path does not need this: anchors are captured lazily at the first
        step). Parameters that were never stepped capture their anchor at
        their first step as usual. Returns the number of anchors re-taken.
        """
        count = 0
        for group in self.param_groups:
            if group['anchor'] != 'init':
                continue
            for p in group['params']:
                state = self.state.get(p)
                if state:
                    state['anchor'] = anchor_of(p, group)
                    count += 1
        return count

    # -------------------------------------------------------------- state dict
    @torch._disable_dynamo  # eagerly under torch.compile: see add_param_group
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load as ``torch.optim.Optimizer`` does, after checking anchors.

        Hyper-parameters come from the saved groups (as in torch), except
        the anchor mode: each group keeps the mode this optimizer was built
        with, which describes its parameters (a state dict of an ``'init'``
        run loaded into a ``'zero'`` group drops the stored anchors, with a
        warning). Raises ``ValueError`` (before changing anything) when a
        saved anchor's shape differs from its parameter's, or when an
        ``'init'`` parameter has state but no anchor (e.g. a state dict of
        another optimizer): re-capturing it from the current, already
        fine-tuned weights would be silently wrong.
        """
        self._check_saved_anchors(state_dict)
        modes = [group['anchor'] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, mode in zip(self.param_groups, modes):
            group['anchor'] = mode
            for p in group['params']:
                state = self.state.get(p)
                if not state:
                    continue
                # Keep step counters on the host: see _adam_math.
                step = state.get('step')
                if isinstance(step, Tensor):
                    state['step'] = step.detach().to('cpu', torch.float32)
                else:
                    state['step'] = torch.tensor(float(step),
                                                 dtype=torch.float32)
                anchor_dtype = group.get('anchor_dtype')
                if anchor_dtype is not None and 'anchor' in state:
                    # torch casts state to the parameter's dtype: undo that
                    state['anchor'] = state['anchor'].to(
                        resolve_dtype(anchor_dtype))
                if group['anchor'] == 'zero' and 'anchor' in state:
                    warnings.warn(
                        'a stored anchor was dropped because its parameter '
                        "is in an anchor='zero' group", stacklevel=2)
                    del state['anchor']

    def _check_saved_anchors(self, state_dict: Dict[str, Any]) -> None:
        saved_groups = state_dict.get('param_groups', [])
        saved_state = state_dict.get('state', {})
        for group, saved_group in zip(self.param_groups, saved_groups):
            mode = group['anchor']
            for p, index in zip(group['params'], saved_group['params']):
                state = saved_state.get(index)
                if not state:
                    continue
                anchor = state.get('anchor')
                if anchor is None:
                    if mode == 'init':
                        raise ValueError(
                            f'Cannot load optimizer state: parameter {index} '
                            f"has state but no anchor although its group "
                            f"uses anchor='init' (a state dict of another "
                            f'optimizer?); its pretrained anchor cannot be '
                            f'recovered from the current weights')
                elif tuple(anchor.shape) != tuple(p.shape):
                    raise ValueError(
                        f'Cannot load optimizer state: the anchor of '
                        f'parameter {index} has shape {tuple(anchor.shape)} '
                        f'but the parameter has shape {tuple(p.shape)}')

    # -------------------------------------------------------------------- step
    def _init_state(self, p: Tensor, group: Dict[str, Any]) -> None:
        state = self.state[p]
        state['step'] = torch.zeros(
            (), dtype=torch.float32,
            device=p.device if group['capturable'] else 'cpu')
        state['exp_avg'] = torch.zeros_like(
            p, memory_format=torch.preserve_format)
        state['exp_avg_sq'] = torch.zeros_like(
            p, memory_format=torch.preserve_format)
        if group['amsgrad']:
            state['max_exp_avg_sq'] = torch.zeros_like(
                p, memory_format=torch.preserve_format)
        if group['anchor'] == 'init':
            state['anchor'] = anchor_of(p, group)

    def _check_group(self, group: Dict[str, Any], first_index: int) -> str:
        """Raise if any parameter of ``group`` cannot be stepped; return
        the kernel (:func:`select_kernel`) that steps it."""
        name = type(self).__name__
        anchor_dtype = resolve_dtype(group['anchor_dtype'])  # None: none
        for offset, p in enumerate(group['params']):
            if p.grad is None:
                continue
            index = first_index + offset
            if p.grad.is_sparse:
                raise RuntimeError(f'{name} does not support sparse '
                                   f'gradients (parameter {index}); use a '
                                   f'dense gradient or torch.optim.SparseAdam')
            if torch.is_complex(p):
                raise RuntimeError(f'{name} does not support complex '
                                   f'parameters (parameter {index})')
            if group['anchor'] == 'init' and anchor_dtype is not None and \
                    torch.promote_types(p.dtype, anchor_dtype) != p.dtype:
                raise ValueError(
                    f"{name}: anchor_dtype={group['anchor_dtype']!r} does "
                    f'not fit in the dtype of parameter {index} '
                    f'({p.dtype}): anchors are captured from the '
                    f'parameters, so a wider type costs memory for no '
                    f'precision; use anchor_dtype=None (the parameter\'s '
                    f'dtype) or a narrower one')
            state = self.state.get(p)
            check_dtensor_step(p, index, state or {}, name)
            if group['anchor'] == 'init' and state and 'anchor' not in state:
                raise RuntimeError(
                    f"{name}: parameter {index} is in an anchor='init' "
                    f'group but has optimizer state without an anchor '
                    f"(was its group switched from anchor='zero'?); "
                    f'call reset_anchors() to anchor it at its current '
                    f'value')
        # raises if fused=True cannot be honoured; the kernels see shards
        return select_kernel(group, [
            local_tensor(p) for p in group['params'] if p.grad is not None])

    def _gather(self, group: Dict[str, Any]) -> GroupTensors:
        """Collect (creating state) the group's parameters with a gradient.

        Increments their step counters; call :meth:`_check_group` first.
        """
        capturable = group['capturable']
        amsgrad, anchored = group['amsgrad'], group['anchor'] == 'init'
        stepped: List[Tensor] = []
        states: List[Dict[str, Any]] = []
        step_counters: List[Tensor] = []
        for p in group['params']:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                self._init_state(p, group)
            if amsgrad and 'max_exp_avg_sq' not in state:
                state['max_exp_avg_sq'] = torch.zeros_like(
                    p, memory_format=torch.preserve_format)
            step = state['step']
            if (step.device != p.device if capturable else not step.is_cpu):
                # the group's capturable setting changed since the state
                # was made (or loaded): move the counter once
                step = state['step'] = step.to(
                    p.device if capturable else 'cpu')
            step_counters.append(step)
            stepped.append(p)
            states.append(state)

        def local(key: str) -> List[Tensor]:
            return [local_tensor(state[key]) for state in states]

        steps: List = []
        if step_counters:
            torch._foreach_add_(step_counters, 1)
            # host counters (moved there above): one read for the group
            steps = (step_counters if capturable else
                     torch.stack(step_counters).tolist())
        lists = StepLists(
            params=[local_tensor(p) for p in stepped],
            grads=[local_tensor(p.grad) for p in stepped],
            exp_avgs=local('exp_avg'), exp_avg_sqs=local('exp_avg_sq'),
            max_exp_avg_sqs=local('max_exp_avg_sq') if amsgrad else None,
            anchors=local('anchor') if anchored else None, steps=steps)
        return GroupTensors(lists, self._sharded_sums(group, stepped))

    def _sharded_sums(self, group: Dict[str, Any],
                      stepped: List[Tensor]) -> Optional[ShardedSums]:
        """How to reduce this step's per-tensor sums of ``group`` over the
        shards (``None`` when no parameter of the group is a DTensor). Its
        layout covers every parameter of the group, stepped here or not;
        made once per group and set of stepped parameters, then reused."""
        params = group['params']
        if not any(map(is_dtensor, params)):
            return None
        # kept on the optimizer, not in the group: it holds process groups,
        # which state dicts and pickles must not carry
        plans = self.__dict__.setdefault('_sharded_sums_cache', {})
        stepped_ids = set(map(id, stepped))
        positions = tuple(i for i, p in enumerate(params)
                          if id(p) in stepped_ids)
        key = (tuple(map(id, params)), positions)
        cached = plans.get(id(group))
        if cached is None or cached[0] != key:
            cached = plans[id(group)] = (key, ShardedSums(params, positions))
        return cached[1]

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        """Perform one optimisation step; return the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first_indices, first_index = [], 0
        for group in self.param_groups:
            first_indices.append(first_index)
            first_index += len(group['params'])
        # Check everything before touching any state, so that an error
        # leaves the optimizer exactly as it was.
        kernels = [
            self._check_group(group, first_index)
            for group, first_index in zip(self.param_groups, first_indices)
        ]
        for group, kernel in zip(self.param_groups, kernels):
            tensors = self._gather(group)
            # a sharded group takes part even with nothing to step here:
            # its rows are in every process's all-reduce
            if tensors.lists.params:
                _decay_decoupled(group, tensors.lists, kernel)
            if tensors.lists.params or tensors.shards is not None:
                self._update_group(group, tensors, kernel)
        self._finish_step()
        return loss

    def _finish_step(self) -> None:
        """Called once after every group's :meth:`_update_group`: where a
        subclass completes what it batched over the groups."""

    def _update_group(self, group: Dict[str, Any], tensors: GroupTensors,
                      kernel: str) -> None:
        """Apply one step to ``tensors`` with ``group``'s hyper-parameters
        on ``kernel`` (one of :data:`mmspd.optim._dispatch.KERNELS`)."""
        raise NotImplementedError
