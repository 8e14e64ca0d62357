"""``ClassCountCheckHook``: the detector's class count equals its data
set's, checked before training, validation and testing."""
from typing import Dict

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet.registry import HOOKS
from torch import nn


def head_class_counts(model: nn.Module) -> Dict[str, int]:
    """``{module name: num_classes}`` of the model's heads that classify
    into the data set's classes: every submodule with an int
    ``num_classes``, except the region proposal network's (``rpn_head``,
    one foreground class) and modules inside it."""
    if is_model_wrapper(model):
        model = model.module
    counts = {}
    for name, module in model.named_modules():
        count = getattr(module, 'num_classes', None)
        if not name or 'rpn_head' in name.split('.'):
            continue
        if isinstance(count, int) and not isinstance(count, bool):
            counts[name] = count
    return counts


@HOOKS.register_module()
class ClassCountCheckHook(Hook):
    """Raise ``ValueError`` naming the head, its ``num_classes``, the data
    set and its class count when they differ (before the first training
    iteration, and before validation and testing on their data sets).

    mmdet's own ``NumClassCheckHook`` checks with ``assert`` (skipped under
    ``python -O``) and not before testing; this one raises in every case.
    """

    priority = 'VERY_HIGH'

    def _check(self, runner, loop_name: str) -> None:
        dataset = getattr(runner, loop_name).dataloader.dataset
        classes = dataset.metainfo.get('classes')
        if classes is None:
            return  # no class list to check against
        if isinstance(classes, str):
            raise ValueError(f'{type(dataset).__name__} metainfo classes is '
                             f'the string {classes!r}; expected a tuple of '
                             f'class names (for one class: ({classes!r},))')
        for name, count in head_class_counts(runner.model).items():
            if count != len(classes):
                raise ValueError(
                    f'model.{name}.num_classes is {count} but the '
                    f'{loop_name.replace("_loop", "")} data set '
                    f'({type(dataset).__name__}) has {len(classes)} classes; '
                    f'set the heads\' num_classes to {len(classes)} or the '
                    f'dataset\'s metainfo classes to the model\'s')

    def before_train(self, runner) -> None:
        self._check(runner, 'train_loop')

    def before_val(self, runner) -> None:
        self._check(runner, 'val_loop')

    def before_test(self, runner) -> None:
        self._check(runner, 'test_loop')
