"""Register mmspd's optimizers in mmengine's root ``OPTIMIZERS`` registry.

Registering in the root (not in mmseg's or mmpretrain's child registries)
makes ``optimizer=dict(type='AdamSPD', ...)`` resolve under any
``default_scope``, because a child registry falls back to its root.
"""
from mmengine.registry import OPTIMIZERS

from mmspd.optim import AdamL2SP, AdamSPD

for _optimizer in (AdamSPD, AdamL2SP):
    if OPTIMIZERS.get(_optimizer.__name__) is not _optimizer:
        OPTIMIZERS.register_module(module=_optimizer)
