"""mmspd: Selective Projection Decay (SPD) for OpenMMLab.

``import mmspd`` registers :class:`~mmspd.optim.AdamSPD` and
:class:`~mmspd.optim.AdamL2SP` in mmengine's root ``OPTIMIZERS`` registry.
It never imports mmsegmentation, mmpretrain or mmdet. It also lets
mmengine configs inherit mmspd's shipped configs as ``mmspd::<path>``
(:mod:`mmspd.config_lookup`).
"""
from . import config_lookup  # noqa: F401  (mmspd:: configs)
from . import engine  # noqa: F401  (registration side effects)
from .optim import AdamL2SP, AdamSPD
from .version import __version__

__all__ = ['AdamSPD', 'AdamL2SP', '__version__']
