"""Refuse, before anything is built, configs that would shard AdamSPD /
AdamL2SP in a way that hides tensor boundaries.

SPD decides per whole tensor (see :mod:`mmspd.optim._dtensor`). mmengine's
``FSDPStrategy`` (FSDP1 flat parameters) and ``DeepSpeedStrategy`` with a
ZeRO stage >= 1 (flat partitions of the optimizer state) give the optimizer
slices of tensors: its sums would cover only a slice, silently another
algorithm. The optimizer itself refuses FSDP1 and ZeRO-3 parameters when it
is built; ZeRO-1/2 replace its parameters by flat partitions only after.
So the refusal runs twice, both times before anything is trained:

- :func:`refuse_flat_sharding` on the config, in mmspd's ``build_runner``
  (before the Runner exists);
- in mmengine's ``DeepSpeedStrategy`` itself, which ``import mmspd``
  replaces by :class:`DeepSpeedStrategy` (the same class plus the check,
  registered under the same name), when it builds the optimizer: every
  path to a DeepSpeed run (``FlexibleRunner.from_cfg``, other projects'
  ``train.py``, mim) goes through it.

The ZeRO stage is read as DeepSpeed reads it: ``config`` (a dict or the
path of a JSON file), with the strategy's ``zero_optimization`` option on
top.
"""
import json
from typing import Any, Iterator, Optional

from mmengine._strategy.deepspeed import DeepSpeedStrategy as _DeepSpeed
from mmengine.config import Config
from mmengine.optim import BaseOptimWrapper
from mmengine.registry import STRATEGIES
from torch.optim import Optimizer

from mmspd.optim import AnchoredAdam

#: Optimizers whose step needs whole-tensor sums (SPD) or whose state must
#: stay per tensor (anchors of L2-SP).
ANCHORED_OPTIMIZERS = ('AdamSPD', 'AdamL2SP')


def _optimizer_types(optim_wrapper) -> Iterator[str]:
    """Optimizer type names in an ``optim_wrapper`` config (one wrapper, or
    an ``OptimWrapperDict``-style dict of wrappers)."""
    if not isinstance(optim_wrapper, dict):
        return
    optimizer = optim_wrapper.get('optimizer')
    if isinstance(optimizer, dict):
        kind = optimizer.get('type')
        yield kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        return
    for value in optim_wrapper.values():
        if isinstance(value, dict) and 'optimizer' in value:
            yield from _optimizer_types(value)


def _strategy_type(strategy) -> str:
    kind = strategy.get('type', '') if isinstance(strategy, dict) else ''
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '')


def deepspeed_zero_stage(config: Any, zero_optimization: Any = None) -> int:
    """The ZeRO stage DeepSpeed would run with: ``config`` (``None``, a
    dict, or the path of a JSON file) merged with the strategy's
    ``zero_optimization`` option, as ``DeepSpeedStrategy`` merges them.
    Raises ``ValueError`` naming the file or value it cannot read."""
    if isinstance(config, str):
        try:
            with open(config) as f:
                config = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f'Cannot read the DeepSpeed configuration '
                             f'{config!r}: {error}') from error
    merged = dict(config or {})
    if zero_optimization is not None:
        merged['zero_optimization'] = zero_optimization
    zero = merged.get('zero_optimization') or {}
    if not isinstance(zero, dict):
        raise ValueError(f'Invalid DeepSpeed zero_optimization={zero!r}: '
                         f'expected a dict')
    stage = zero.get('stage', 0)
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise ValueError(f'Invalid DeepSpeed ZeRO stage={stage!r}: expected '
                         f'0, 1, 2 or 3')
    return stage


def _refusal(kind: str, anchored, why: str) -> ValueError:
    return ValueError(
        f"strategy type {kind!r} cannot run {', '.join(anchored)} exactly: "
        f'{why}, so each process would see slices of tensors while SPD / '
        f"L2-SP decide per whole tensor. Use strategy=dict(type="
        f"'FSDP2Strategy', ...) (mmspd's, FSDP2: every parameter stays a "
        f'DTensor of its own shape and the optimizer reduces its sums over '
        f'the shards), or data parallelism without a strategy')


