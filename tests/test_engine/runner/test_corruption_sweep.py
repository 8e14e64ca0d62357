"""RobustTestLoop's corruption sweep: the sets it makes, the P / mPC / rPC
and mCE arithmetic (against numpy over tables written here), its errors,
and a real classifier's test run with a 2x2 sweep."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.runner import Runner
from PIL import Image

from mmspd.corruption import BENCHMARK_CORRUPTIONS, CORRUPTION_SETS
from mmspd.engine.runner.corruption_summary import (
    ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, expand_sweep, format_sweep_table,
    imagenet_c_errors, sweep_summary)
from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import lenet_config, train

# AlexNet's ImageNet-C errors averaged over the 5 severities, as fractions:
# the ALEXNET_ERR list of google-research/augmix, imagenet.py (in the order
# of the 15 benchmark corruptions), an independent copy of the normaliser.
AUGMIX_ALEXNET_ERR = [
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
    0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840,
    0.606500
]
# 100 - torchvision's documented top-1 accuracy of its AlexNet (56.522 %).
ALEXNET_CLEAN = 43.478


def _table(corruptions, severities, seed=0, low=20., high=70.):
    """A hand-built grid of per-set metric values."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(len(corruptions), len(severities)))


def _metrics(table, corruptions, severities, clean, metric, id_name='clean'):
    metrics = {f'{id_name}/{metric}': clean}
    for i, c in enumerate(corruptions):
        for j, s in enumerate(severities):
            metrics[f'{c}-{s}/{metric}'] = float(table[i, j])
    return metrics


# ---------------------------------------------------------------- expansion
def test_the_sweep_is_one_set_per_pair_with_the_transform_inserted():
    corruptions, severities, specs = expand_sweep(
        dict(corruptions=['fog', 'noise'], severities=(2, 4),
             transform=dict(type='ImageCorruption', seed=3),
             insert_after='LoadAnnotations'))
    assert corruptions == ('fog', 'gaussian_noise', 'shot_noise',
                           'impulse_noise')
    assert severities == (2, 4)
    assert [s['name'] for s in specs] == [
        'fog-2', 'fog-4', 'gaussian_noise-2', 'gaussian_noise-4',
        'shot_noise-2', 'shot_noise-4', 'impulse_noise-2', 'impulse_noise-4']
    assert specs[3] == dict(
        name='gaussian_noise-4', insert_after='LoadAnnotations',
        transforms=[dict(type='ImageCorruption', seed=3,
                         corruption='gaussian_noise', severity=4)])


def test_the_defaults_are_the_benchmark_at_every_severity():
    corruptions, severities, specs = expand_sweep(dict())
    assert corruptions == CORRUPTION_SETS['benchmark']
    assert severities == (1, 2, 3, 4, 5)
    assert len(specs) == 75  # + the clean set: 76 evaluations
    assert specs[0] == dict(
        name='gaussian_noise-1', insert_after='LoadImageFromFile',
        transforms=[dict(type='ImageCorruption', corruption='gaussian_noise',
                         severity=1)])


def test_the_dataset_form_fills_in_every_string():
    _, _, specs = expand_sweep(dict(
        corruptions='holdout', severities=[5, 1],
        dataset=dict(_delete_=True, type='ImageNetC', data_root='data/c',
                     corruption='{corruption}', severity='{severity}',
                     data_prefix=dict(img_path='{corruption}/{severity}'),
                     pipeline=[dict(type='LoadImageFromFile')])))
    assert [s['name'] for s in specs][:3] == [
        'speckle_noise-5', 'speckle_noise-1', 'gaussian_blur-5']
    assert specs[1] == dict(name='speckle_noise-1', dataset=dict(
        _delete_=True, type='ImageNetC', data_root='data/c',
        corruption='speckle_noise', severity='1',
        data_prefix=dict(img_path='speckle_noise/1'),
        pipeline=[dict(type='LoadImageFromFile')]))


