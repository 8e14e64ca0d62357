"""A test hook (custom-imported by FSDP2 test runs): counts the gradient
reduce-scatters of every training iteration and logs the count as
``train/reduce_scatters``."""
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ReduceScatterCounter(Hook):
    priority = 'VERY_HIGH'

    #: the names FSDP2 reduce-scatters gradients through (torch versions)
    NAMES = ('reduce_scatter_single', 'reduce_scatter_tensor')

    def before_train(self, runner) -> None:
        self.count = 0
        for name in self.NAMES:
            if hasattr(dist, name):
                setattr(dist, name, self._counting(getattr(dist, name)))

    def _counting(self, original):
        def counting(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return counting

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.count = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        runner.message_hub.update_scalar('train/reduce_scatters',
                                         self.count)
