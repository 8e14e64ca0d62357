"""Tiny real runs of configs/pascal_{ctx,mt}_spd.py: train a reduced
Swin/UperNet a few iterations from "pretrained" weights loaded by the
config's init_cfg, then the one test command for the clean and corrupted
val sets."""
import glob
import json
import os.path as osp
import re
import uuid

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE

from .seg_files import write_pascal_context, write_pascal_mt
from .seg_runs import (config_path, tiny_config, tiny_options, to_cli,
                       train, write_pretrained)
from tests.tool_modules import load_tool

OOD = ['fog', 'defocus_blur', 'gaussian_noise', 'brightness']
SETS = ['clean'] + OOD
METRICS = ['aAcc', 'mIoU', 'mAcc']
MAX_ITERS = 4


@pytest.fixture(scope='module')
def ctx_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('ctx_run')
    voc = write_pascal_context(str(root / 'data'), {
        'train': [f'2008_{i:06d}' for i in range(6)],
        'val': [f'2010_{i:06d}' for i in range(3)]})
    pretrained = write_pretrained(str(root / 'swin_tiny_pretrained.pth'))
    options = tiny_options(voc, str(root / 'swin_tiny_pretrained.pth'),
                           max_iters=MAX_ITERS, val_interval=2)
    runner = train('pascal_ctx_spd', root / 'train', options)
    return runner, root, options, pretrained


def test_anchors_are_the_pretrained_weights_loaded_by_init_cfg(ctx_run):
    runner, _, _, pretrained = ctx_run
    optimizer = runner.optim_wrapper.optimizer
    backbone = dict(runner.model.backbone.named_parameters())
    assert set(backbone) <= set(pretrained)
    moved = 0
    for name, param in backbone.items():
        state = optimizer.state[param]
        assert int(state['step']) == MAX_ITERS, name
        assert torch.equal(state['anchor'], pretrained[name]), name
        moved += not torch.equal(param.detach(), pretrained[name])
    assert moved == len(backbone)  # and training moved every tensor
    for name, param in runner.model.named_parameters():
        if name.startswith(('decode_head.', 'auxiliary_head.')):
            assert int(optimizer.state[param]['step']) == MAX_ITERS, name
            assert 'anchor' not in optimizer.state[param], name


def test_auto_scale_lr_scales_from_a_total_batch_of_16(ctx_run):
    runner = ctx_run[0]
    for group in runner.optim_wrapper.optimizer.param_groups:
        # one process x 2 images: 6e-5 * 2 / 16
        assert group['initial_lr'] == pytest.approx(6e-5 * 2 / 16)


def test_the_best_clean_miou_checkpoint_is_kept(ctx_run):
    work_dir = str(ctx_run[1] / 'train')
    best = glob.glob(osp.join(work_dir, 'best_mIoU_iter_*.pth'))
    assert len(best) == 1, best
    assert torch.load(best[0], map_location='cpu', weights_only=True)[
        'meta']['iter'] in (2, 4)
    # max_keep_ckpts=1: the latest periodic checkpoint only
    assert sorted(osp.basename(p) for p in glob.glob(
        osp.join(work_dir, 'iter_*.pth'))) == [f'iter_{MAX_ITERS}.pth']


def _robust_test(config, checkpoint, work_dir, options):
    """``python tools/test.py CONFIG CKPT --work-dir ... --cfg-options``."""
    return load_tool('test.py').main([
        config_path(config), checkpoint, '--work-dir', str(work_dir),
        '--cfg-options', *to_cli(options), 'log_level=INFO',
        f'experiment_name=test_{uuid.uuid4().hex}'
    ])


def _check_results(metrics, work_dir):
    """Every set x metric, the OOD mean, the JSON, the printed table."""
    for name in SETS + [OOD_AVERAGE]:
        for metric in METRICS:
            value = metrics[f'{name}/{metric}']
            assert 0 <= value <= 100, (name, metric, value)
    for metric in METRICS:
        assert metrics[f'{OOD_AVERAGE}/{metric}'] == pytest.approx(
            np.mean([metrics[f'{n}/{metric}'] for n in OOD]))
    (result, ) = glob.glob(osp.join(str(work_dir), '*', 'robustness.json'))
    with open(result) as f:
        saved = json.load(f)
    assert saved['id'] == 'clean' and saved['ood'] == OOD
    assert saved['metrics'] == pytest.approx(
        {k: float(v) for k, v in metrics.items()})
    (log, ) = glob.glob(osp.join(osp.dirname(result), '*.log'))
    with open(log) as f:
        text = f.read()
    table = text.split('Robustness (ID and OOD sets):\n', 1)[1]
    lines = table.splitlines()
    assert lines[0].split() == ['set'] + METRICS
    for line, name in zip(lines[2:], SETS + [OOD_AVERAGE]):
        cells = line.split()
        assert cells[0] == name
        assert [float(c) for c in cells[1:]] == pytest.approx(
            [float(metrics[f'{name}/{m}']) for m in METRICS], abs=5e-3)
    return text


def test_one_test_command_evaluates_clean_and_corrupted_val(
        ctx_run, tmp_path):
    _, root, options, _ = ctx_run
    (best, ) = glob.glob(str(root / 'train' / 'best_mIoU_iter_*.pth'))
    metrics = _robust_test('pascal_ctx_spd', best, tmp_path, options)
    log = _check_results(metrics, tmp_path)
    assert f'Load checkpoint from {best}' in log


def test_ood_sets_corrupt_the_images_and_keep_the_labels(ctx_run, tmp_path):
    _, _, options, _ = ctx_run
    runner = Runner.from_cfg(tiny_config('pascal_ctx_spd', tmp_path,
                                         options))
    sets = {name: loader.dataset for name, loader, _ in
            runner.test_loop.sets}
    assert list(sets) == SETS
    for i in range(len(sets['clean'])):
        clean = sets['clean'][i]
        for name in OOD:
            sample = sets[name][i]
            assert not torch.equal(sample['inputs'], clean['inputs']), name
            assert torch.equal(sample['data_samples'].gt_sem_seg.data,
                               clean['data_samples'].gt_sem_seg.data), name
            # the same corrupted image in a second pass
            assert torch.equal(sets[name][i]['inputs'], sample['inputs'])


def test_pascal_mt_trains_and_tests_in_its_release_layout(tmp_path):
    mt = write_pascal_mt(str(tmp_path / 'data'), {
        'train': ['2008_000002', '2008_000003', '2008_000007',
                  '2008_000009'],
        'val': ['2008_000016', '2010_000001']}, voc12_ids=['2008_000003',
                                                           '2010_000001'])
    write_pretrained(str(tmp_path / 'swin.pth'))
    options = tiny_options(mt, str(tmp_path / 'swin.pth'), max_iters=2,
                           val_interval=2)
    runner = train('pascal_mt_spd', tmp_path / 'train', options)
    dataset = runner.train_dataloader.dataset
    assert type(dataset).__name__ == 'PascalMTDataset'
    assert len(dataset.metainfo['classes']) == 21
    assert runner.model.decode_head.num_classes == 21
    (best, ) = glob.glob(str(tmp_path / 'train' / 'best_mIoU_iter_*.pth'))
    metrics = _robust_test('pascal_mt_spd', best, tmp_path / 'test',
                           options)
    log = _check_results(metrics, tmp_path / 'test')
    # the per-class table lists the 21 PASCAL_MT classes
    assert re.search(r'\|\s+background\s+\|', log)
    assert re.search(r'\|\s+tvmonitor\s+\|', log)
