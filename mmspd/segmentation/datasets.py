"""Segmentation data sets that check their files before training:
``PascalMTDataset`` (the multi-task PASCAL-Context release, ``PASCAL_MT``)
and ``CheckedPascalContextDataset59`` (mmseg's PASCAL-Context-59 plus the
same checks). :func:`check_label_maps` is the check: every image and label
map exists, and every label map is an 8-bit single-channel image (PNG mode
``L`` or ``P``) of its image's size; a bad one raises an error naming the
file and what was expected when the data set is built, not deep inside a
data-loader worker.

``PASCAL_MT``:

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
from mmseg.datasets import (BaseSegDataset, PascalContextDataset59,
                            PascalVOCDataset)
from mmseg.registry import DATASETS
from PIL import Image

#: PIL modes of a label map: one 8-bit channel, grey or palette indices.
LABEL_MAP_MODES = ('L', 'P')


def check_label_maps(data_list: List[dict], split_file: str) -> None:
    """Check the files of a segmentation data list (local files only).

    For every ``dict(img_path, seg_map_path)``: both files exist, and the
    label map is mode ``L`` or ``P`` (PIL reads only the headers) with the
    image's width and height. Entries on another storage backend (a URI
    such as ``s3://...``) are left to the loader. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the first bad file and
    ``split_file``.
    """
    for info in data_list:
        img_path, seg_path = info['img_path'], info.get('seg_map_path')
        if '://' in str(img_path):
            continue  # another backend (s3://, http://): the loader reads it
        if not osp.isfile(img_path):
            raise FileNotFoundError(f'Image {img_path!r} listed by '
                                    f'{split_file!r} does not exist')
        if seg_path is None:
            continue
        if not osp.isfile(seg_path):
            raise FileNotFoundError(f'Label map {seg_path!r} of image '
                                    f'{img_path!r} ({split_file!r}) does not '
                                    f'exist')
        with Image.open(seg_path) as label, Image.open(img_path) as img:
            label_mode, label_size, img_size = label.mode, label.size, \
                img.size
        if label_mode not in LABEL_MAP_MODES or label_size != img_size:
            raise ValueError(
                f'Label map {seg_path!r} ({split_file!r}) is a '
                f'{label_size[0]}x{label_size[1]} image of mode '
                f'{label_mode!r}; expected an 8-bit single-channel label '
                f'map (mode {" or ".join(LABEL_MAP_MODES)}, one class index '
                f'per pixel, not a colour rendering) of the image\'s size '
                f'{img_size[0]}x{img_size[1]} ({img_path!r})')


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
        check_files: run :func:`check_label_maps` on the data list (label
            map mode and size; default True).
        **kwargs: as :class:`mmseg.datasets.BaseSegDataset`.

    Raises:
        FileNotFoundError: naming the split file when it is missing, or the
            first image whose picture or label map is missing (with the
            paths tried), when the data list is loaded.
        ValueError: naming the split file when it lists no image, or the
            first label map of the wrong mode or size.
    """
    METAINFO = copy.deepcopy(PascalVOCDataset.METAINFO)

    def __init__(self,
                 ann_file: str = 'ImageSets/Context/train.txt',
                 data_prefix: Optional[dict] = None,
                 label_dirs: Sequence[str] = ('VOC12', 'pascal-context'),
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 check_files: bool = True,
                 **kwargs) -> None:
        self.check_files = check_files
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
        if self.check_files:
            check_label_maps(data_list, self.ann_file)
        return data_list


@DATASETS.register_module()
class CheckedPascalContextDataset59(PascalContextDataset59):
    """mmseg's ``PascalContextDataset59`` that checks its files when built.

    Same arguments, classes and labels (``reduce_zero_label=True``: value 0
    is ignored, 1..59 become 0..58); in addition ``check_files`` (default
    True). Raises ``FileNotFoundError`` naming a missing split file (mmseg
    asserts, or scans the image folder when ``ann_file`` is a folder) or a
    missing image / label map, and ``ValueError`` naming an empty split
    file or a label map of the wrong mode or size
    (:func:`check_label_maps`).
    """

    def __init__(self, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'PASCAL-Context split file {self.ann_file!r} does not exist '
                f'(expected ImageSets/SegmentationContext/<split>.txt, one '
                f'image id per line)')
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'PASCAL-Context split file {self.ann_file!r} '
                             f'lists no image')
        if self.check_files:
            check_label_maps(data_list, self.ann_file)
        return data_list