def _zero_why(stage: int) -> str:
    return (f'DeepSpeed ZeRO stage {stage} partitions flat buffers of '
            f'several tensors over the processes')


def refuse_flat_sharding(cfg: Config) -> None:
    """Raise ``ValueError`` when ``cfg`` pairs AdamSPD / AdamL2SP with a
    strategy that flattens tensors (FSDP1, DeepSpeed ZeRO >= 1)."""
    strategy = cfg.get('strategy')
    if not strategy:
        return
    anchored = sorted(set(_optimizer_types(cfg.get('optim_wrapper'))) &
                      set(ANCHORED_OPTIMIZERS))
    if not anchored:
        return
    kind = _strategy_type(strategy)
    if kind == 'FSDPStrategy':
        why = ('FSDP1 (FullyShardedDataParallel) flattens the parameters of '
               'a unit into one flat parameter and shards that')
    elif kind == 'DeepSpeedStrategy':
        stage = deepspeed_zero_stage(strategy.get('config'),
                                     strategy.get('zero_optimization'))
        if not stage:
            return  # no partitioning: plain data parallelism
        why = _zero_why(stage)
    else:
        return
    raise _refusal(kind, anchored, why)


#: Hooks FSDP2Strategy cannot serve, and why (one phrase each).
FSDP2_UNSUPPORTED_HOOKS = {
    'EMAHook': ('it deep-copies the model into an averaged one, which '
                'FSDP2 modules do not allow, and saves that copy through '
                'the checkpoint\'s state_dict, which sharded checkpoints do '
                'not pass to hooks'),
}


def refuse_fsdp2_unsupported_hooks(cfg: Config) -> None:
    """Raise ``ValueError`` naming the hook when ``cfg`` trains with
    ``FSDP2Strategy`` and a hook it cannot serve (before anything is
    built; without this the hook fails inside FSDP2 at the start of
    training)."""
    if _strategy_type(cfg.get('strategy')) != 'FSDP2Strategy':
        return
    for hook in cfg.get('custom_hooks') or []:
        kind = _strategy_type(hook)  # a hook config's type, by name
        why = FSDP2_UNSUPPORTED_HOOKS.get(kind)
        if why is not None:
            raise ValueError(
                f'custom_hooks has {kind!r}, which FSDP2Strategy cannot '
                f'run: {why}. Remove it from custom_hooks to shard the '
                f'model, or train this config with data parallelism (no '
                f'strategy) to keep it')


def _anchored_in(optim_wrapper: Any) -> Optional[str]:
    """The AdamSPD / AdamL2SP type name an optimizer wrapper (config, built
    wrapper or optimizer) uses, if any."""
    optimizer = optim_wrapper
    if isinstance(optim_wrapper, BaseOptimWrapper):
        optimizer = getattr(optim_wrapper, 'optimizer', None)
    if isinstance(optimizer, Optimizer):
        return (type(optimizer).__name__
                if isinstance(optimizer, AnchoredAdam) else None)
    names = sorted(set(_optimizer_types(optim_wrapper)) &
                   set(ANCHORED_OPTIMIZERS))
    return ', '.join(names) or None


@STRATEGIES.register_module(name='DeepSpeedStrategy', force=True)
class DeepSpeedStrategy(_DeepSpeed):
    """mmengine's ``DeepSpeedStrategy``, which refuses AdamSPD / AdamL2SP
    under ZeRO stage 1-3 when it builds the optimizer (before DeepSpeed
    partitions anything). Everything else is mmengine's."""

    def build_optim_wrapper(self, optim_wrapper, model=None):
        anchored = _anchored_in(optim_wrapper)
        stage = deepspeed_zero_stage(self.config)
        if anchored and stage:
            raise _refusal('DeepSpeedStrategy', [anchored], _zero_why(stage))
        return super().build_optim_wrapper(optim_wrapper, model)