@pytest.mark.parametrize('sweep, message', [
    (dict(corruptions='fogg'), "'fogg'"),
    (dict(corruptions=['fog', 'nois']), "'nois'"),
    (dict(corruptions=['weather', 'fog']), r"more than once.*\['fog'\]"),
    (dict(corruptions=[]), 'non-empty'),
    (dict(severities=(0, 1)), 'severity 0'),
    (dict(severities=[3, 6]), 'severity 6'),
    (dict(severities=[2, 2]), r'more than once.*\[2\]'),
    (dict(severities='3'), "'3'"),
    (dict(corruption='fog'), r"unknown keys \['corruption'\]"),
    (dict(transform=dict(type='ImageCorruption', severity=3)),
     r"\['severity'\]"),
    (dict(transform=dict(type='X'), dataset=dict()), 'not both'),
    (dict(dataset=dict(data_root='data/{corruption}')), r'\{severity\}'),
    (dict(dataset=dict(data_root='data/{corruption}/{level}')), "'level'"),
    (['fog'], 'must be a dict'),
])
def test_bad_sweeps_are_named(sweep, message):
    with pytest.raises(ValueError, match=message):
        expand_sweep(sweep)


# --------------------------------------------------------------- arithmetic
def test_p_mpc_rpc_and_the_corruption_means_match_numpy():
    corruptions, severities = ('fog', 'snow', 'contrast'), (1, 3, 5)
    table = _table(corruptions, severities)
    for metric, clean in (('mIoU', 61.5), ('coco/bbox_mAP', 0.412)):
        scale = 1.0 if metric == 'mIoU' else 0.01
        metrics = _metrics(table * scale, corruptions, severities, clean,
                           metric)
        summary, notes = sweep_summary(metrics, 'clean', corruptions,
                                       severities)
        assert notes == []
        assert summary[f'P/{metric}'] == clean
        assert summary[f'mPC/{metric}'] == pytest.approx(
            np.mean(table * scale))
        assert summary[f'rPC/{metric}'] == pytest.approx(
            100 * np.mean(table * scale) / clean)
        for i, c in enumerate(corruptions):
            assert summary[f'{c}-avg/{metric}'] == pytest.approx(
                np.mean(table[i] * scale))
        assert len(summary) == 3 + len(corruptions)


def test_rpc_is_left_out_and_noted_when_the_clean_value_is_zero():
    corruptions, severities = ('fog', ), (1, 2)
    metrics = _metrics(np.zeros((1, 2)), corruptions, severities, 0.0,
                       'mIoU')
    summary, notes = sweep_summary(metrics, 'clean', corruptions, severities)
    assert summary == {'P/mIoU': 0.0, 'mPC/mIoU': 0.0, 'fog-avg/mIoU': 0.0}
    assert len(notes) == 1 and 'rPC/mIoU not computed' in notes[0]
    assert 'P/mIoU is 0.0' in notes[0]


def test_only_numbers_every_sweep_set_has_are_summarised():
    corruptions, severities = ('fog', ), (1, 2)
    metrics = _metrics(np.ones((1, 2)), corruptions, severities, 2.0, 'a')
    metrics.update({'clean/copypaste': '0.1 0.2', 'clean/b': 1.0,
                    'fog-1/b': 1.0})  # fog-2 has no b
    summary, notes = sweep_summary(metrics, 'clean', corruptions, severities)
    assert sorted(summary) == ['P/a', 'fog-avg/a', 'mPC/a', 'rPC/a']
    assert notes == ["Corruption summary: ['b'] left out, not a number in "
                     "every sweep set"]


def test_cocometrics_minus_one_is_not_averaged():
    # CocoMetric reports -1 for an AP it cannot compute (no ground-truth
    # object of that size in the set): not a score to average or divide by
    corruptions, severities = ('fog', ), (1, 2)
    metrics = _metrics(np.full((1, 2), 0.3), corruptions, severities, 0.4,
                       'coco/bbox_mAP')
    metrics.update({'clean/coco/bbox_mAP_s': -1.0,
                    'fog-1/coco/bbox_mAP_s': -1.0,
                    'fog-2/coco/bbox_mAP_s': -1.0})
    summary, notes = sweep_summary(metrics, 'clean', corruptions, severities)
    assert sorted(summary) == ['P/coco/bbox_mAP', 'fog-avg/coco/bbox_mAP',
                               'mPC/coco/bbox_mAP', 'rPC/coco/bbox_mAP']
    assert len(notes) == 1 and "['coco/bbox_mAP_s']" in notes[0]
    assert 'not computable' in notes[0]


def test_the_augmix_alexnet_means_are_ours():
    for corruption, mean in zip(BENCHMARK_CORRUPTIONS, AUGMIX_ALEXNET_ERR):
        assert np.mean(ALEXNET_ERRORS[corruption]) == pytest.approx(
            100 * mean, abs=1e-9)
    assert ALEXNET_CLEAN_ERROR == pytest.approx(ALEXNET_CLEAN)


