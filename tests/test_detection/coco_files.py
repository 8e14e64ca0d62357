"""A tiny COCO 2017 data set written in the real on-disk format.

``<root>/annotations/instances_{split}2017.json`` (COCO's keys: images,
annotations with boxes in ``[x, y, w, h]``, polygons, areas and
``iscrowd``, and the 80 categories with COCO's non-contiguous ids) and
``<root>/{split}2017/<12-digit id>.jpg`` (real JPEG files).
"""
import json
import os
import os.path as osp
from typing import Dict, Sequence

import numpy as np
from PIL import Image

#: COCO's category ids of its 80 classes, in mmdet's class order.
COCO_CATEGORY_IDS = (
    list(range(1, 12)) + list(range(13, 26)) + [27, 28]
    + list(range(31, 45)) + list(range(46, 66)) + [67, 70]
    + list(range(72, 83)) + list(range(84, 91)))


def coco_classes():
    from mmdet.datasets import CocoDataset
    return CocoDataset.METAINFO['classes']


def categories(names=None):
    names = coco_classes() if names is None else names
    return [dict(id=cid, name=name, supercategory='thing')
            for cid, name in zip(COCO_CATEGORY_IDS, names)]


def _image(rng, height, width, objects):
    """Smooth colours plus a bright rectangle per object (JPEG-friendly)."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // max(width - 1, 1)),
                    (y * 255 // max(height - 1, 1)),
                    np.full_like(x, int(rng.integers(40, 200)))], axis=2)
    for x0, y0, w, h in objects:
        img[y0:y0 + h, x0:x0 + w] = rng.integers(150, 255, size=3)
    return img.astype(np.uint8)


def write_split(root: str, split: str, image_ids: Sequence[int],
                size=(96, 128), seed=0, category_list=None,
                objects_per_image: int = 2) -> Dict:
    """Write ``split`` (``'train'`` or ``'val'``) and return the
    annotation dict. Each image gets ``objects_per_image`` rectangles, each
    annotated with its box and its polygon."""
    rng = np.random.default_rng(seed)
    height, width = size
    image_dir = osp.join(root, f'{split}2017')
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    cats = categories() if category_list is None else category_list
    images, annotations = [], []
    for image_id in image_ids:
        file_name = f'{image_id:012d}.jpg'
        objects = []
        for _ in range(objects_per_image):
            w = int(rng.integers(width // 4, width // 2))
            h = int(rng.integers(height // 4, height // 2))
            objects.append((int(rng.integers(0, width - w)),
                            int(rng.integers(0, height - h)), w, h))
        Image.fromarray(_image(rng, height, width, objects)).save(
            osp.join(image_dir, file_name), quality=95)
        images.append(dict(id=image_id, file_name=file_name, height=height,
                           width=width))
        for x0, y0, w, h in objects:
            polygon = [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=cats[int(rng.integers(0, len(cats)))]['id'],
                bbox=[float(x0), float(y0), float(w), float(h)],
                area=float(w * h), segmentation=[[float(v) for v in polygon]],
                iscrowd=0))
    content = dict(info=dict(description='tiny COCO-format test set'),
                   licenses=[], images=images, annotations=annotations,
                   categories=cats)
    with open(annotation_file(root, split), 'w') as f:
        json.dump(content, f)
    return content


def annotation_file(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'instances_{split}2017.json')


def write_coco(root: str, train_ids=(9, 25), val_ids=(139, ),
               size=(96, 128)) -> str:
    """A train and a val split under ``root``; returns ``root`` with a
    trailing slash, as mmdet's ``data_root`` is written."""
    write_split(root, 'train', train_ids, size=size, seed=1)
    write_split(root, 'val', val_ids, size=size, seed=2)
    return root.rstrip('/') + '/'


def data_options(root: str) -> Dict[str, str]:
    """``--cfg-options`` pointing a coco config's loaders and evaluators
    at ``root`` (written by :func:`write_coco`)."""
    options = {f'{s}_dataloader.dataset.data_root': root
               for s in ('train', 'val', 'test')}
    for s in ('val', 'test'):
        options[f'{s}_evaluator.ann_file'] = annotation_file(root, 'val')
    return options
