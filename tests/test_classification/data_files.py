"""Tiny classification benchmarks written to disk in their real layouts.

Every image is a small JPEG whose colour depends on its class, so the files
are real images the real pipelines decode. Each writer returns the list of
``(relative path, label)`` it wrote, for the tests to compare with what the
data set classes read.
"""
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from mmspd.classification.categories import (DOMAINNET_CLASSES,
                                             IMAGENET_A_WNIDS,
                                             IMAGENET_R_WNIDS, IMAGENET_WNIDS)

SIZE = 40

#: DomainNet classes of the tiny set: the first three labels and one of the
#: capitalised names that sort away from their label.
DOMAINNET_LABELS = (0, 1, 2, DOMAINNET_CLASSES.index('The_Eiffel_Tower'))
DOMAINNET_OOD = ('sketch', 'painting', 'infograph', 'clipart')

#: ImageNet classes of the tiny ImageNet / -Sketch sets: classes that are in
#: both ImageNet-A and ImageNet-R, so every tiny set shares them.
SHARED_WNIDS = tuple(w for w in IMAGENET_A_WNIDS if w in IMAGENET_R_WNIDS)[:3]


def _image(path: str, label: int, index: int, seed: int) -> None:
    rng = np.random.default_rng([seed, label, index])
    color = np.array([(label * 53) % 256, (label * 97) % 256,
                      (label * 29) % 256], dtype=np.int16)
    noise = rng.integers(-30, 30, size=(SIZE, SIZE, 3))
    img = np.clip(color + noise, 0, 255).astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def write_domainnet(root: str, per_class: int = 2,
                    seed: int = 0) -> Dict[str, List[Tuple[str, int]]]:
    """``root/<domain>/<class>/<domain>_<label>_<i>.jpg`` and split files.

    Writes the official ``real_train.txt``, ``real_test.txt`` and
    ``<ood>_test.txt``, and the protocol's ``real_train_split.txt`` /
    ``real_val_split.txt`` (the first image of each class of real_train is
    validation). Returns ``{split file name: [(path, label), ...]}``.
    """
    lists: Dict[str, List[Tuple[str, int]]] = {}

    def images(domain: str, part: str, count: int):
        offset = {'train': 0, 'test': 100}[part]  # different pixels
        items = []
        for label in DOMAINNET_LABELS:
            name = DOMAINNET_CLASSES[label]
            for i in range(count):
                rel = f'{domain}/{name}/{domain}_{part}_{label}_{i}.jpg'
                _image(osp.join(root, rel), label, i + offset, seed)
                items.append((rel, label))
        return items

    lists['real_train.txt'] = images('real', 'train', per_class + 1)
    lists['real_test.txt'] = images('real', 'test', per_class)
    for domain in DOMAINNET_OOD:
        lists[f'{domain}_test.txt'] = images(domain, 'test', per_class)
    first = {label: rel for rel, label in reversed(lists['real_train.txt'])}
    lists['real_val_split.txt'] = [
        (rel, label) for rel, label in lists['real_train.txt']
        if first[label] == rel]
    lists['real_train_split.txt'] = [
        item for item in lists['real_train.txt']
        if item not in lists['real_val_split.txt']]
    for name, items in lists.items():
        with open(osp.join(root, name), 'w') as f:
            f.writelines(f'{rel} {label}\n' for rel, label in items)
    return lists


def write_imagenet(root: str, wnids: Sequence[str] = SHARED_WNIDS,
                   per_class: int = 3, seed: int = 1) -> None:
    """mmpretrain's ImageNet layout: ``train/<wnid>/*.JPEG``, flat
    ``val/*.JPEG`` and ``meta/{train,val}.txt`` (``<path> <label>``)."""
    train, val = [], []
    for wnid in wnids:
        label = IMAGENET_WNIDS.index(wnid)
        for i in range(per_class):
            rel = f'{wnid}/{wnid}_{i}.JPEG'
            _image(osp.join(root, 'train', rel), label, i, seed)
            train.append(f'{rel} {label}\n')
            rel = f'ILSVRC2012_val_{label:04d}{i:04d}.JPEG'
            _image(osp.join(root, 'val', rel), label, i + 50, seed)
            val.append(f'{rel} {label}\n')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
        f.writelines(train)
    with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
        f.writelines(val)


def write_class_folders(root: str, folders: Dict[str, int],
                        per_class: int = 2, seed: int = 2,
                        suffix: str = '.jpg',
                        readme: bool = False) -> List[Tuple[str, int]]:
    """``root/<folder>/<i><suffix>`` for each ``folder -> label``; with
    ``readme`` a README.txt next to the folders (as ImageNet-A/-R ship)."""
    items = []
    for folder, label in folders.items():
        for i in range(per_class):
            rel = f'{folder}/{i:05d}{suffix}'
            _image(osp.join(root, rel), label, i, seed)
            items.append((rel, label))
    if readme:
        with open(osp.join(root, 'README.txt'), 'w') as f:
            f.write('class folders named by WordNet id\n')
    return items


def write_imagenet_v2(root: str, num_folders: int = 12,
                      per_class: int = 1) -> List[Tuple[str, int]]:
    """ImageNet-V2 layout: folders ``0`` .. ``num_folders - 1`` named by
    class index (with 11 or more, ``'10'`` sorts before ``'2'``)."""
    return write_class_folders(root, {str(i): i for i in range(num_folders)},
                               per_class=per_class, suffix='.jpeg')


def write_wnid_folders(root: str, wnids: Sequence[str], per_class: int = 2,
                       readme: bool = False) -> List[Tuple[str, int]]:
    """WordNet-id folders (ImageNet-Sketch, -A, -R); labels are the
    1000-class indices."""
    return write_class_folders(
        root, {w: IMAGENET_WNIDS.index(w) for w in wnids},
        per_class=per_class, readme=readme)
