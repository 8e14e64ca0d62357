"""mmdet components for robust evaluation (imports mmdet; ``import mmspd``
does not import this package).

Configs load it with::

    custom_imports = dict(imports=['mmspd', 'mmspd.detection'],
                          allow_failed_imports=False)

which registers :class:`ImageCorruption` in mmdet's ``TRANSFORMS`` (the
class ``mmspd.segmentation`` registers in mmseg's),
:class:`CheckedCocoDataset` in mmdet's ``DATASETS`` and
:class:`ClassCountCheckHook` in mmdet's ``HOOKS``.
"""
from .datasets import CheckedCocoDataset
from .hooks import ClassCountCheckHook, head_class_counts
from .transforms import ImageCorruption

__all__ = ['ImageCorruption', 'CheckedCocoDataset', 'ClassCountCheckHook',
           'head_class_counts']
