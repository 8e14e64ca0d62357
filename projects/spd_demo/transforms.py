"""Image transforms the demo needs and mmpretrain does not have.

mmpretrain 1.2 has no additive-noise transform (its ``Albumentations``
wrapper needs the albumentations package), so the demo registers one.
"""
import os.path as osp
import zlib
from typing import Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AddGaussianNoise(BaseTransform):
    """Add zero-mean Gaussian noise to ``results['img']`` (uint8 in and out).

    Args:
        std: the noise's standard deviation in pixel units (0-255), or a
            ``(low, high)`` range to draw it from uniformly per image.
        prob: probability of adding noise to an image.
        seed: ``None`` draws from numpy's global RNG (training
            augmentation, seeded by mmengine per worker). An integer makes
            the noise a fixed function of the image: the RNG is seeded with
            ``seed`` and the CRC-32 of the image's folder and file name
            (``digit_5/0123.png``; not the full path, so the noise does not
            depend on where the data set lives), so an OOD test set is the
            same in every run, process and checkout.

    Raises ``ValueError`` for a negative or inverted ``std`` and a ``prob``
    outside [0, 1]; ``KeyError`` when ``seed`` is set and the results have
    no ``img_path``.
    """

    def __init__(self, std: Union[float, Sequence[float]], prob: float = 1.,
                 seed: Optional[int] = None) -> None:
        low, high = (std, std) if np.isscalar(std) else tuple(std)
        if not 0 <= low <= high:
            raise ValueError(f'Invalid noise std {std!r}: expected a '
                             f'number >= 0 or a range (low, high) with '
                             f'0 <= low <= high')
        if not 0 <= prob <= 1:
            raise ValueError(f'Invalid probability {prob!r}: expected a '
                             f'number in [0, 1]')
        self.std_range = (float(low), float(high))
        self.prob = prob
        self.seed = seed

    def _rng(self, results: dict):
        if self.seed is None:
            return np.random
        if 'img_path' not in results:
            raise KeyError('AddGaussianNoise(seed=...) derives the noise '
                           'from the image path, but the results have no '
                           "'img_path'")
        folder, name = osp.split(str(results['img_path']))
        key = zlib.crc32(f'{osp.basename(folder)}/{name}'.encode('utf-8'))
        return np.random.default_rng([self.seed, key])

    def transform(self, results: dict) -> dict:
        rng = self._rng(results)
        if rng.uniform() >= self.prob:
            return results
        std = rng.uniform(*self.std_range)
        img = results['img']
        noisy = img.astype(np.float32) + rng.normal(0., std, img.shape)
        results['img'] = np.clip(np.rint(noisy), 0, 255).astype(img.dtype)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(std_range={self.std_range}, '
                f'prob={self.prob}, seed={self.seed})')
