"""DomainNet: any domain and split, read from its split files.

Layout (the official download plus the split files next to the domain
folders; ``split_dir`` moves the split files elsewhere)::

    data/domainnet/
        real/aircraft_carrier/real_001_000001.jpg
        sketch/...
        real_train.txt            # official lists: <domain>_{train,test}.txt
        real_test.txt
        sketch_test.txt
        real_train_split.txt      # robust fine-tuning protocol: the ID
        real_val_split.txt        # validation set carved out of real_train
        real_train_10_percent_split.txt   # low-data variants

A split file has one image per line, ``<domain>/<class>/<file> <label>``,
with ``label`` the index of ``<class>`` in
:data:`~mmspd.classification.categories.DOMAINNET_CLASSES`.
"""
import os
import os.path as osp
import random
import re
from typing import List, Optional

from mmengine.fileio import get_file_backend, list_from_file
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .categories import DOMAINNET_CLASSES

#: The six DomainNet domains.
DOMAINNET_DOMAINS = ('clipart', 'infograph', 'painting', 'quickdraw', 'real',
                     'sketch')

_SPLIT = re.compile(r'^[A-Za-z0-9_]+$')


@DATASETS.register_module()
class DomainNet(BaseDataset):
    """One DomainNet split file: ``<split_dir>/<domain>_<split>.txt``.

    Args:
        data_root: the DomainNet folder (split files and domain folders).
        domain: one of :data:`DOMAINNET_DOMAINS`; every line of the split
            file must be an image of this domain.
        split: the split-file suffix: ``'train'``, ``'test'`` (official),
            ``'train_split'``, ``'val_split'`` (ID train/validation of the
            robust fine-tuning protocol), ``'train_10_percent_split'``, ...
        split_dir: folder of the split files, relative to ``data_root``
            (default: ``data_root`` itself).
        data_prefix: folder the image paths are relative to, relative to
            ``data_root`` (default: ``data_root`` itself).
        **kwargs: the other arguments of
            :class:`mmpretrain.datasets.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ...).

    Every line is checked: two fields, an integer label in ``[0, 345)``, a
    path ``<domain>/<class>/...`` whose class folder is the name of that
    label. A mismatch raises ``ValueError`` naming the file and line, so a
    split file with another label order is caught at load time; a listed
    image that is not on disk raises ``FileNotFoundError`` naming it.
    """

    METAINFO = {'classes': DOMAINNET_CLASSES}

    def __init__(self,
                 data_root: str,
                 domain: str,
                 split: str,
                 split_dir: str = '',
                 data_prefix: str = '',
                 **kwargs) -> None:
        if domain not in DOMAINNET_DOMAINS:
            raise ValueError(f'Unknown DomainNet domain {domain!r}: expected '
                             f'one of {", ".join(DOMAINNET_DOMAINS)}')
        if not isinstance(split, str) or not _SPLIT.match(split):
            raise ValueError(f'Invalid DomainNet split {split!r}: expected '
                             f'the suffix of a split file <domain>_<split>'
                             f'.txt, e.g. "train", "test", "val_split"')
        if 'ann_file' in kwargs:
            raise TypeError('DomainNet takes domain= and split= (the split '
                            'file is <split_dir>/<domain>_<split>.txt), not '
                            f'ann_file={kwargs["ann_file"]!r}')
        self.domain = domain
        self.split = split
        super().__init__(
            ann_file=osp.join(split_dir, f'{domain}_{split}.txt'),
            data_root=data_root,
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path, gt_label)`` per line of the split file."""
        backend = get_file_backend(self.ann_file)
        if not backend.exists(self.ann_file):
            raise FileNotFoundError(
                f'DomainNet split file {self.ann_file!r} does not exist '
                f'(domain={self.domain!r}, split={self.split!r})'
                f'{self._available_splits()}')
        classes = self.metainfo['classes']
        data_list = []
        for lineno, line in enumerate(list_from_file(self.ann_file), 1):
            if not line.strip():
                continue
            path, label = self._parse(line, lineno, classes)
            data_list.append(dict(
                img_path=backend.join_path(self.img_prefix, path),
                gt_label=label))
        if not data_list:
            raise ValueError(f'DomainNet split file {self.ann_file!r} lists '
                             f'no images')
        self._check_images_exist(data_list)
        return data_list

    def _check_images_exist(self, data_list: List[dict]) -> None:
        """Raise ``FileNotFoundError`` naming the first listed image that is
        not on disk, and how many are missing (local files only)."""
        if '://' in self.img_prefix:
            return  # another storage backend: the loader reads it
        missing = [info['img_path'] for info in data_list
                   if not osp.isfile(info['img_path'])]
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} of the {len(data_list)} images listed by '
                f'DomainNet split file {self.ann_file!r} do not exist, the '
                f'first: {missing[0]!r} (expected the domain folders '
                f'<domain>/<class>/<file> under {self.img_prefix!r})')

    def _parse(self, line: str, lineno: int, classes) -> tuple:
        where = f'{self.ann_file}:{lineno}'
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f'{where}: expected "<domain>/<class>/<file> '
                             f'<label>", got {line!r}')
        path, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise ValueError(f'{where}: label {label_text!r} is not an '
                             f'integer') from None
        if not 0 <= label < len(classes):
            raise ValueError(f'{where}: label {label} is outside [0, '
                             f'{len(classes)})')
        parts = path.split('/')
        if len(parts) < 3 or parts[0] != self.domain:
            raise ValueError(f'{where}: {path!r} is not an image of domain '
                             f'{self.domain!r} (<domain>/<class>/<file>)')
        if parts[1] != classes[label]:
            raise ValueError(f'{where}: class folder {parts[1]!r} does not '
                             f'match label {label} ({classes[label]!r})')
        return path, label

    def _available_splits(self) -> str:
        folder = osp.dirname(self.ann_file)
        if not osp.isdir(folder):
            return ''
        found = sorted(name[len(self.domain) + 1:-4]
                       for name in os.listdir(folder)
                       if name.startswith(f'{self.domain}_')
                       and name.endswith('.txt'))
        return f'; splits found for this domain: {found}' if found else ''

    def extra_repr(self) -> List[str]:
        return [f'Domain: \t{self.domain}', f'Split: \t{self.split}',
                f'Split file: \t{self.ann_file}']


def carve_validation_split(train_lines: List[str], val_fraction: float,
                           seed: int = 0,
                           train_fraction: Optional[float] = None):
    """Split an official ``<domain>_train.txt`` into ID train / validation.

    Per class, ``round(val_fraction * n)`` images (at least one when the
    class has two or more) go to validation, chosen with ``seed``; the rest
    is the training list, of which a ``train_fraction`` (per class, at least
    one image) is kept for low-data variants. Lines keep their file order.

    Returns ``(train_lines, val_lines)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got '
                         f'{val_fraction!r}')
    if train_fraction is not None and not 0.0 < train_fraction <= 1.0:
        raise ValueError(f'train_fraction must be in (0, 1], got '
                         f'{train_fraction!r}')
    by_label = {}
    for index, line in enumerate(train_lines):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f'line {index + 1}: expected "<path> <label>", '
                             f'got {line!r}')
        by_label.setdefault(fields[1], []).append(index)
    rng = random.Random(seed)
    val, train = set(), set()
    for label in sorted(by_label, key=int):
        indices = by_label[label][:]
        rng.shuffle(indices)
        n_val = round(val_fraction * len(indices))
        if len(indices) >= 2:
            n_val = min(max(n_val, 1), len(indices) - 1)
        val.update(indices[:n_val])
        rest = indices[n_val:]
        if train_fraction is not None:
            rest = rest[:max(1, round(train_fraction * len(rest)))]
        train.update(rest)
    return ([train_lines[i] for i in sorted(train)],
            [train_lines[i] for i in sorted(val)])