def test_mce_and_relative_mce_match_numpy():
    severities = (1, 2, 3, 4, 5)
    accuracy = _table(BENCHMARK_CORRUPTIONS, severities, seed=1, low=5.,
                      high=70.)
    clean = 76.1
    metrics = _metrics(accuracy, BENCHMARK_CORRUPTIONS, severities, clean,
                       'accuracy/top1', id_name='imagenet')
    errors, notes = imagenet_c_errors(metrics, 'imagenet',
                                      BENCHMARK_CORRUPTIONS, severities)
    assert notes == []
    error = 100. - accuracy  # E_{s,c}
    alexnet = 100. * np.array(AUGMIX_ALEXNET_ERR)  # mean over s of A_{s,c}
    ce = 100. * error.mean(axis=1) / alexnet
    relative = 100. * (error.mean(axis=1) - (100. - clean)) / (
        alexnet - ALEXNET_CLEAN)
    for i, c in enumerate(BENCHMARK_CORRUPTIONS):
        assert errors[f'CE-{c}/accuracy/top1'] == pytest.approx(ce[i])
        assert errors[f'relative_CE-{c}/accuracy/top1'] == pytest.approx(
            relative[i])
    assert errors['mCE/accuracy/top1'] == pytest.approx(ce.mean())
    assert errors['relative_mCE/accuracy/top1'] == pytest.approx(
        relative.mean())
    assert len(errors) == 2 * 15 + 2


def test_alexnets_own_errors_give_an_mce_of_100():
    severities = (1, 2, 3, 4, 5)
    accuracy = 100. - np.array([ALEXNET_ERRORS[c]
                                for c in BENCHMARK_CORRUPTIONS])
    metrics = _metrics(accuracy, BENCHMARK_CORRUPTIONS, severities,
                       100. - ALEXNET_CLEAN, 'accuracy/top1')
    errors, _ = imagenet_c_errors(metrics, 'clean', BENCHMARK_CORRUPTIONS,
                                  severities)
    assert errors['mCE/accuracy/top1'] == pytest.approx(100.)
    assert errors['relative_mCE/accuracy/top1'] == pytest.approx(100.)


def test_a_partial_sweep_has_no_mce_but_the_complete_corruptions_ce():
    corruptions = ('fog', 'snow', 'speckle_noise')
    severities = (1, 2, 3, 4, 5)
    accuracy = _table(corruptions, severities, seed=2)
    metrics = _metrics(accuracy, corruptions, severities, 70.,
                       'accuracy/top1')
    errors, notes = imagenet_c_errors(metrics, 'clean', corruptions,
                                      severities)
    # speckle_noise has no AlexNet baseline: no CE
    assert sorted(errors) == ['CE-fog/accuracy/top1', 'CE-snow/accuracy/top1',
                              'relative_CE-fog/accuracy/top1',
                              'relative_CE-snow/accuracy/top1']
    assert len(notes) == 1 and notes[0].startswith('mCE not computed')
    assert 'gaussian_noise' in notes[0] and ', fog' not in notes[0]
    # fewer severities: no CE at all
    errors, notes = imagenet_c_errors(
        _metrics(accuracy[:, :2], corruptions, (1, 2), 70., 'accuracy/top1'),
        'clean', corruptions, (1, 2))
    assert errors == {} and 'severities [1, 2]' in notes[0]
    # no top-1 accuracy (segmentation, detection): nothing, silently
    assert imagenet_c_errors(_metrics(accuracy, corruptions, severities, 50.,
                                      'mIoU'), 'clean', corruptions,
                             severities) == ({}, [])


def test_the_grid_table_has_a_row_per_corruption_and_the_means():
    corruptions, severities = ('fog', 'snow'), (1, 2)
    table = np.array([[10., 20.], [30., 50.]])
    metrics = _metrics(table, corruptions, severities, 80., 'mIoU')
    summary, _ = sweep_summary(metrics, 'clean', corruptions, severities)
    lines = format_sweep_table({**metrics, **summary}, 'mIoU', corruptions,
                               severities).splitlines()
    assert lines[0].split() == ['mIoU', '1', '2', 'avg']
    assert lines[2].split() == ['fog', '10.00', '20.00', '15.00']
    assert lines[3].split() == ['snow', '30.00', '50.00', '40.00']
    assert lines[4].split() == ['mPC', '20.00', '35.00', '27.50']


