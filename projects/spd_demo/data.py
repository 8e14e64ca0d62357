"""The demo's data: scikit-learn's bundled 8x8 handwritten digits, written
to disk in mmpretrain's ``CustomDataset`` layout.

No download: ``sklearn.datasets.load_digits`` reads a file that ships inside
the scikit-learn wheel (1797 images, 10 classes, 16 grey levels). Each image
is scaled to 22x22 and centred on a black 32x32 canvas (LeNet-5's input, with
room to rotate) and saved as a greyscale PNG::

    <root>/digits04/{train,val}/digit_<k>/*.png      pretraining (0-4)
    <root>/digits59/{train,val,test}/digit_<k>/*.png fine-tuning (5-9)

The two tasks share no class: fine-tuning must learn digits the pretrained
features were never trained to tell apart.
"""
import json
import os
import os.path as osp
import shutil
from dataclasses import asdict, dataclass
from typing import Dict, Sequence

import numpy as np
from PIL import Image

#: Canvas and digit size in pixels.
CANVAS, DIGIT = 32, 22


@dataclass(frozen=True)
class DigitSplits:
    """How the bundled digits are divided (per class, after a seeded shuffle).

    Args:
        pretrain_classes: digits of the pretraining task.
        finetune_classes: digits of the fine-tuning (ID) task.
        pretrain_val_per_class: pretraining images held out per class (to
            log the pretrained model's accuracy; the rest is its train set).
        finetune_train_per_class: fine-tuning train images per class.
        finetune_val_per_class: ID validation images per class (model
            selection only); the remaining images of each class are the ID
            test set (and, transformed, the OOD sets).
        seed: seed of the shuffle.
    """
    pretrain_classes: Sequence[int] = (0, 1, 2, 3, 4)
    finetune_classes: Sequence[int] = (5, 6, 7, 8, 9)
    pretrain_val_per_class: int = 30
    finetune_train_per_class: int = 30
    finetune_val_per_class: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        overlap = set(self.pretrain_classes) & set(self.finetune_classes)
        if overlap:
            raise ValueError(f'Pretraining and fine-tuning classes must be '
                             f'disjoint, both have {sorted(overlap)}')
        for name in ('pretrain_val_per_class', 'finetune_train_per_class',
                     'finetune_val_per_class'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'Invalid {name} {value!r}: expected an '
                                 f'integer >= 1')


def load_digit_images():
    """``(images, labels)``: uint8 ``(N, 32, 32)`` canvases, digit labels."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    scaled = np.clip(digits.images * (255. / 16.), 0, 255).astype(np.uint8)
    offset = (CANVAS - DIGIT) // 2
    canvases = np.zeros((len(scaled), CANVAS, CANVAS), dtype=np.uint8)
    for i, img in enumerate(scaled):
        big = Image.fromarray(img, mode='L').resize((DIGIT, DIGIT),
                                                    Image.BILINEAR)
        canvases[i, offset:offset + DIGIT, offset:offset + DIGIT] = big
    return canvases, digits.target.astype(int)


def split_indices(labels: np.ndarray,
                  splits: DigitSplits) -> Dict[str, Dict[str, list]]:
    """``{task: {split: [indices]}}`` for ``digits04`` and ``digits59``.

    Raises ``ValueError`` when a class has too few images for the sizes
    asked for (the test split must keep at least one image per class).
    """
    rng = np.random.default_rng(splits.seed)
    plan = {
        'digits04': (splits.pretrain_classes,
                     [('val', splits.pretrain_val_per_class),
                      ('train', None)]),
        'digits59': (splits.finetune_classes,
                     [('train', splits.finetune_train_per_class),
                      ('val', splits.finetune_val_per_class),
                      ('test', None)]),
    }
    result: Dict[str, Dict[str, list]] = {}
    for task, (classes, sizes) in plan.items():
        result[task] = {name: [] for name, _ in sizes}
        for k in classes:
            members = rng.permutation(np.flatnonzero(labels == k))
            fixed = sum(n for _, n in sizes if n is not None)
            if len(members) <= fixed:
                raise ValueError(f'Digit {k} has {len(members)} images, '
                                 f'too few for the {fixed} per class asked '
                                 f'for the fixed splits of {task}')
            start = 0
            for name, size in sizes:
                stop = len(members) if size is None else start + size
                result[task][name].extend(int(i) for i in members[start:stop])
                start = stop
    return result


def write_digit_datasets(root: str, splits: DigitSplits = DigitSplits()
                         ) -> dict:
    """Write both tasks under ``root`` and return their manifest.

    The manifest (also written to ``<root>/manifest.json``, last) holds the
    split sizes and the ``splits`` used; an existing ``root`` is replaced.
    """
    images, labels = load_digit_images()
    indices = split_indices(labels, splits)
    if osp.isdir(root):
        shutil.rmtree(root)
    counts: Dict[str, Dict[str, int]] = {}
    for task, task_splits in indices.items():
        counts[task] = {}
        for split, members in task_splits.items():
            for i in members:
                folder = osp.join(root, task, split, f'digit_{labels[i]}')
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(images[i], mode='L').save(
                    osp.join(folder, f'{i:04d}.png'))
            counts[task][split] = len(members)
        counts[task] = {split: counts[task][split]
                        for split in ('train', 'val', 'test')
                        if split in counts[task]}
    manifest = dict(source='sklearn.datasets.load_digits',
                    splits=asdict(splits), counts=counts)
    manifest['splits'] = {k: list(v) if isinstance(v, tuple) else v
                          for k, v in manifest['splits'].items()}
    with open(osp.join(root, 'manifest.json'), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=2)
    return manifest
