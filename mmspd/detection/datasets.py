"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` that checks its files
and categories when it is built.

mmdet's ``CocoDataset`` reports a missing annotation file as a bare
``No such file or directory``, an image listed in the file but absent only
when a data-loader worker reads it, and an annotation file whose categories
are not the data set's classes either by a ``KeyError`` of a category id or
not at all (annotations of unknown categories then vanish from training and
evaluation). Each of these is a clear error here, raised when the data set
is built (before training or testing starts) and naming the value.
"""
import os.path as osp
from typing import List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine import fileio

#: Category names of a file listed in an error before "... and N more".
MAX_LISTED = 10


def _listed(names) -> str:
    names = list(names)
    shown = ', '.join(map(repr, names[:MAX_LISTED]))
    more = len(names) - MAX_LISTED
    return shown + (f' ... and {more} more' if more > 0 else '')


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` plus checks, same arguments and outputs.

    Checks, in this order, each a clear error naming the value:

    * the annotation file exists (``FileNotFoundError``);
    * its categories are exactly the data set's classes
      (``metainfo['classes']``, COCO's 80 by default), by name and number
      (``ValueError`` listing both; for another data set set
      ``metainfo=dict(classes=...)`` and the model's ``num_classes``);
    * it lists at least one image (``ValueError``), and every annotation's
      ``category_id`` is one of its categories (``ValueError`` naming the id
      and the image);
    * with ``check_files`` (default True), every image it lists exists on
      disk (``FileNotFoundError`` naming the first missing one and the
      annotation file; paths on other storage backends are left to the
      loader).

    The model's class count is checked against the data set's classes by
    :class:`~mmspd.detection.ClassCountCheckHook`.
    """

    def __init__(self, *args, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        if not fileio.exists(self.ann_file, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'COCO annotation file {self.ann_file!r} does not exist '
                f'(expected e.g. <data_root>/annotations/'
                f'instances_val2017.json)')
        self._categories_checked = False
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'COCO annotation file {self.ann_file!r} lists '
                             f'no image')
        if self.check_files:
            self._check_images(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        # the file's COCO index (self.coco) exists while the list is built
        if not self._categories_checked:
            self._check_categories()
            self._categories_checked = True
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('category_id') not in self.cat2label:
                raise ValueError(
                    f'Annotation {ann.get("id")!r} of image '
                    f'{raw_data_info["raw_img_info"].get("file_name")!r} in '
                    f'{self.ann_file!r} has category_id '
                    f'{ann.get("category_id")!r}, which is not one of the '
                    f'file\'s categories {sorted(self.cat2label)}')
        return super().parse_data_info(raw_data_info)

    def _check_categories(self) -> None:
        classes = tuple(self.metainfo['classes'])
        categories = [cat['name'] for _, cat in sorted(self.coco.cats.items())]
        if len(categories) == len(classes) and set(categories) == set(
                classes):
            return
        missing = [c for c in classes if c not in categories]
        extra = [c for c in categories if c not in classes]
        raise ValueError(
            f'COCO annotation file {self.ann_file!r} has {len(categories)} '
            f'categories but the data set has {len(classes)} classes '
            f'(metainfo classes); in the file only: {_listed(extra) or "-"}; '
            f'in the classes only: {_listed(missing) or "-"}. For a data '
            f'set other than COCO, set the dataset\'s '
            f'metainfo=dict(classes=(...)) to the file\'s category names and '
            f'the model\'s num_classes to their number')

    def _check_images(self, data_list: List[dict]) -> None:
        for info in data_list:
            path = info['img_path']
            if '://' in str(path):
                continue  # another backend: the loader reads it
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'Image {path!r} (img_id {info.get("img_id")!r}) listed '
                    f'by {self.ann_file!r} does not exist')