# ------------------------------------------------- a real classifier's run
def _write_corrupted_folders(root, corruptions, severities):
    """``root/<c>/<s>/class_<k>/*.png``: the val images, noisier with the
    severity, in the layout the dataset form reads."""
    rng = np.random.default_rng(5)
    val = osp.join(root, 'val')
    for c in corruptions:
        for s in severities:
            for k in sorted(os.listdir(val)):
                out = osp.join(root, c, str(s), k)
                os.makedirs(out)
                for name in sorted(os.listdir(osp.join(val, k))):
                    img = np.asarray(Image.open(osp.join(val, k, name)),
                                     dtype=float)
                    img += rng.normal(0, 30 * s ** 2, img.shape)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8),
                                    mode='L').save(osp.join(out, name))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('sweep')
    data = write_custom_classification_set(str(root / 'data'))
    _write_corrupted_folders(data, ('fog', 'snow'), (1, 4))
    train(root / 'train', data)
    return root, data, osp.join(str(root / 'train'), 'iter_6.pth')


@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
    """The data without a checkpoint: for errors raised before testing."""
    root = tmp_path_factory.mktemp('sweep_data')
    data = write_custom_classification_set(str(root / 'data'))
    _write_corrupted_folders(data, ('fog', 'snow'), (1, 4))
    return root, data, None


def _runner(trained, name, test_cfg):
    root, data, checkpoint = trained
    cfg = lenet_config(root / name, data, {
        'test_dataloader.dataset.data_root': data, 'test_cfg': test_cfg,
        'load_from': checkpoint})
    cfg.log_level = 'INFO'  # the tables are INFO lines
    return Runner.from_cfg(cfg)


SWEEP = dict(corruptions=['fog', 'snow'], severities=[1, 4],
             dataset=dict(data_prefix='{corruption}/{severity}'))


@pytest.mark.slow
def test_a_real_run_evaluates_the_sweep_and_writes_its_summary(trained):
    runner = _runner(trained, 'sweep', dict(
        type='RobustTestLoop', id_name='clean', corruption_sweep=SWEEP,
        ood_sets=[dict(name='vflip', transforms=[
            dict(type='RandomFlip', prob=1., direction='vertical')])]))
    loop = runner.test_loop
    assert loop.set_names == ['clean', 'vflip']
    assert loop.sweep_names == ['fog-1', 'fog-4', 'snow-1', 'snow-4']
    assert loop.sweep_sets[1][1]['dataset']['data_prefix'] == 'fog/4'
    metrics = runner.test()
    top1 = 'accuracy/top1'
    grid = np.array([[metrics[f'{c}-{s}/{top1}'] for s in (1, 4)]
                     for c in ('fog', 'snow')])
    assert metrics[f'P/{top1}'] == metrics[f'clean/{top1}'] > 0
    assert metrics[f'mPC/{top1}'] == pytest.approx(grid.mean())
    assert metrics[f'rPC/{top1}'] == pytest.approx(
        100 * grid.mean() / metrics[f'clean/{top1}'])
    assert metrics[f'snow-avg/{top1}'] == pytest.approx(grid[1].mean())
    # ood_avg stays the mean over the ood_sets
    assert metrics[f'{OOD_AVERAGE}/{top1}'] == metrics[f'vflip/{top1}']
    # stronger noise, fewer right answers
    assert grid[:, 0].mean() > grid[:, 1].mean()
    assert 'mCE/accuracy/top1' not in metrics
    with open(osp.join(runner.log_dir, 'robustness.json')) as f:
        saved = json.load(f)
    assert saved['id'] == 'clean' and saved['ood'] == ['vflip']
    assert saved['corruption_sweep'] == dict(
        corruptions=['fog', 'snow'], severities=[1, 4],
        sets=['fog-1', 'fog-4', 'snow-1', 'snow-4'])
    assert saved['metrics'] == pytest.approx(metrics)
    logs = [f for f in os.listdir(runner.log_dir) if f.endswith('.log')]
    with open(osp.join(runner.log_dir, logs[0])) as f:
        log = f.read()
    assert 'Corruption sweep (2 corruptions x 2 severities = 4 sets' in log
    assert 'mCE not computed' in log


