"""Pure-PyTorch optimizers of mmspd (imports torch only).

Use them in any training loop::

    from mmspd.optim import AdamSPD
    optimizer = AdamSPD(model.parameters(), lr=2e-5, weight_decay=1.0)
"""
from .adam_l2sp import AdamL2SP, adam_l2sp
from .adam_spd import AdamSPD, adam_spd
from .anchored_adam import ANCHOR_MODES, AnchoredAdam

__all__ = [
    'AdamSPD', 'AdamL2SP', 'AnchoredAdam', 'adam_spd', 'adam_l2sp',
    'ANCHOR_MODES'
]
