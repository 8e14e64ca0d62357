"""``ImageCorruption``: an ImageNet-C corruption of the image as an
OpenMMLab transform, one class for every task.

The class is defined here, on mmcv's ``BaseTransform``, and registered by
the task packages into their own transform registries:
``mmspd.segmentation`` into mmseg's and ``mmspd.detection`` into mmdet's
(the same class object in both), so a config of either library builds it
as ``dict(type='ImageCorruption', ...)``. Importing this module registers
nothing.

Compared with mmdet's own ``Corrupt`` transform (which calls
``imagecorruptions.corrupt`` on ``results['img']`` as it is), this one
converts mmcv's BGR image to RGB before corrupting it and back after (the
corruptions are defined on RGB images: fog, frost, snow, brightness and
saturate are not symmetric in the channels), seeds the noise per image
(:func:`mmspd.corruption.seed_for`), so that an OOD set is the same images
in every run, and checks its arguments when built.
"""
import numbers
import os.path as osp

from mmcv.transforms import BaseTransform

from .corruption import check_corruption, corrupt_image, seed_for

__all__ = ['ImageCorruption', 'SEED_FROM']

#: How :class:`ImageCorruption` identifies an image to seed its noise.
SEED_FROM = ('filename', 'index')


class ImageCorruption(BaseTransform):
    """Corrupt ``results['img']`` only, the same way for a given image.

    For robustness test sets: insert it right after ``LoadImageFromFile``
    (``RobustTestLoop`` does so for each OOD set of the config), so the
    image is corrupted at its original resolution and the annotations
    (label maps, boxes, masks), which ``LoadAnnotations`` reads from disk,
    are never touched::

        dict(name='fog', transforms=[
            dict(type='ImageCorruption', corruption='fog', severity=3)])

    Required keys: ``img`` (``uint8``, at least 32x32) and ``img_path``
    (``seed_from='filename'``) or ``sample_idx`` (``seed_from='index'``).
    Modified keys: ``img`` (same shape and dtype).

    Args:
        corruption: one of :data:`mmspd.corruption.CORRUPTIONS`
            (``'fog'``, ``'defocus_blur'``, ``'gaussian_noise'``,
            ``'brightness'``, ...).
        severity: 1 (mildest) to 5.
        seed: base seed; each image's seed is
            ``seed_for(<image key>, seed)``.
        seed_from: the image key: ``'filename'`` (default: the file name
            without extension, so the set does not depend on where the data
            lives nor on the order of the split file) or ``'index'`` (the
            sample's index in the data set).
        channel_order: the channel order of ``img``; ``'bgr'`` (default)
            is what mmcv's ``LoadImageFromFile`` produces.
    """

    def __init__(self, corruption: str, severity: int, seed: int = 0,
                 seed_from: str = 'filename',
                 channel_order: str = 'bgr') -> None:
        check_corruption(corruption, severity)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
                or seed < 0:
            raise ValueError(f'Invalid seed {seed!r} for ImageCorruption: '
                             f'expected an int >= 0')
        if seed_from not in SEED_FROM:
            raise ValueError(f'Invalid seed_from {seed_from!r} for '
                             f'ImageCorruption: expected one of {SEED_FROM}')
        if channel_order not in ('rgb', 'bgr'):
            raise ValueError(f'Invalid channel_order {channel_order!r} for '
                             f"ImageCorruption: expected 'rgb' or 'bgr'")
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = int(seed)
        self.seed_from = seed_from
        self.channel_order = channel_order

    def image_key(self, results: dict):
        """The key the image's seed is derived from (see ``seed_from``)."""
        if self.seed_from == 'index':
            if results.get('sample_idx') is None:
                raise KeyError("ImageCorruption(seed_from='index') needs "
                               "results['sample_idx'], which this data set "
                               "does not set; use seed_from='filename'")
            return int(results['sample_idx'])
        path = results.get('img_path')
        if not path:
            raise KeyError("ImageCorruption(seed_from='filename') needs "
                           "results['img_path'] (images not loaded from a "
                           "file?); use seed_from='index'")
        return osp.splitext(osp.basename(path))[0]

    def transform(self, results: dict) -> dict:
        seed = seed_for(self.image_key(results), self.seed)
        results['img'] = corrupt_image(results['img'], self.corruption,
                                       self.severity, seed,
                                       self.channel_order)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(corruption={self.corruption!r}, '
                f'severity={self.severity}, seed={self.seed}, '
                f'seed_from={self.seed_from!r}, '
                f'channel_order={self.channel_order!r})')
