"""mmseg components for robust evaluation (imports mmseg; ``import mmspd``
does not import this package).

Configs load it with::

    custom_imports = dict(imports=['mmspd', 'mmspd.segmentation'],
                          allow_failed_imports=False)

which registers :class:`ImageCorruption` in mmseg's ``TRANSFORMS`` and
:class:`PascalMTDataset` and :class:`CheckedPascalContextDataset59` in
mmseg's ``DATASETS``.
"""
from .datasets import (CheckedPascalContextDataset59, PascalMTDataset,
                       check_label_maps)
from .transforms import ImageCorruption

__all__ = ['ImageCorruption', 'PascalMTDataset',
           'CheckedPascalContextDataset59', 'check_label_maps']
