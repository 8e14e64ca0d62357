"""PascalMTDataset on a tiny PASCAL_MT tree written in the release layout."""
import os
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS

import mmspd.segmentation  # noqa: F401  (registers PascalMTDataset)

from .seg_files import read_label, write_pascal_mt

TRAIN = ['2008_000002', '2008_000003', '2008_000007']
VAL = ['2008_000009', '2010_000001']
VOC12 = ['2008_000003', '2010_000001']  # these also have a VOC12 label


@pytest.fixture(scope='module')
def mt(tmp_path_factory):
    return write_pascal_mt(str(tmp_path_factory.mktemp('mt')),
                           {'train': TRAIN, 'val': VAL}, voc12_ids=VOC12)


def _dataset(mt, split='train', **kwargs):
    return DATASETS.build(dict(
        type='PascalMTDataset', _scope_='mmseg', data_root=mt,
        ann_file=f'ImageSets/Context/{split}.txt',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')], **kwargs))


def test_21_voc_classes_with_background_first(mt):
    dataset = _dataset(mt)
    classes = dataset.metainfo['classes']
    assert len(classes) == 21 and classes[0] == 'background'
    assert classes[15] == 'person' and len(dataset.metainfo['palette']) == 21
    assert dataset.reduce_zero_label is False and dataset.ignore_index == 255


@pytest.mark.parametrize('split, ids', [('train', TRAIN), ('val', VAL)])
def test_labels_come_from_voc12_when_present_else_pascal_context(
        mt, split, ids):
    dataset = _dataset(mt, split)
    assert len(dataset) == len(ids)
    for i, image_id in enumerate(ids):
        info = dataset.get_data_info(i)
        assert info['img_path'] == osp.join(mt, 'JPEGImages',
                                            f'{image_id}.jpg')
        folder = 'VOC12' if image_id in VOC12 else 'pascal-context'
        expected = osp.join(mt, 'semseg', folder, f'{image_id}.png')
        assert info['seg_map_path'] == expected
        sample = dataset[i]
        # labels as stored: 0 is background (a class), no zero reduction;
        # VOC12's palette PNGs are read as indices
        assert np.array_equal(sample['gt_seg_map'], read_label(expected))
        values = set(np.unique(sample['gt_seg_map']).tolist())
        assert values == ({0, 255} if image_id in VOC12 else {0, 1, 2, 3})


def test_the_label_folders_are_configurable(mt):
    dataset = _dataset(mt, 'val', label_dirs=('pascal-context', ))
    assert all('pascal-context' in dataset.get_data_info(i)['seg_map_path']
               for i in range(len(dataset)))


def test_data_prefix_keys_replace_the_defaults_one_by_one(mt, tmp_path):
    root = str(tmp_path)
    os.symlink(osp.join(mt, 'JPEGImages'), osp.join(root, 'images'))
    for name in ('semseg', 'ImageSets'):
        os.symlink(osp.join(mt, name), osp.join(root, name))
    dataset = _dataset(root, 'val', data_prefix=dict(img_path='images'))
    info = dataset.get_data_info(0)
    assert info['img_path'] == osp.join(root, 'images', f'{VAL[0]}.jpg')
    assert info['seg_map_path'] == osp.join(root, 'semseg', 'pascal-context',
                                            f'{VAL[0]}.png')
    both = _dataset(mt, 'val', data_prefix=dict(img_path='JPEGImages',
                                                seg_map_path='semseg'))
    assert len(both) == len(VAL)


def test_a_missing_label_names_the_image_and_the_paths_tried(mt, tmp_path):
    split = osp.join(mt, 'ImageSets', 'Context', 'orphan.txt')
    os.symlink(osp.join(mt, 'JPEGImages', f'{TRAIN[0]}.jpg'),
               osp.join(mt, 'JPEGImages', 'orphan.jpg'))
    with open(split, 'w') as f:
        f.write(f'{TRAIN[0]}\norphan\n')
    with pytest.raises(FileNotFoundError,
                       match="No label map for image 'orphan'.*VOC12.*"
                       "pascal-context"):
        _dataset(mt, 'orphan')


@pytest.mark.parametrize('content, error, message', [
    (None, FileNotFoundError, "split file '.*missing.txt' does not exist"),
    ('\n\n', ValueError, "split file '.*missing.txt' lists no image"),
    ('2099_000001\n', FileNotFoundError,
     "Image '2099_000001' .* not found at .*2099_000001.jpg"),
])
def test_bad_splits_are_named(tmp_path, mt, content, error, message):
    root = str(tmp_path)
    os.makedirs(osp.join(root, 'ImageSets', 'Context'))
    os.symlink(osp.join(mt, 'JPEGImages'), osp.join(root, 'JPEGImages'))
    if content is not None:
        with open(osp.join(root, 'ImageSets', 'Context', 'missing.txt'),
                  'w') as f:
            f.write(content)
    with pytest.raises(error, match=message):
        _dataset(root, 'missing')


@pytest.mark.parametrize('kwargs, message', [
    (dict(reduce_zero_label=True), 'reduce_zero_label=False.*got True'),
    (dict(label_dirs='VOC12'), "label_dirs .* got 'VOC12'"),
    (dict(label_dirs=()), r'label_dirs .* got \(\)'),
])
def test_bad_arguments_are_named(mt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _dataset(mt, **kwargs)
