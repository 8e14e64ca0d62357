"""``ImageCorruption`` registered as an mmdet transform.

The class is :class:`mmspd.corruption_transform.ImageCorruption`, the one
``mmspd.segmentation`` registers in mmseg's registry. In a detection test
pipeline it goes right after ``LoadImageFromFile``: the image is corrupted
at its original size, boxes and masks (read by ``LoadAnnotations``) are
untouched.

mmdet ships a transform for the same corruptions, ``Corrupt``
(``mmdet.datasets.transforms.Corrupt``); the two differ in two ways:

* channel order: ``Corrupt`` hands mmcv's BGR image to
  ``imagecorruptions`` as it is, which defines the corruptions on RGB
  images; ``ImageCorruption`` converts BGR to RGB and back. The results are
  equal for the corruptions that treat the three channels alike and draw no
  noise (``contrast``, ``defocus_blur``, ``pixelate``, ...), and for the
  other noise-free ones ``ImageCorruption`` on a BGR image equals
  ``Corrupt`` on the RGB image, flipped back to BGR;
* noise: ``Corrupt`` draws from numpy's global random state (another
  draw in every run and worker), ``ImageCorruption`` from a seed per image
  (:func:`mmspd.corruption.seed_for` of the file name): the same corrupted
  set in every run.
"""
from mmdet.registry import TRANSFORMS

from ..corruption_transform import SEED_FROM, ImageCorruption

TRANSFORMS.register_module(module=ImageCorruption)

__all__ = ['ImageCorruption', 'SEED_FROM']
