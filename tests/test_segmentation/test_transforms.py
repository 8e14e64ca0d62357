"""ImageCorruption in real mmseg pipelines on PASCAL-Context files on disk."""
import os.path as osp
import shutil

import numpy as np
import pytest
from mmseg.registry import DATASETS, TRANSFORMS

import mmspd.segmentation  # noqa: F401  (registers ImageCorruption)
from mmspd.corruption import corrupt_image, seed_for
from mmspd.segmentation import ImageCorruption

from .seg_files import read_label, write_pascal_context

IDS = ['2008_000002', '2008_000003', '2008_000007']
FOG = dict(type='ImageCorruption', corruption='fog', severity=3)


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = write_pascal_context(str(tmp_path_factory.mktemp('ctx')),
                                {'val': IDS})
    # a twin: the same pixels as 2008_000002 under another id
    jpg = osp.join(root, 'JPEGImages')
    shutil.copy(osp.join(jpg, f'{IDS[0]}.jpg'), osp.join(jpg, 'twin.jpg'))
    labels = osp.join(root, 'SegmentationClassContext')
    shutil.copy(osp.join(labels, f'{IDS[0]}.png'),
                osp.join(labels, 'twin.png'))
    return root


def _dataset(voc, transforms, ids=None, after='LoadImageFromFile'):
    """PascalContextDataset59 on ``voc`` with ``transforms`` after
    ``after`` (no Resize: the label map is compared with the file)."""
    split = 'ImageSets/SegmentationContext/val.txt'
    if ids is not None:
        split = f'ImageSets/SegmentationContext/{"_".join(ids)}.txt'
        with open(osp.join(voc, split), 'w') as f:
            f.write(''.join(f'{i}\n' for i in ids))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations')]
    index = [t['type'] for t in pipeline].index(after) + 1
    pipeline[index:index] = transforms
    return DATASETS.build(dict(
        type='PascalContextDataset59', _scope_='mmseg', data_root=voc,
        data_prefix=dict(img_path='JPEGImages',
                         seg_map_path='SegmentationClassContext'),
        ann_file=split, pipeline=pipeline))


def _label_on_disk(voc, image_id):
    """The label map as mmseg's PascalContextDataset59 reads it."""
    label = read_label(osp.join(voc, 'SegmentationClassContext',
                                f'{image_id}.png')).astype(np.int64)
    return np.where(label == 0, 255, label - 1).astype(np.uint8)


@pytest.mark.parametrize('corruption',
                         ['fog', 'defocus_blur', 'gaussian_noise',
                          'brightness'])
@pytest.mark.parametrize('after', ['LoadImageFromFile', 'LoadAnnotations'])
def test_only_the_image_changes(voc, corruption, after):
    clean = _dataset(voc, [])
    corrupted = _dataset(voc, [dict(type='ImageCorruption',
                                    corruption=corruption, severity=3)],
                         after=after)
    for i, image_id in enumerate(IDS):
        a, b = clean[i], corrupted[i]
        assert not np.array_equal(a['img'], b['img'])
        assert a['img'].shape == b['img'].shape
        assert np.array_equal(b['gt_seg_map'], a['gt_seg_map'])
        assert np.array_equal(b['gt_seg_map'], _label_on_disk(voc, image_id))


def test_an_image_is_corrupted_the_same_way_in_any_order_and_run(voc):
    forward = _dataset(voc, [FOG])
    backward = _dataset(voc, [FOG], ids=IDS[::-1])
    for i in range(len(IDS)):
        first = forward[i]['img']
        assert np.array_equal(first, forward[i]['img'])  # again
        assert np.array_equal(first, backward[len(IDS) - 1 - i]['img'])
    # and exactly as mmspd.corruption does it with the file name's seed
    clean = _dataset(voc, [])[0]['img']
    expected = corrupt_image(clean, 'fog', 3, seed_for(IDS[0]),
                             channel_order='bgr')
    assert np.array_equal(forward[0]['img'], expected)


def test_each_image_gets_its_own_noise(voc):
    noise = dict(type='ImageCorruption', corruption='gaussian_noise',
                 severity=3)
    data = _dataset(voc, [noise], ids=[IDS[0], 'twin'])
    clean = _dataset(voc, [], ids=[IDS[0], 'twin'])
    assert np.array_equal(clean[0]['img'], clean[1]['img'])
    assert not np.array_equal(data[0]['img'], data[1]['img'])
    # a base seed draws other noise, as reproducibly
    reseeded = _dataset(voc, [dict(noise, seed=1)], ids=[IDS[0], 'twin'])
    assert not np.array_equal(reseeded[0]['img'], data[0]['img'])


def test_seed_from_index_follows_the_position_in_the_split(voc):
    by_index = dict(FOG, seed_from='index')
    data = _dataset(voc, [by_index], ids=[IDS[0], 'twin'])
    clean = _dataset(voc, [])[0]['img']
    for i in (0, 1):
        expected = corrupt_image(clean, 'fog', 3, seed_for(i),
                                 channel_order='bgr')
        assert np.array_equal(data[i]['img'], expected)


@pytest.mark.parametrize('kwargs, message', [
    (dict(corruption='fogg', severity=3), "Unknown corruption 'fogg'"),
    (dict(corruption='fog', severity=9), 'Invalid severity 9'),
    (dict(corruption='fog', severity=3, seed=-2), 'Invalid seed -2'),
    (dict(corruption='fog', severity=3, seed_from='path'),
     "seed_from 'path'"),
    (dict(corruption='fog', severity=3, channel_order='hsv'),
     "channel_order 'hsv'"),
])
def test_bad_configs_fail_when_the_pipeline_is_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TRANSFORMS.build(dict(type='ImageCorruption', _scope_='mmseg',
                              **kwargs))


def test_missing_image_keys_are_named():
    transform = ImageCorruption('fog', 3)
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(KeyError, match="results\\['img_path'\\]"):
        transform(dict(img=img))
    with pytest.raises(KeyError, match="results\\['sample_idx'\\]"):
        ImageCorruption('fog', 3, seed_from='index')(dict(img=img))
    assert "corruption='fog', severity=3" in repr(transform)
