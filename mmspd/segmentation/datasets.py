"""``PascalMTDataset``: semantic segmentation of the multi-task PASCAL-Context
release (``PASCAL_MT``).

Robust fine-tuning work on PASCAL-Context with a Swin encoder (the SPD paper
and the multi-task papers it follows) does not use mmseg's 59/60-class
PASCAL-Context but the ``PASCAL_MT`` release of Maninis et al. (CVPR 2019),
whose semantic labels are the 20 PASCAL VOC classes plus background::

    PASCAL_MT/
    ├── JPEGImages/<id>.jpg
    ├── semseg/
    │   ├── VOC12/<id>.png            # preferred when present
    │   └── pascal-context/<id>.png   # otherwise
    └── ImageSets/Context/{train,val}.txt   # one <id> per line

train has 4,998 and val 5,105 images. Label values: 0 background (a class),
1..20 the VOC classes, 255 ignore.
"""
import copy
import os.path as osp
from typing import List, Optional, Sequence

import mmengine
from mmengine import fileio
from mmseg.datasets import BaseSegDataset, PascalVOCDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class PascalMTDataset(BaseSegDataset):
    """The 21-class semantic segmentation task of ``PASCAL_MT``.

    Each id of the split file gives ``<img_path>/<id><img_suffix>`` and the
    first existing label map among
    ``<seg_map_path>/<label_dir>/<id><seg_map_suffix>`` for ``label_dir`` in
    ``label_dirs`` (in that order, as the release's own loader does).

    Args:
        ann_file: the split file, relative to ``data_root``
            (``'ImageSets/Context/train.txt'`` or ``.../val.txt``).
        data_prefix: ``img_path`` and ``seg_map_path``, relative to
            ``data_root`` (default ``'JPEGImages'`` and ``'semseg'``).
        label_dirs: sub-folders of ``seg_map_path`` searched for each label
            map, first match wins.
        reduce_zero_label: must be ``False``: 0 is the background class.
        **kwargs: as :class:`mmseg.datasets.BaseSegDataset`.

    Raises:
        FileNotFoundError: naming the split file when it is missing, or the
            first image whose picture or label map is missing (with the
            paths tried), when the data list is loaded.
        ValueError: naming the split file when it lists no image.
    """
    METAINFO = copy.deepcopy(PascalVOCDataset.METAINFO)

    def __init__(self,
                 ann_file: str = 'ImageSets/Context/train.txt',
                 data_prefix: Optional[dict] = None,
                 label_dirs: Sequence[str] = ('VOC12', 'pascal-context'),
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        if reduce_zero_label:
            raise ValueError(f'PascalMTDataset needs reduce_zero_label=False '
                             f'(label 0 is the background class), got '
                             f'{reduce_zero_label!r}')
        if isinstance(label_dirs, str) or not label_dirs:
            raise ValueError(f'label_dirs must be a non-empty sequence of '
                             f'folder names, got {label_dirs!r}')
        self.label_dirs = tuple(label_dirs)
        super().__init__(
            ann_file=ann_file,
            data_prefix={'img_path': 'JPEGImages', 'seg_map_path': 'semseg',
                         **(data_prefix or {})},
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=False,
            **kwargs)

    def _find_label(self, image_id: str) -> str:
        tried = [osp.join(self.data_prefix['seg_map_path'], folder,
                          image_id + self.seg_map_suffix)
                 for folder in self.label_dirs]
        for path in tried:
            if fileio.exists(path, backend_args=self.backend_args):
                return path
        raise FileNotFoundError(f'No label map for image {image_id!r} of '
                                f'{self.ann_file}: tried {tried}')

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path, seg_map_path, ...)`` per id of the split."""
        if not fileio.exists(self.ann_file, backend_args=self.backend_args):
            raise FileNotFoundError(f'PascalMTDataset split file '
                                    f'{self.ann_file!r} does not exist')
        ids = [line.strip() for line in mmengine.list_from_file(
            self.ann_file, backend_args=self.backend_args)]
        ids = [i for i in ids if i]
        if not ids:
            raise ValueError(f'PascalMTDataset split file {self.ann_file!r} '
                             f'lists no image')
        data_list = []
        for image_id in ids:
            img_path = osp.join(self.data_prefix['img_path'],
                                image_id + self.img_suffix)
            if not fileio.exists(img_path, backend_args=self.backend_args):
                raise FileNotFoundError(f'Image {image_id!r} of '
                                        f'{self.ann_file} not found at '
                                        f'{img_path}')
            data_list.append(dict(
                img_path=img_path,
                seg_map_path=self._find_label(image_id),
                label_map=self.label_map,
                reduce_zero_label=False,
                seg_fields=[]))
        return data_list
