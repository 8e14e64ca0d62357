"""``SPDMonitorHook``: SPD's own signals in mmengine's logs and dashboards."""
import math
from collections import defaultdict
from typing import Dict, Iterator, Optional, Tuple

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmspd.optim import AnchoredAdam
from mmspd.optim._dtensor import ShardedSums, is_dtensor, local_tensor

try:
    from torch.distributed.tensor import distribute_tensor
except ImportError:  # a torch without DTensor: no parameter is sharded
    distribute_tensor = None

#: Message-hub keys (mmengine strips the ``train/`` prefix in the logs).
KEY_PREFIX = 'train/spd/'
PROJECTED_FRACTION = 'train/spd/projected_fraction'
MEAN_RATIO = 'train/spd/mean_ratio'
RELATIVE_DEVIATION = 'train/spd/relative_deviation'
MODULE_DEVIATION = 'train/spd/deviation/{}'
#: Where the hook keeps its own reference weights in a checkpoint.
CHECKPOINT_KEY = 'spd_monitor_reference'


@HOOKS.register_module()
class SPDMonitorHook(Hook):
    """Put SPD's signals into the MessageHub, for the log, TensorBoard, W&B.

    Every ``interval`` iterations (default: the LoggerHook's interval;
    counted within the epoch in epoch-based training, as the LoggerHook
    does):

    * ``spd/projected_fraction``: fraction of tensors SPD projected at the
      last step (AdamSPD only);
    * ``spd/mean_ratio``: mean deviation ratio ``r`` of those tensors;
    * ``spd/relative_deviation``: mean over tensors of ``|p - a| / |a|``.

    Every ``module_interval`` iterations (default ``10 * interval``),
    ``spd/deviation/<module>``: ``|p - a| / |a|`` over all parameters of each
    top-level module (``backbone``, ``decode_head``, ...).

    A key is in the MessageHub, hence in a log row, only at the iterations
    where it was computed: between updates the hook takes it out of the hub
    (keeping its history), so that the logger never repeats a stale value.

    ``a`` is the optimizer's anchor (AdamSPD, AdamL2SP); parameters with a
    zero anchor are left out of the relative deviations. For optimizers
    without anchors (e.g. the AdamW baseline) the hook keeps its own copy of
    the weights at the start of training (after ``load_from``/``init_cfg``),
    saved in checkpoints so that it survives ``resume``: this costs one copy
    of the parameters, and lets runs of all methods be compared.

    The projection statistics are kept as tensors by the optimizer's step
    and read here, at log time only; the deviations are computed here, so
    training steps pay nothing.
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) in the same iter

    def __init__(self, interval: Optional[int] = None,
                 module_interval: Optional[int] = None) -> None:
        for name, value in (('interval', interval),
                            ('module_interval', module_interval)):
            if value is not None and (not isinstance(value, int)
                                      or isinstance(value, bool)
                                      or value < 1):
                raise ValueError(f'SPDMonitorHook: {name} must be a '
                                 f'positive int or None, got {value!r}')
        self.interval = interval
        self.module_interval = module_interval
        self._reference: Optional[Dict[str, torch.Tensor]] = None
        # history buffers of this hook's keys while they are out of the hub
        self._hidden: Dict[str, object] = {}
        self._resumed_without_reference = False

    # ---------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        if self.interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.interval = loggers[0].interval if loggers else 10
        if self.module_interval is None:
            self.module_interval = 10 * self.interval
        if self._uses_own_reference(runner) and self._reference is None:
            if self._resumed_without_reference:
                runner.logger.warning(
                    'SPDMonitorHook: the resumed checkpoint has no '
                    f'{CHECKPOINT_KEY!r}; deviations are measured from the '
                    'resumed weights, not from those at the start of '
                    'training')
            self._reference = {
                name: p.detach().clone()
                for name, p in self._model(runner).named_parameters()
                if p.requires_grad
            }

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Whole tensors on the CPU: a reference of sharded (DTensor)
        # parameters is gathered (every process calls this hook, in the
        # same order), so the checkpoint loads on any number of processes.
        if self._reference is not None:
            checkpoint[CHECKPOINT_KEY] = {
                k: (v.full_tensor() if is_dtensor(v) else v).cpu()
                for k, v in self._reference.items()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the saved reference; a load_from of
        # another run's checkpoint starts a new fine-tuning from it.
        if not getattr(runner, '_resume', False):
            return
        if CHECKPOINT_KEY in checkpoint:
            self._reference = dict(checkpoint[CHECKPOINT_KEY])
        else:
            self._resumed_without_reference = True

    # ------------------------------------------------------------------- log
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # The LoggerHook's own test (inner iteration), so that in epoch-based
        # training the values are computed at the iterations it writes.
        due = self.every_n_inner_iters(batch_idx, self.interval)
        module_due = self.every_n_inner_iters(batch_idx, self.module_interval)
        fresh: Dict[str, float] = {}
        if due:
            fresh.update(self._projection_scalars(runner))
        if due or module_due:
            relative, per_module = self._deviations(runner)
            if due and relative is not None:
                fresh[RELATIVE_DEVIATION] = relative
            if module_due:
                fresh.update((MODULE_DEVIATION.format(module), value)
                             for module, value in per_module.items())
        self._publish(runner.message_hub, fresh)

    def _projection_scalars(self, runner) -> Dict[str, float]:
        """Projected fraction and mean ratio over all AdamSPD optimizers."""
        tensors = projected = 0
        ratio_sum = 0.0
        found = False
        for optimizer in self._optimizers(runner):
            if not hasattr(optimizer, 'projection_statistics'):
                continue
            found = True
            stats = optimizer.projection_statistics()
            count = round(stats['tensors'] * stats['projected_fraction'])
            tensors += stats['tensors']
            projected += count
            ratio_sum += count * stats['mean_ratio']
        if not found:
            return {}
        return {
            PROJECTED_FRACTION: projected / tensors if tensors else 0.0,
            MEAN_RATIO: ratio_sum / projected if projected else 0.0,
        }

    def _deviations(self, runner) -> Tuple[Optional[float], Dict[str, float]]:
        """Mean per-tensor ``|p - a| / |a|`` and the per-module ratios."""
        ratios = []
        per_module = defaultdict(lambda: [0.0, 0.0])
        names, params, sums = [], [], []
        with torch.no_grad():
            for name, p, anchor in self._anchored_parameters(runner):
                # sums over the local shard of a sharded (DTensor) parameter,
                # added up over the shards below (one all-reduce)
                p_local = local_tensor(p).float()
                a_local = local_tensor(anchor).float()
                sums.append(torch.stack([
                    torch.sum((p_local - a_local)**2),
                    torch.sum(a_local**2)]).to(torch.float64))
                names.append(name)
                params.append(p)
            if sums:
                sums = ShardedSums(params).reduce(torch.stack(sums)).tolist()
        for name, (dist2, norm2) in zip(names, sums):
            if norm2 > 0:
                ratios.append(math.sqrt(dist2 / norm2))
            module = per_module[name.split('.', 1)[0]]
            module[0] += dist2
            module[1] += norm2
        relative = sum(ratios) / len(ratios) if ratios else None
        return relative, {
            module: math.sqrt(dist2 / norm2)
            for module, (dist2, norm2) in per_module.items() if norm2 > 0
        }

    def _publish(self, hub, fresh: Dict[str, float]) -> None:
        """Update ``fresh`` in ``hub``; take this hook's other keys out.

        mmengine's log processor writes the current value of every
        ``train/`` scalar in the hub at every logged iteration, so a key left
        in the hub would be logged again, stale, where it was not computed.
        The hook's keys not updated at this iteration are therefore removed
        from the hub; their history buffers are kept and put back at their
        next update.
        """
        scalars = hub.log_scalars
        for key in [k for k in scalars
                    if k.startswith(KEY_PREFIX) and k not in fresh]:
            self._hidden[key] = scalars.pop(key)
        for key, value in fresh.items():
            if key not in scalars and key in self._hidden:
                scalars[key] = self._hidden.pop(key)
            hub.update_scalar(key, value)

    # --------------------------------------------------------------- helpers
    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _optimizers(runner):
        wrapper = runner.optim_wrapper
        wrappers = (wrapper.values() if hasattr(wrapper, 'optim_wrappers')
                    else [wrapper])
        return [w.optimizer for w in wrappers]

    def _reference_like(self, name: str, p: torch.Tensor) -> torch.Tensor:
        """The reference of ``p`` on its device, sharded as ``p`` is (a
        resumed reference is a whole tensor; each process keeps its shard
        of it, once)."""
        reference = self._reference[name]
        if is_dtensor(p) and not is_dtensor(reference):
            reference = self._reference[name] = distribute_tensor(
                reference.to(local_tensor(p).device), p.device_mesh,
                p.placements, src_data_rank=None)
        elif not is_dtensor(p) and reference.device != p.device:
            reference = self._reference[name] = reference.to(p.device)
        return reference

    def _uses_own_reference(self, runner) -> bool:
        return not any(
            isinstance(o, AnchoredAdam) for o in self._optimizers(runner))

    def _anchored_parameters(
            self, runner) -> Iterator[Tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, parameter, anchor) for parameters with a non-zero anchor."""
        named = self._model(runner).named_parameters()
        if self._reference is not None:
            for name, p in named:
                if name in self._reference:
                    yield name, p, self._reference_like(name, p)
            return
        states = {}
        for optimizer in self._optimizers(runner):
            states.update(optimizer.state)
        for name, p in named:
            anchor = states.get(p, {}).get('anchor')
            if anchor is not None:
                yield name, p, anchor
