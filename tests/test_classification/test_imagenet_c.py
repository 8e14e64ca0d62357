"""ImageNet-C in its released layout: the ImageNetC data set, the config
that switches it on, and a real classifier's test run over all 75 sets with
mCE and relative mCE checked against numpy."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS
from PIL import Image

import mmspd.classification  # noqa: F401  (registers ImageNetC)
from mmspd.classification.categories import IMAGENET_WNIDS
from mmspd.corruption import BENCHMARK_CORRUPTIONS
from mmspd.engine.runner.corruption_summary import expand_sweep
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import lenet_config, train
from tests.test_classification.clip_runs import REPO
from tests.test_classification.data_files import write_wnid_folders

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
# AlexNet's mean errors per benchmark corruption (google-research/augmix,
# imagenet.py, ALEXNET_ERR) and clean error (100 - torchvision's 56.522 %).
AUGMIX_ALEXNET_ERR = [
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
    0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840,
    0.606500
]
ALEXNET_CLEAN = 43.478


def build(**cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dict(cfg, pipeline=PIPELINE))


def test_one_corruption_and_severity_of_the_release(tmp_path):
    wnids = ['n01440764', IMAGENET_WNIDS[500], 'n15075141']
    written = write_wnid_folders(str(tmp_path / 'fog' / '3'), wnids)
    write_wnid_folders(str(tmp_path / 'fog' / '2'), wnids[:1])
    dataset = build(type='ImageNetC', data_root=str(tmp_path),
                    corruption='fog', severity='3')  # as the sweep fills it
    read = sorted((osp.relpath(d['img_path'], str(tmp_path / 'fog' / '3')),
                   d['gt_label']) for d in dataset.load_data_list())
    assert read == sorted(written)
    assert {label for _, label in read} == {0, 500, 999}
    assert dataset.metainfo['corruption'] == 'fog'
    assert dataset.metainfo['severity'] == 3
    assert len(dataset.metainfo['classes']) == 1000
    assert len(build(type='ImageNetC', data_root=str(tmp_path),
                     corruption='fog', severity=2)) == 2


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(corruption='fogg', severity=1), ValueError, "'fogg'"),
    (dict(corruption='fog', severity=0), ValueError, 'severity 0'),
    (dict(corruption='fog', severity='x'), ValueError, "severity 'x'"),
    (dict(corruption='fog', severity=1, data_prefix='fog/1'), TypeError,
     'data_prefix'),
    (dict(corruption='snow', severity=1), FileNotFoundError, 'snow/1'),
])
def test_bad_arguments_and_a_missing_folder_are_named(tmp_path, kwargs,
                                                      error, message):
    write_wnid_folders(str(tmp_path / 'fog' / '1'), ['n01440764'])
    with pytest.raises(error, match=message):
        build(type='ImageNetC', data_root=str(tmp_path), **kwargs)


def test_a_folder_that_is_no_imagenet_class_is_named(tmp_path):
    write_wnid_folders(str(tmp_path / 'fog' / '1'), ['n01440764'])
    os.makedirs(tmp_path / 'fog' / '1' / 'n99999999')
    with pytest.raises(ValueError, match="'n99999999'"):
        build(type='ImageNetC', data_root=str(tmp_path), corruption='fog',
              severity=1)


def test_the_imagenet_c_config_sweeps_the_release_folders():
    path = osp.join(REPO, 'configs', 'imagenet_spd_imagenet-c.py')
    cfg = Config.fromfile(path)
    sweep = cfg.test_cfg.corruption_sweep
    corruptions, severities, specs = expand_sweep(sweep.to_dict())
    assert corruptions == BENCHMARK_CORRUPTIONS
    assert severities == (1, 2, 3, 4, 5) and len(specs) == 75
    dataset = specs[-1]['dataset']
    assert specs[-1]['name'] == 'jpeg_compression-5'
    assert dataset['type'] == 'ImageNetC' and dataset['_delete_']
    assert (dataset['data_root'], dataset['corruption'],
            dataset['severity']) == ('data/imagenet-c', 'jpeg_compression',
                                     '5')
    assert dataset['pipeline'] == cfg.test_pipeline
    # the test sets of imagenet_spd.py are all still there
    base = Config.fromfile(osp.join(REPO, 'configs', 'imagenet_spd.py'))
    assert [s.name for s in cfg.test_cfg.ood_sets] == [
        s.name for s in base.test_cfg.ood_sets]
    assert 'corruption_sweep' not in base.test_cfg
    # a subset from the command line
    cfg.merge_from_dict({'test_cfg.corruption_sweep.corruptions': 'noise',
                         'test_cfg.corruption_sweep.severities': [1, 3]})
    _, _, specs = expand_sweep(cfg.test_cfg.corruption_sweep.to_dict())
    assert [s['name'] for s in specs] == [
        'gaussian_noise-1', 'gaussian_noise-3', 'shot_noise-1',
        'shot_noise-3', 'impulse_noise-1', 'impulse_noise-3']


def _write_imagenet_c(root, val):
    """The tiny val set's images under every benchmark corruption and
    severity, as ImageNet-C lays them out (JPEG, WordNet-id folders; class
    ``class_k`` is ImageNet class ``k``), noisier with the severity."""
    rng = np.random.default_rng(11)
    classes = sorted(os.listdir(val))
    for corruption in BENCHMARK_CORRUPTIONS:
        for severity in range(1, 6):
            for k, folder in enumerate(classes):
                out = osp.join(root, corruption, str(severity),
                               IMAGENET_WNIDS[k])
                os.makedirs(out)
                for i, name in enumerate(sorted(os.listdir(
                        osp.join(val, folder)))[:1]):
                    img = np.asarray(Image.open(osp.join(val, folder, name)),
                                     dtype=float)
                    img += rng.normal(0, 30 * severity ** 2, img.shape)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8),
                                    mode='L').save(osp.join(
                                        out, f'ILSVRC2012_val_{k}{i}.JPEG'),
                                        quality=95)


@pytest.mark.slow
def test_a_real_run_reports_imagenet_c_mce(tmp_path):
    data = write_custom_classification_set(str(tmp_path / 'data'))
    _write_imagenet_c(str(tmp_path / 'imagenet-c'), osp.join(data, 'val'))
    train(tmp_path / 'train', data)
    pipeline = [dict(type='LoadImageFromFile', color_type='grayscale'),
                dict(type='PackInputs')]
    cfg = lenet_config(tmp_path / 'test', data, {
        'test_dataloader.dataset.data_root': data,
        'load_from': str(tmp_path / 'train' / 'iter_6.pth'),
        'test_cfg': dict(type='RobustTestLoop', id_name='imagenet',
                         corruption_sweep=dict(dataset=dict(
                             _delete_=True, type='ImageNetC',
                             data_root=str(tmp_path / 'imagenet-c'),
                             corruption='{corruption}',
                             severity='{severity}', pipeline=pipeline)))})
    cfg.log_level = 'INFO'  # the tables are INFO lines
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    top1 = 'accuracy/top1'
    accuracy = np.array([[metrics[f'{c}-{s}/{top1}'] for s in range(1, 6)]
                         for c in BENCHMARK_CORRUPTIONS])
    clean = metrics[f'imagenet/{top1}']
    assert clean > accuracy[:, -1].mean()  # the noise hurts
    error = 100. - accuracy
    ce = 100. * error.mean(axis=1) / (100. * np.array(AUGMIX_ALEXNET_ERR))
    relative = 100. * (error.mean(axis=1) - (100. - clean)) / (
        100. * np.array(AUGMIX_ALEXNET_ERR) - ALEXNET_CLEAN)
    assert metrics[f'mCE/{top1}'] == pytest.approx(ce.mean())
    assert metrics[f'relative_mCE/{top1}'] == pytest.approx(relative.mean())
    assert metrics[f'CE-fog/{top1}'] == pytest.approx(ce[9])
    assert metrics[f'mPC/{top1}'] == pytest.approx(accuracy.mean())
    with open(osp.join(runner.log_dir, 'robustness.json')) as f:
        saved = json.load(f)
    assert saved['metrics'][f'mCE/{top1}'] == pytest.approx(ce.mean())
    assert len(saved['corruption_sweep']['sets']) == 75
    (log, ) = [f for f in os.listdir(runner.log_dir) if f.endswith('.log')]
    with open(osp.join(runner.log_dir, log)) as f:
        text = f.read()
    table = text.split('ImageNet-C corruption errors (top-1, normalised by '
                       'AlexNet):\n', 1)[1].splitlines()
    assert table[0].split() == ['corruption', 'CE', '[%]', 'relative', 'CE',
                                '[%]']
    row = next(line for line in table if line.startswith('mCE '))
    assert row.split() == ['mCE', f'{ce.mean():.2f}',
                           f'{relative.mean():.2f}']
