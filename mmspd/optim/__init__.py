"""The optimizers of mmspd (import torch only, no OpenMMLab package).

On the CPU, AdamSPD's default step runs in a small compiled kernel built by
the install (:mod:`mmspd.optim._native`); everything works without it.

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