@pytest.mark.parametrize('test_cfg, message', [
    (dict(ood_sets=[dict(name='fog-1')], corruption_sweep=SWEEP),
     r"\['fog-1'\] are also names"),
    (dict(ood_sets=[dict(name='mPC')]), "'mPC'"),
    (dict(id_name='fog-avg'), "'fog-avg'"),
    (dict(corruption_sweep=dict(SWEEP, severities=[1, 9])), 'severity 9'),
    (dict(corruption_sweep=dict(SWEEP, corruptions='wheather')),
     "'wheather'"),
    (dict(corruption_sweep=dict(SWEEP, sevrities=[1])),
     r"unknown keys \['sevrities'\]"),
])
def test_bad_sweep_configs_are_named_before_testing(untrained, test_cfg,
                                                    message):
    runner = _runner(untrained, 'bad', dict(type='RobustTestLoop',
                                            **test_cfg))
    with pytest.raises(ValueError, match=message):
        runner.test()


# ------------------------------------ the segmentation config, tools/test.py
@pytest.mark.slow
def test_the_segmentation_config_sweeps_from_the_command_line(tmp_path):
    """configs/pascal_ctx_spd.py through tools/test.py, its four ood_sets
    and a 2 x 2 sweep turned on by --cfg-options."""
    import glob
    import uuid

    import torch

    from tests.test_segmentation.seg_files import write_pascal_context
    from tests.test_segmentation.seg_runs import (config_path, tiny_config,
                                                  tiny_options, to_cli,
                                                  write_pretrained)
    from tests.tool_modules import load_tool

    voc = write_pascal_context(str(tmp_path / 'data'), {
        'train': ['2008_000000'], 'val': ['2010_000000']})
    write_pretrained(str(tmp_path / 'pretrained.pth'))
    options = tiny_options(voc, str(tmp_path / 'pretrained.pth'))
    runner = Runner.from_cfg(tiny_config('pascal_ctx_spd', tmp_path / 'init',
                                         options))
    runner.model.init_weights()
    checkpoint = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=runner.model.state_dict(), meta=dict()),
               checkpoint)
    sweep = {'test_cfg.corruption_sweep.corruptions': ['fog', 'brightness'],
             'test_cfg.corruption_sweep.severities': [1, 5]}
    metrics = load_tool('test.py').main([
        config_path('pascal_ctx_spd'), checkpoint, '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *to_cli(options),
        *to_cli(sweep), f'experiment_name=sweep_{uuid.uuid4().hex}'])
    sets = ['fog-1', 'fog-5', 'brightness-1', 'brightness-5']
    for metric in ('aAcc', 'mIoU', 'mAcc'):
        grid = np.array([float(metrics[f'{s}/{metric}']) for s in sets])
        clean = float(metrics[f'clean/{metric}'])
        assert metrics[f'P/{metric}'] == pytest.approx(clean)
        assert metrics[f'mPC/{metric}'] == pytest.approx(grid.mean())
        if clean:
            assert metrics[f'rPC/{metric}'] == pytest.approx(
                100 * grid.mean() / clean)
        assert metrics[f'fog-avg/{metric}'] == pytest.approx(grid[:2].mean())
        # ood_avg: the config's four severity-3 sets, not the sweep
        assert metrics[f'{OOD_AVERAGE}/{metric}'] == pytest.approx(np.mean(
            [float(metrics[f'{n}/{metric}']) for n in (
                'fog', 'defocus_blur', 'gaussian_noise', 'brightness')]))
    (result, ) = glob.glob(str(tmp_path / 'test' / '*' / 'robustness.json'))
    with open(result) as f:
        saved = json.load(f)
    assert saved['ood'] == ['fog', 'defocus_blur', 'gaussian_noise',
                            'brightness']
    assert saved['corruption_sweep']['sets'] == sets
    (log, ) = glob.glob(osp.join(osp.dirname(result), '*.log'))
    with open(log) as f:
        text = f.read()
    grid_table = text.split('Corruption sweep (2 corruptions x 2 severities '
                            '= 4 sets', 1)[1].split('\n\n')[1].splitlines()
    assert grid_table[0].split() == ['aAcc', '1', '5', 'avg']
    assert grid_table[2].split()[0] == 'fog'
    assert grid_table[4].split()[0] == 'mPC'
