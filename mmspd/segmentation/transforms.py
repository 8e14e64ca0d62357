"""``ImageCorruption`` registered as an mmseg transform.

The class is :class:`mmspd.corruption_transform.ImageCorruption`, shared
with ``mmspd.detection`` (mmdet's registry gets the same class).
"""
from mmseg.registry import TRANSFORMS

from ..corruption_transform import SEED_FROM, ImageCorruption

TRANSFORMS.register_module(module=ImageCorruption)

__all__ = ['ImageCorruption', 'SEED_FROM']
