"""``SPDMonitorHook``: SPD's own signals in mmengine's logs and dashboards."""
import math
from collections import defaultdict
from typing import Dict, Iterator, Optional, Tuple

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmspd.optim import AnchoredAdam

#: Message-hub keys (mmengine strips the ``train/`` prefix in the logs).
PROJECTED_FRACTION = 'train/spd/projected_fraction'
MEAN_RATIO = 'train/spd/mean_ratio'
RELATIVE_DEVIATION = 'train/spd/relative_deviation'
MODULE_DEVIATION = 'train/spd/deviation/{}'
#: Where the hook keeps its own reference weights in a checkpoint.
CHECKPOINT_KEY = 'spd_monitor_reference'


@HOOKS.register_module()
class SPDMonitorHook(Hook):
    """Put SPD's signals into the MessageHub, for the log, TensorBoard, W&B.

    Every ``interval`` iterations (default: the LoggerHook's interval):

    * ``spd/projected_fraction``: fraction of tensors SPD projected at the
      last step (AdamSPD only);
    * ``spd/mean_ratio``: mean deviation ratio ``r`` of those tensors;
    * ``spd/relative_deviation``: mean over tensors of ``|p - a| / |a|``.

    Every ``module_interval`` iterations (default ``10 * interval``),
    ``spd/deviation/<module>``: ``|p - a| / |a|`` over all parameters of each
    top-level module (``backbone``, ``decode_head``, ...).

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

    # ---------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        if self.interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.interval = loggers[0].interval if loggers else 10
        if self.module_interval is None:
            self.module_interval = 10 * self.interval
        if self._uses_own_reference(runner) and self._reference is None:
            self._reference = {
                name: p.detach().clone()
                for name, p in self._model(runner).named_parameters()
                if p.requires_grad
            }

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._reference is not None:
            checkpoint[CHECKPOINT_KEY] = {
                k: v.cpu() for k, v in self._reference.items()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the saved reference; a load_from of
        # another run's checkpoint starts a new fine-tuning from it.
        if getattr(runner, '_resume', False) and CHECKPOINT_KEY in checkpoint:
            self._reference = dict(checkpoint[CHECKPOINT_KEY])

    # ------------------------------------------------------------------- log
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        hub = runner.message_hub
        for optimizer in self._optimizers(runner):
            if hasattr(optimizer, 'projection_statistics'):
                stats = optimizer.projection_statistics()
                hub.update_scalar(PROJECTED_FRACTION,
                                  stats['projected_fraction'])
                hub.update_scalar(MEAN_RATIO, stats['mean_ratio'])
        ratios = []
        per_module = defaultdict(lambda: [0.0, 0.0])
        with torch.no_grad():
            for name, p, anchor in self._anchored_parameters(runner):
                dist2 = float(torch.sum((p.float() - anchor.float())**2))
                norm2 = float(torch.sum(anchor.float()**2))
                if norm2 > 0:
                    ratios.append(math.sqrt(dist2 / norm2))
                module = per_module[name.split('.', 1)[0]]
                module[0] += dist2
                module[1] += norm2
        if ratios:
            hub.update_scalar(RELATIVE_DEVIATION, sum(ratios) / len(ratios))
        if self.every_n_train_iters(runner, self.module_interval):
            for module, (dist2, norm2) in per_module.items():
                if norm2 > 0:
                    hub.update_scalar(MODULE_DEVIATION.format(module),
                                      math.sqrt(dist2 / norm2))

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
                    yield name, p, self._reference[name].to(p.device)
            return
        states = {}
        for optimizer in self._optimizers(runner):
            states.update(optimizer.state)
        for name, p in named:
            anchor = states.get(p, {}).get('anchor')
            if anchor is not None:
                yield name, p, anchor
