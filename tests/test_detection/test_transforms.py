"""ImageCorruption in mmdet's registry, checked against mmdet's own
``Corrupt`` transform on a real JPEG file and in a real mmdet data set."""
import numpy as np
import pytest
from mmdet.datasets.transforms.transforms import Corrupt
from mmdet.registry import DATASETS, TRANSFORMS
from mmcv.transforms import LoadImageFromFile

import mmspd.detection  # noqa: F401  (registers ImageCorruption)
import mmspd.segmentation  # noqa: F401
from mmspd.corruption import corrupt_image, seed_for
from mmspd.detection import ImageCorruption

from .coco_files import annotation_file, write_split

#: imagecorruptions' corruptions that draw no random numbers
DETERMINISTIC = ['brightness', 'contrast', 'defocus_blur', 'pixelate',
                 'jpeg_compression', 'saturate', 'zoom_blur',
                 'gaussian_blur']
#: ... of which these treat the three channels alike
CHANNEL_SYMMETRIC = ['contrast', 'defocus_blur', 'pixelate']


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    write_split(root, 'val', [139, 285], size=(72, 96))
    return root


def _loaded(coco, image_id=139):
    path = f'{coco}/val2017/{image_id:012d}.jpg'
    return LoadImageFromFile()(dict(img_path=path))


def test_the_detection_and_segmentation_registries_hold_the_same_class():
    from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS
    assert TRANSFORMS.get('ImageCorruption') is ImageCorruption
    assert SEG_TRANSFORMS.get('ImageCorruption') is ImageCorruption
    assert mmspd.segmentation.ImageCorruption is ImageCorruption


@pytest.mark.parametrize('corruption', DETERMINISTIC)
@pytest.mark.parametrize('severity', [1, 5])
def test_bgr_input_equals_mmdets_corrupt_on_the_rgb_image(coco, corruption,
                                                          severity):
    """mmdet's Corrupt corrupts results['img'] as RGB; ours converts
    mmcv's BGR to RGB first. So ours on BGR == theirs on RGB, flipped."""
    loaded = _loaded(coco)
    bgr = loaded['img']
    ours = ImageCorruption(corruption, severity)(dict(loaded, img=bgr))
    theirs = Corrupt(corruption, severity)(
        dict(loaded, img=np.ascontiguousarray(bgr[..., ::-1])))
    np.testing.assert_array_equal(ours['img'], theirs['img'][..., ::-1])
    assert ours['img'].dtype == np.uint8 and ours['img'].shape == bgr.shape
    assert not np.array_equal(ours['img'], bgr)  # it did corrupt


@pytest.mark.parametrize('corruption', CHANNEL_SYMMETRIC)
def test_channel_symmetric_ones_equal_mmdets_corrupt_directly(coco,
                                                              corruption):
    loaded = _loaded(coco)
    ours = ImageCorruption(corruption, 3)(dict(loaded))
    theirs = Corrupt(corruption, 3)(dict(loaded))
    np.testing.assert_array_equal(ours['img'], theirs['img'])


def test_a_colour_dependent_corruption_differs_from_mmdets_on_bgr(coco):
    """The documented difference: Corrupt sees BGR as RGB (JPEG's YCbCr
    weighs the channels differently)."""
    loaded = _loaded(coco)
    ours = ImageCorruption('jpeg_compression', 5)(dict(loaded))
    theirs = Corrupt('jpeg_compression', 5)(dict(loaded))
    assert not np.array_equal(ours['img'], theirs['img'])


def test_in_a_coco_pipeline_only_the_image_changes(coco):
    """After LoadImageFromFile in mmdet's CocoDataset: boxes and masks as
    without it, the image the seeded corruption of the file's pixels."""
    def dataset(extra):
        return DATASETS.build(dict(
            type='CheckedCocoDataset', _scope_='mmdet', data_root=coco,
            ann_file=annotation_file(coco, 'val'),
            data_prefix=dict(img='val2017/'), test_mode=True,
            pipeline=[dict(type='LoadImageFromFile'), *extra,
                      dict(type='LoadAnnotations', with_bbox=True,
                           with_mask=True)]))
    clean = dataset([])
    noisy = dataset([dict(type='ImageCorruption',
                          corruption='gaussian_noise', severity=3)])
    for index in range(len(clean)):
        a, b = clean[index], noisy[index]
        np.testing.assert_array_equal(a['gt_bboxes'].tensor,
                                      b['gt_bboxes'].tensor)
        np.testing.assert_array_equal(a['gt_masks'].masks, b['gt_masks'].masks)
        np.testing.assert_array_equal(a['gt_bboxes_labels'],
                                      b['gt_bboxes_labels'])
        name = a['img_path'].rsplit('/', 1)[1].rsplit('.', 1)[0]
        expected = corrupt_image(a['img'], 'gaussian_noise', 3,
                                 seed_for(name), 'bgr')
        np.testing.assert_array_equal(b['img'], expected)
        assert not np.array_equal(a['img'], b['img'])
