"""Refuse, before anything is built, configs that would shard AdamSPD /
AdamL2SP in a way that hides tensor boundaries.

SPD decides per whole tensor (see :mod:`mmspd.optim._dtensor`). mmengine's
``FSDPStrategy`` (FSDP1 flat parameters) and ``DeepSpeedStrategy`` with a
ZeRO stage >= 1 (flat partitions of the optimizer state) give the optimizer
slices of tensors: its sums would cover only a slice, silently another
algorithm. The optimizer itself refuses FSDP1 and ZeRO-3 parameters when it
is built; ZeRO-1/2 replace its parameters by flat partitions only after, so
the config is the one place all of them can be caught, and the earliest.
"""
from typing import Iterator

from mmengine.config import Config

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
        zero = strategy.get('zero_optimization') or {}
        stage = zero.get('stage', 0) if isinstance(zero, dict) else 0
        if not stage:
            return  # no partitioning: plain data parallelism
        why = (f'DeepSpeed ZeRO stage {stage} partitions flat buffers of '
               f'several tensors over the processes')
    else:
        return
    raise ValueError(
        f"strategy type {kind!r} cannot run {', '.join(anchored)} exactly: "
        f'{why}, so each process would see slices of tensors while SPD / '
        f"L2-SP decide per whole tensor. Use strategy=dict(type="
        f"'FSDP2Strategy', ...) (mmspd's, FSDP2: every parameter stays a "
        f'DTensor of its own shape and the optimizer reduces its sums over '
        f'the shards), or data parallelism without a strategy')
