"""Write tiny image data sets to disk in the real layouts the code reads."""
import os
import os.path as osp

import numpy as np
from PIL import Image


def write_custom_classification_set(root: str, num_classes: int = 3,
                                    per_class: int = 8, size: int = 32,
                                    splits=('train', 'val'),
                                    seed: int = 0) -> str:
    """mmpretrain ``CustomDataset`` layout: ``root/<split>/<class>/*.png``.

    Class ``k`` is a bright horizontal band at a class-specific height on
    noise, so a small network can learn it in a few iterations. Returns
    ``root``.
    """
    rng = np.random.default_rng(seed)
    for split in splits:
        for k in range(num_classes):
            folder = osp.join(root, split, f'class_{k}')
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 80, size=(size, size), dtype=np.uint8)
                band = (k * size) // num_classes
                img[band:band + size // num_classes // 2, :] = 230
                Image.fromarray(img, mode='L').save(
                    osp.join(folder, f'{split}_{k}_{i}.png'))
    return root
