"""Bad COCO data are clear errors naming the value, raised when the data
set is built or before the first iteration, not deep inside a worker."""
import json
import os
import os.path as osp

import pytest
from mmdet.registry import DATASETS

import mmspd.detection  # noqa: F401  (registers the data set and hook)
from mmspd.detection import head_class_counts

from .coco_files import annotation_file, categories, write_split


def _build(root, ann_file=None, **kwargs):
    return DATASETS.build(dict(
        type='CheckedCocoDataset', _scope_='mmdet', data_root=root,
        ann_file=ann_file or annotation_file(root, 'val'),
        data_prefix=dict(img='val2017/'), test_mode=True, pipeline=[],
        **kwargs))


def test_a_good_set_builds_with_every_image_and_box(tmp_path):
    root = str(tmp_path)
    content = write_split(root, 'val', [139, 285, 632])
    dataset = _build(root)
    assert len(dataset) == 3
    assert sum(len(dataset.get_data_info(i)['instances'])
               for i in range(3)) == len(content['annotations'])


def test_a_missing_annotation_file_is_named(tmp_path):
    root = str(tmp_path)
    write_split(root, 'val', [139])
    missing = osp.join(root, 'annotations', 'instances_test2017.json')
    with pytest.raises(FileNotFoundError,
                       match='COCO annotation file .*instances_test2017.json'
                             '.* does not exist'):
        _build(root, ann_file=missing)


def test_an_image_listed_but_absent_is_named(tmp_path):
    root = str(tmp_path)
    write_split(root, 'val', [139, 285])
    os.remove(osp.join(root, 'val2017', '000000000285.jpg'))
    with pytest.raises(FileNotFoundError,
                       match=r"Image '.*000000000285.jpg' \(img_id 285\) "
                             r"listed by .*instances_val2017.json.* does "
                             r"not exist"):
        _build(root)
    assert len(_build(root, check_files=False)) == 2  # the opt-out


def test_categories_other_than_the_classes_are_named(tmp_path):
    root = str(tmp_path)
    three = [dict(id=1, name='cat'), dict(id=2, name='dog'),
             dict(id=3, name='zebra_crossing')]
    write_split(root, 'val', [139], category_list=three)
    with pytest.raises(ValueError,
                       match=r"has 3 categories but the data set has 80 "
                             r"classes.*in the file only: 'zebra_crossing';"
                             r" in the classes only: 'person', 'bicycle', "
                             r".* and 68 more"):
        _build(root)
    # the classes of the file: the set builds
    dataset = _build(root, metainfo=dict(
        classes=('cat', 'dog', 'zebra_crossing')))
    assert len(dataset) == 1


def test_an_annotation_of_an_unknown_category_is_named(tmp_path):
    root = str(tmp_path)
    write_split(root, 'val', [139])
    path = annotation_file(root, 'val')
    with open(path) as f:
        content = json.load(f)
    content['annotations'][0]['category_id'] = 12  # no COCO class 12
    with open(path, 'w') as f:
        json.dump(content, f)
    with pytest.raises(ValueError,
                       match=r"Annotation 1 of image '000000000139.jpg' .* "
                             r"has category_id 12, which is not one of"):
        _build(root)


def test_an_empty_annotation_file_is_an_error(tmp_path):
    root = str(tmp_path)
    write_split(root, 'val', [])
    with pytest.raises(ValueError, match='lists no image'):
        _build(root)


@pytest.mark.slow
def test_a_model_class_count_other_than_the_data_sets_is_named(tmp_path):
    """ClassCountCheckHook stops coco_spd.py with 5-class heads on COCO's
    80 classes before the first training iteration."""
    from mmengine.runner import Runner

    from .coco_files import data_options, write_coco
    from .test_coco_configs import config
    from .swin_files import write_coco_swin_t
    root = write_coco(str(tmp_path / 'coco'))
    cfg = config('coco_spd', tmp_path)
    swin = str(tmp_path / 'swin.pth')
    write_coco_swin_t(swin, cfg.model.backbone)
    options = dict(data_options(root))
    options.update({'model.roi_head.bbox_head.num_classes': 5,
                    'model.roi_head.mask_head.num_classes': 5,
                    'model.backbone.init_cfg.checkpoint': swin,
                    'train_dataloader.num_workers': 0,
                    'train_dataloader.persistent_workers': False})
    cfg.merge_from_dict(options)
    runner = Runner.from_cfg(cfg)
    assert head_class_counts(runner.model) == {
        'roi_head.bbox_head': 5, 'roi_head.mask_head': 5}
    with pytest.raises(ValueError,
                       match=r'model.roi_head.bbox_head.num_classes is 5 but '
                             r'the train data set \(CheckedCocoDataset\) has '
                             r'80 classes'):
        runner.train()
