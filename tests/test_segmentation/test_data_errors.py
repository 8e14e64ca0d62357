"""A half-prepared segmentation folder fails when the data set is built
(before training), with one error naming the file and what was expected:
missing split file, missing label map, label maps of the wrong mode or
size; for the configs' own data set types."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS
from PIL import Image

import mmspd.segmentation  # noqa: F401
from tests.tool_modules import REPO

from .seg_files import write_pascal_context, write_pascal_mt

IDS = {'train': ['2008_000002', '2008_000003'], 'val': ['2008_000009']}


def _config_dataset(name, data_root, split='train'):
    """The ``<split>_dataloader`` data set of ``configs/<name>.py``,
    pointed at ``data_root``, built."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    dataset = cfg[f'{split}_dataloader'].dataset
    dataset.data_root = data_root
    return DATASETS.build(dict(dataset, _scope_='mmseg'))


@pytest.fixture(params=['pascal_ctx_spd', 'pascal_mt_spd'])
def layout(request, tmp_path):
    """(config name, data root, label folder of image 2008_000002)."""
    if request.param == 'pascal_ctx_spd':
        root = write_pascal_context(str(tmp_path), IDS)
        labels = osp.join(root, 'SegmentationClassContext')
        split = osp.join(root, 'ImageSets', 'SegmentationContext',
                         'train.txt')
    else:
        root = write_pascal_mt(str(tmp_path), IDS)
        labels = osp.join(root, 'semseg', 'pascal-context')
        split = osp.join(root, 'ImageSets', 'Context', 'train.txt')
    return request.param, root, labels, split


def test_the_configs_data_sets_read_a_good_folder(layout):
    name, root, _, _ = layout
    assert len(_config_dataset(name, root)) == 2
    assert len(_config_dataset(name, root, 'test')) == 1


def test_a_missing_split_file_is_named(layout):
    name, root, _, split = layout
    os.remove(split)
    with pytest.raises(FileNotFoundError,
                       match=rf"split file '{split}' does not exist"):
        _config_dataset(name, root)


def test_a_missing_label_map_is_named(layout):
    name, root, labels, _ = layout
    os.remove(osp.join(labels, '2008_000003.png'))
    with pytest.raises(FileNotFoundError, match='2008_000003'):
        _config_dataset(name, root)


@pytest.mark.parametrize('mode, size, found', [
    ('RGB', None, "mode 'RGB'"),           # a colour rendering
    ('16-bit', None, None),                 # 16-bit grey
    ('L', (32, 24), '32x24 image'),         # another size
])
def test_a_label_map_of_the_wrong_mode_or_size_is_named(layout, mode, size,
                                                        found):
    name, root, labels, _ = layout
    path = osp.join(labels, '2008_000002.png')
    with Image.open(path) as label:
        array = np.array(label)
        width, height = label.size
    if size is not None:
        Image.fromarray(array).resize(size, Image.NEAREST).save(path)
    elif mode == 'RGB':
        Image.fromarray(np.stack([array] * 3, axis=-1)).save(path)
    else:
        Image.fromarray(array.astype(np.uint16) * 257).save(path)
        with Image.open(path) as check:
            assert check.mode not in ('L', 'P')
            found = f"mode '{check.mode}'"
    with pytest.raises(ValueError) as error:
        _config_dataset(name, root)
    message = str(error.value)
    assert f"Label map '{path}'" in message and found in message
    assert f"of the image's size {width}x{height}" in message
    assert 'mode L or P' in message


def test_the_check_can_be_turned_off(layout):
    name, root, labels, _ = layout
    path = osp.join(labels, '2008_000002.png')
    with Image.open(path) as label:
        Image.fromarray(np.array(label)).resize((8, 8)).save(path)
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    dataset = dict(cfg.train_dataloader.dataset, data_root=root,
                   check_files=False, _scope_='mmseg')
    assert len(DATASETS.build(dataset)) == 2
