"""RobustTestLoop: ID and OOD sets in one test run, on a real classifier."""
import json
import os.path as osp

import pytest

from mmspd.engine.runner.robust_test_loop import (OOD_AVERAGE,
                                                  derive_dataloader,
                                                  format_table,
                                                  insert_transforms)
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import build_runner, train

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
OOD_SETS = [
    dict(name='rot90', transforms=[dict(type='Rotate', angle=90., prob=1.)]),
    dict(name='vflip', transforms=[
        dict(type='RandomFlip', prob=1., direction='vertical')]),
]


def test_insert_transforms_after_loading_without_touching_the_input():
    new = insert_transforms(PIPELINE, [dict(type='X')], 'LoadImageFromFile')
    assert [t['type'] for t in new] == ['LoadImageFromFile', 'X',
                                        'PackInputs']
    assert [t['type'] for t in PIPELINE] == ['LoadImageFromFile',
                                             'PackInputs']
    with pytest.raises(ValueError, match="'LoadAnnotations'.*PackInputs"):
        insert_transforms(PIPELINE, [dict(type='X')], 'LoadAnnotations')


def test_derived_dataloader_merges_dataset_keys():
    loader = dict(batch_size=2, dataset=dict(type='D', split='val',
                                             pipeline=PIPELINE))
    derived = derive_dataloader(loader, dict(
        name='ood', dataset=dict(split='sketch'),
        transforms=[dict(type='X')]))
    assert derived['dataset']['split'] == 'sketch'
    assert derived['dataset']['type'] == 'D'
    assert [t['type'] for t in derived['dataset']['pipeline']] == [
        'LoadImageFromFile', 'X', 'PackInputs']
    assert loader['dataset']['split'] == 'val'  # the ID config is untouched


def test_table_has_a_row_per_set_and_a_column_per_metric():
    metrics = {'clean/mIoU': 50.0, 'clean/aAcc': 90.0, 'fog/mIoU': 30.0,
               'fog/aAcc': 80.0, 'ood_avg/mIoU': 30.0, 'ood_avg/aAcc': 80.0}
    lines = format_table(metrics, ['clean', 'fog', 'ood_avg']).splitlines()
    assert lines[0].split() == ['set', 'mIoU', 'aAcc']
    assert lines[2].split() == ['clean', '50.00', '90.00']
    assert lines[4].split() == ['ood_avg', '30.00', '80.00']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('robust')
    data = write_custom_classification_set(str(root / 'data'))
    train(root / 'train', data)
    return root, data, osp.join(str(root / 'train'), 'iter_6.pth')


def _test_runner(root, data, checkpoint, test_cfg, name):
    options = {
        'test_dataloader.dataset.data_root': data,
        'test_cfg': test_cfg,
        'load_from': checkpoint,
    }
    return build_runner(root / name, data, options)


def test_one_run_evaluates_every_set_and_writes_the_same_json(trained):
    root, data, checkpoint = trained
    runner = _test_runner(root, data, checkpoint, dict(
        type='RobustTestLoop', id_name='clean', ood_sets=OOD_SETS), 'test')
    metrics = runner.test()
    names = ['clean', 'rot90', 'vflip']
    for name in names + [OOD_AVERAGE]:
        assert f'{name}/accuracy/top1' in metrics
    # the banded images: the ID set is learnt, a vertical flip breaks it
    assert metrics['clean/accuracy/top1'] > metrics['vflip/accuracy/top1']
    assert metrics[f'{OOD_AVERAGE}/accuracy/top1'] == pytest.approx(
        (metrics['rot90/accuracy/top1'] + metrics['vflip/accuracy/top1']) /
        2)
    with open(osp.join(runner.log_dir, 'robustness.json')) as f:
        saved = json.load(f)
    assert saved['id'] == 'clean' and saved['ood'] == ['rot90', 'vflip']
    assert saved['metrics'] == pytest.approx(metrics)


def test_the_id_set_alone_matches_mmengines_test_loop(trained):
    root, data, checkpoint = trained
    plain = _test_runner(root, data, checkpoint, dict(), 'plain').test()
    robust = _test_runner(root, data, checkpoint,
                          dict(type='RobustTestLoop'), 'robust').test()
    assert robust == {f'clean/{k}': v for k, v in plain.items()}


@pytest.mark.parametrize('ood_sets, message', [
    ([dict(name='clean')], "unique.*'clean'"),
    ([dict(name='a/b')], "'a/b'"),
    ([dict(name=OOD_AVERAGE)], OOD_AVERAGE),
    ([dict(name='x', transfroms=[])], "unknown keys.*'transfroms'"),
])
def test_bad_set_specifications_are_named(trained, ood_sets, message):
    root, data, checkpoint = trained
    runner = _test_runner(root, data, checkpoint, dict(
        type='RobustTestLoop', ood_sets=ood_sets), 'bad')
    with pytest.raises(ValueError, match=message):
        runner.test()
