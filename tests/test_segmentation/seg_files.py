"""Tiny segmentation data sets written in the real on-disk layouts.

Each image is noise with a few flat rectangles; the label map gives each
rectangle its class and the rest the background value. Images are JPEG,
label maps PNG, as in the releases.
"""
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

#: PASCAL VOC's colour map for the first classes (PASCAL_MT's VOC12 label
#: maps are palette PNGs, as VOC's).
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]


def _scene(rng, height: int, width: int, classes: Sequence[int],
           background: int):
    """(BGR-agnostic RGB image, label map) with one rectangle per class."""
    img = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    label = np.full((height, width), background, dtype=np.uint8)
    for k, cls in enumerate(classes):
        h0 = int(rng.integers(0, height // 2))
        w0 = int(rng.integers(0, width // 2))
        h1, w1 = h0 + height // 3, w0 + width // 3
        colour = np.array([(70 * cls) % 256, (130 * cls + 90) % 256,
                           (200 - 40 * k) % 256], dtype=np.uint8)
        img[h0:h1, w0:w1] = colour
        label[h0:h1, w0:w1] = cls
    return img, label


def write_pascal_context(root: str, ids: Dict[str, List[str]],
                         size=(48, 64), classes=(1, 2, 3),
                         seed: int = 0) -> str:
    """mmseg's PASCAL-Context layout; returns ``root/VOCdevkit/VOC2010``.

    ``VOCdevkit/VOC2010/JPEGImages/<id>.jpg``,
    ``SegmentationClassContext/<id>.png`` (values 0 = background, 1..59;
    mmseg's ``PascalContextDataset59`` maps 0 to ignore) and
    ``ImageSets/SegmentationContext/<split>.txt``. ``ids`` maps a split
    name to its image ids; ``size`` is (height, width).
    """
    rng = np.random.default_rng(seed)
    voc = osp.join(root, 'VOCdevkit', 'VOC2010')
    for folder in ('JPEGImages', 'SegmentationClassContext',
                   osp.join('ImageSets', 'SegmentationContext')):
        os.makedirs(osp.join(voc, folder), exist_ok=True)
    for split, split_ids in ids.items():
        for image_id in split_ids:
            img, label = _scene(rng, *size, classes, background=0)
            Image.fromarray(img).save(
                osp.join(voc, 'JPEGImages', f'{image_id}.jpg'), quality=95)
            Image.fromarray(label, mode='L').save(
                osp.join(voc, 'SegmentationClassContext', f'{image_id}.png'))
        with open(osp.join(voc, 'ImageSets', 'SegmentationContext',
                           f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{i}\n' for i in split_ids))
    return voc


def write_pascal_mt(root: str, ids: Dict[str, List[str]],
                    voc12_ids: Sequence[str] = (), size=(48, 64),
                    classes=(1, 2, 3), seed: int = 0) -> str:
    """The multi-task PASCAL-Context release; returns ``root/PASCAL_MT``.

    ``PASCAL_MT/JPEGImages/<id>.jpg``, ``semseg/pascal-context/<id>.png``
    for every id (grayscale PNG) and in addition
    ``semseg/VOC12/<id>.png`` (palette PNG) for the ids in ``voc12_ids``,
    whose VOC12 label differs from the pascal-context one (its rectangles
    are labelled 255, ignore), so a test can tell which file was read;
    ``ImageSets/Context/<split>.txt``. Values: 0 background, 1..20, 255.
    """
    rng = np.random.default_rng(seed)
    mt = osp.join(root, 'PASCAL_MT')
    for folder in ('JPEGImages', osp.join('semseg', 'pascal-context'),
                   osp.join('semseg', 'VOC12'),
                   osp.join('ImageSets', 'Context')):
        os.makedirs(osp.join(mt, folder), exist_ok=True)
    for split, split_ids in ids.items():
        for image_id in split_ids:
            img, label = _scene(rng, *size, classes, background=0)
            Image.fromarray(img).save(
                osp.join(mt, 'JPEGImages', f'{image_id}.jpg'), quality=95)
            Image.fromarray(label, mode='L').save(
                osp.join(mt, 'semseg', 'pascal-context', f'{image_id}.png'))
            if image_id in voc12_ids:
                voc = np.where(label > 0, 255, 0).astype(np.uint8)
                png = Image.fromarray(voc, mode='P')
                png.putpalette(VOC_PALETTE + [224, 224, 192] * 251)
                png.save(osp.join(mt, 'semseg', 'VOC12', f'{image_id}.png'))
        with open(osp.join(mt, 'ImageSets', 'Context', f'{split}.txt'),
                  'w') as f:
            f.write(''.join(f'{i}\n' for i in split_ids))
    return mt


def read_label(path: str) -> np.ndarray:
    """A label map as stored (palette indices for palette PNGs)."""
    return np.array(Image.open(path))
