"""The tensor lists of one optimizer step, as one named bundle.

Every kernel of :mod:`mmspd.optim` steps the same seven aligned lists; a
:class:`StepLists` carries them by name, so no signature passes them by
position and no code indexes them by number.
"""
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from ._grouping import (group_by_device_and_dtype, split_contiguous,
                        split_for_cache)


class StepLists(NamedTuple):
    """Aligned per-tensor lists of one step (entry ``i`` of each list
    belongs to ``params[i]``).

    ``max_exp_avg_sqs`` is ``None`` without amsgrad and ``anchors`` is
    ``None`` for zero anchors. ``steps`` are the step counts after this
    step's increment: numbers, or the counter tensors themselves
    (``capturable``).
    """
    params: List[Tensor]
    grads: List[Tensor]
    exp_avgs: List[Tensor]
    exp_avg_sqs: List[Tensor]
    max_exp_avg_sqs: Optional[List[Tensor]]
    anchors: Optional[List[Tensor]]
    steps: List[Union[float, Tensor]]

    def for_amsgrad(self, amsgrad: bool) -> 'StepLists':
        """The lists with ``max_exp_avg_sqs`` dropped unless ``amsgrad``."""
        return self if amsgrad else self._replace(max_exp_avg_sqs=None)

    def by_device_and_dtype(
            self) -> Dict[Tuple[torch.device, torch.dtype], 'StepLists']:
        """One bundle per (device, dtype) of the parameters, in order."""
        return {key: StepLists(*lists) for key, lists in
                group_by_device_and_dtype(*self).items()}

    def by_anchor_dtype(self) -> List['StepLists']:
        """One bundle per dtype of the anchors (one bundle if none)."""
        if self.anchors is None or len({a.dtype for a in self.anchors}) == 1:
            return [self]
        return [StepLists(*lists[1:]) for lists in
                group_by_device_and_dtype(self.anchors, *self).values()]

    def cache_chunks(self, device: torch.device) -> List['StepLists']:
        """Cache-sized chunks on the CPU, the whole bundle elsewhere
        (:func:`mmspd.optim._grouping.split_for_cache`)."""
        return [StepLists(*lists)
                for lists in split_for_cache(device, list(self))]

    def split_contiguous(
            self) -> Tuple[Optional['StepLists'], Optional['StepLists']]:
        """``(contiguous, strided)`` by position (either may be ``None``;
        :func:`mmspd.optim._grouping.split_contiguous`)."""
        contiguous, strided = split_contiguous(list(self))
        return (None if contiguous is None else StepLists(*contiguous),
                None if strided is None else StepLists(*strided))
