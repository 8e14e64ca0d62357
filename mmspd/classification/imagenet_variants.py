"""The ImageNet distribution shifts: ImageNet-V2, -Sketch, -A and -R.

All four are class-folder layouts whose labels are ImageNet-1k class
indices, so a model with the 1000-way ImageNet head is evaluated on them
directly::

    data/imagenetv2-matched-frequency-format-val/0/*.jpeg .. 999/*.jpeg
    data/imagenet-sketch/sketch/n01440764/*.JPEG ...          (1000 classes)
    data/imagenet-a/n01498041/*.jpg ... (+ README.txt)        (200 classes)
    data/imagenet-r/n01443537/*.jpg ... (+ README.txt)        (200 classes)

No label is ever taken from a sorted folder list: ImageNet-V2's folder
``'10'`` is class 10 (a lexicographic sort would put it third), and a
WordNet-id folder is looked up in
:data:`~mmspd.classification.categories.IMAGENET_WNIDS`. ImageNet-A and -R
cover 200 classes each; their ``metainfo['label_subset']`` lists those
classes' 1000-way indices, which
:class:`~mmspd.classification.metrics.MaskedAccuracy` restricts the logits
to.
"""
from functools import cached_property
from typing import Dict, List, Sequence, Tuple

from mmengine.fileio import get_file_backend
from mmpretrain.datasets import BaseDataset
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
from mmpretrain.registry import DATASETS

from .categories import IMAGENET_A_WNIDS, IMAGENET_R_WNIDS, IMAGENET_WNIDS

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')

_WNID_INDEX: Dict[str, int] = {w: i for i, w in enumerate(IMAGENET_WNIDS)}


class ClassFolderDataset(BaseDataset):
    """Images in one folder per class; the subclass maps folder -> label.

    Args:
        data_root: the data set's root folder.
        data_prefix: the folder holding the class folders, relative to
            ``data_root`` (default: ``data_root`` itself).
        **kwargs: the other arguments of
            :class:`mmpretrain.datasets.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ...), without ``ann_file``.

    Plain files next to the class folders (a README) are ignored; every
    sub-folder must be a known class, else ``ValueError`` naming it.
    """

    METAINFO = {'classes': IMAGENET_CATEGORIES}

    def __init__(self, data_root: str, data_prefix: str = '',
                 **kwargs) -> None:
        if 'ann_file' in kwargs:
            raise TypeError(f'{type(self).__name__} reads class folders and '
                            f'takes no ann_file (got '
                            f'{kwargs["ann_file"]!r})')
        super().__init__(ann_file='', data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    def folder_label(self, folder: str) -> int:
        """The ImageNet-1k label of class folder ``folder``."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path, gt_label)`` per image, class by class."""
        root = self.img_prefix
        backend = get_file_backend(root)
        if not backend.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: folder '
                                    f'{root!r} does not exist')
        folders = sorted(backend.list_dir_or_file(
            root, list_dir=True, list_file=False, recursive=False))
        labelled = [(self.folder_label(folder), folder) for folder in folders]
        data_list = []
        for label, folder in sorted(labelled):
            class_dir = backend.join_path(root, folder)
            files = sorted(backend.list_dir_or_file(
                class_dir, list_dir=False, list_file=True, recursive=True,
                suffix=IMAGE_EXTENSIONS + tuple(
                    e.upper() for e in IMAGE_EXTENSIONS)))
            data_list.extend(
                dict(img_path=backend.join_path(class_dir, name),
                     gt_label=label) for name in files)
        if not data_list:
            raise ValueError(f'{type(self).__name__}: no images in class '
                             f'folders under {root!r}')
        return data_list


@DATASETS.register_module()
class ImageNetV2(ClassFolderDataset):
    """ImageNet-V2 (any of its three variants): folders ``0`` .. ``999``.

    The folder name *is* the class index (``'10'`` -> 10); a name that is
    not a plain integer in ``[0, 1000)`` raises ``ValueError``.
    """

    def folder_label(self, folder: str) -> int:
        if not (folder.isdigit() and str(int(folder)) == folder
                and int(folder) < len(IMAGENET_WNIDS)):
            raise ValueError(f'ImageNetV2: class folder {folder!r} in '
                             f'{self.img_prefix!r} is not a class index '
                             f'0..999')
        return int(folder)


class WnidFolderDataset(ClassFolderDataset):
    """Folders named by WordNet id; ``WNIDS`` lists the classes allowed."""

    #: The WordNet ids this data set may contain.
    WNIDS: Sequence[str] = IMAGENET_WNIDS

    def folder_label(self, folder: str) -> int:
        if folder not in self._allowed:
            raise ValueError(f'{type(self).__name__}: class folder '
                             f'{folder!r} in {self.img_prefix!r} is not one '
                             f'of its {len(self.WNIDS)} WordNet ids')
        return _WNID_INDEX[folder]

    @cached_property
    def _allowed(self) -> frozenset:
        return frozenset(self.WNIDS)


@DATASETS.register_module()
class ImageNetSketch(WnidFolderDataset):
    """ImageNet-Sketch: one WordNet-id folder per ImageNet-1k class."""


def _subset(wnids: Sequence[str]) -> Tuple[int, ...]:
    return tuple(sorted(_WNID_INDEX[w] for w in wnids))


@DATASETS.register_module()
class ImageNetA(WnidFolderDataset):
    """ImageNet-A: 200 WordNet-id folders, labels in the 1000-class index.

    ``metainfo['label_subset']`` holds the 1000-way indices of the 200
    classes (all of them, whichever folders are present).
    """

    WNIDS = IMAGENET_A_WNIDS
    METAINFO = {'classes': IMAGENET_CATEGORIES,
                'label_subset': _subset(IMAGENET_A_WNIDS)}


@DATASETS.register_module()
class ImageNetR(WnidFolderDataset):
    """ImageNet-R: 200 WordNet-id folders, labels in the 1000-class index.

    ``metainfo['label_subset']`` as for :class:`ImageNetA`.
    """

    WNIDS = IMAGENET_R_WNIDS
    METAINFO = {'classes': IMAGENET_CATEGORIES,
                'label_subset': _subset(IMAGENET_R_WNIDS)}
