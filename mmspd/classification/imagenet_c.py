"""ImageNet-C (Hendrycks & Dietterich, ICLR 2019) in its released layout.

The release holds one folder per corruption and severity, each the 50,000
ImageNet val images (224x224 centre crops) in WordNet-id class folders::

    data/imagenet-c/gaussian_noise/1/n01440764/ILSVRC2012_val_00000293.JPEG
    data/imagenet-c/gaussian_noise/1/n01443537/...
    ...
    data/imagenet-c/jpeg_compression/5/n15075141/...

(the 15 benchmark corruptions from ``noise.tar``, ``blur.tar``,
``weather.tar``, ``digital.tar``; the 4 extra ones of ``extra.tar`` in the
same layout). :class:`ImageNetC` is one (corruption, severity) folder, so
``RobustTestLoop``'s corruption sweep makes all 75 sets from one config::

    corruption_sweep=dict(
        corruptions='benchmark', severities=(1, 2, 3, 4, 5),
        dataset=dict(_delete_=True, type='ImageNetC',
                     data_root='data/imagenet-c',
                     corruption='{corruption}', severity='{severity}',
                     pipeline=test_pipeline))

and, with the ImageNet val set as the ID set, reports ImageNet-C's mCE and
relative mCE (:mod:`mmspd.engine.runner.corruption_summary`).
"""
import numbers

from mmpretrain.registry import DATASETS

from ..corruption import CORRUPTIONS, SEVERITIES
from .imagenet_variants import WnidFolderDataset


def _severity(value) -> int:
    """``value`` (an int, or its digits as the sweep's ``'{severity}'``
    gives it) as an int in 1..5; ``ValueError`` naming it otherwise."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(
            value, numbers.Integral) or value not in SEVERITIES:
        raise ValueError(f'ImageNetC: invalid severity {value!r}: expected '
                         f'an int in 1..5')
    return int(value)


@DATASETS.register_module()
class ImageNetC(WnidFolderDataset):
    """One corruption at one severity of ImageNet-C: the images of
    ``<data_root>/<corruption>/<severity>/<wnid>/``.

    Args:
        data_root: the release's root folder (holding the corruption
            folders).
        corruption: one of :data:`mmspd.corruption.CORRUPTIONS` (the 15
            benchmark corruptions and the 4 extra ones).
        severity: 1..5 (an int, or a string of its digit).
        **kwargs: the other arguments of
            :class:`mmpretrain.datasets.BaseDataset` (``pipeline``,
            ``test_mode``, ...), without ``ann_file`` and ``data_prefix``.

    Labels are the ImageNet-1k indices of the WordNet-id folders; a folder
    that is no ImageNet-1k WordNet id raises ``ValueError`` naming it, a
    missing ``<corruption>/<severity>`` folder ``FileNotFoundError``.
    ``metainfo`` adds ``corruption`` and ``severity``.
    """

    def __init__(self, data_root: str, corruption: str, severity,
                 **kwargs) -> None:
        if not isinstance(corruption, str) or corruption not in CORRUPTIONS:
            raise ValueError(f'ImageNetC: unknown corruption {corruption!r}:'
                             f' expected one of {", ".join(CORRUPTIONS)}')
        if 'data_prefix' in kwargs:
            raise TypeError(f'ImageNetC reads <data_root>/<corruption>/'
                            f'<severity>/ and takes no data_prefix (got '
                            f'{kwargs["data_prefix"]!r})')
        severity = _severity(severity)
        self.corruption = corruption
        self.severity = severity
        super().__init__(data_root=data_root,
                         data_prefix=f'{corruption}/{severity}', **kwargs)
        # set here, not through ``metainfo=``: mmengine reads a string
        # value there as the path of a meta file
        self._metainfo.update(corruption=corruption, severity=severity)
