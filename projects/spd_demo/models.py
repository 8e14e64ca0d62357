"""The demo's backbone.

mmpretrain's ``LeNet5`` takes no ``init_cfg``, so a pretrained checkpoint
cannot be loaded into it alone (``init_cfg=dict(type='Pretrained',
prefix='backbone.')``) while the head starts fresh. This subclass adds that
and nothing else.
"""
from typing import Optional

from mmpretrain.models.backbones import LeNet5
from mmpretrain.registry import MODELS


@MODELS.register_module()
class PretrainableLeNet5(LeNet5):
    """mmpretrain's LeNet-5 feature extractor (no classifier: 120-channel
    1x1 output for 32x32 input) that honours ``init_cfg``."""

    def __init__(self, init_cfg: Optional[dict] = None) -> None:
        super().__init__(num_classes=-1)
        self.init_cfg = init_cfg
