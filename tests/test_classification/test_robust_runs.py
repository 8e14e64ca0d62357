"""The real DomainNet and ImageNet configs, end to end on tiny data.

Training (a few iterations of the toy ViT, CLIP weights through init_cfg,
AdamSPD), model selection on the ID validation split, then ``tools/test.py``
evaluating the ID set and every OOD set in one run: one table, one JSON.
"""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmspd.classification.categories import (IMAGENET_A_WNIDS,
                                             IMAGENET_R_WNIDS)
from mmspd.classification.metrics import MaskedAccuracy
from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE, format_table
from tests.test_classification.clip_runs import (load_tool, tiny_config,
                                                 write_tiny_clip_weights)
from tests.test_classification.data_files import (DOMAINNET_OOD,
                                                  SHARED_WNIDS,
                                                  write_domainnet,
                                                  write_imagenet,
                                                  write_imagenet_v2,
                                                  write_wnid_folders)

DOMAINNET_SETS = ['real', *DOMAINNET_OOD]
IMAGENET_SETS = ['imagenet', 'imagenet-v2', 'imagenet-sketch', 'imagenet-a',
                 'imagenet-r']


@pytest.fixture(scope='module')
def clip_weights(tmp_path_factory):
    return write_tiny_clip_weights(tmp_path_factory.mktemp('clip'))


def _test_run(config_file, checkpoint, work_dir):
    """``python tools/test.py CONFIG CKPT --work-dir DIR``, in-process;
    returns ``(metrics, robustness.json contents)``."""
    metrics = load_tool('test.py').main([
        config_file, checkpoint, '--work-dir', str(work_dir),
        '--cfg-options', 'log_level=INFO',
        f'experiment_name=test_{osp.basename(str(work_dir))}'])
    [path] = glob.glob(osp.join(str(work_dir), '*', 'robustness.json'))
    with open(path) as f:
        report = json.load(f)
    # the loop logged its table (the same rows) in the run's log file
    [log] = glob.glob(osp.join(osp.dirname(path), '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'Robustness (ID and OOD sets):' in text
    names = [report['id'], *report['ood'], OOD_AVERAGE]
    assert format_table(metrics, names) in text
    return metrics, report


def _check_table(metrics, report, names):
    assert report['id'] == names[0] and report['ood'] == names[1:]
    for name in names + [OOD_AVERAGE]:
        for k in ('top1', 'top5'):
            value = metrics[f'{name}/accuracy/{k}']
            assert 0.0 <= value <= 100.0
            assert report['metrics'][f'{name}/accuracy/{k}'] == \
                pytest.approx(value)
    expected = sum(metrics[f'{n}/accuracy/top1'] for n in names[1:]) / 4
    assert metrics[f'{OOD_AVERAGE}/accuracy/top1'] == pytest.approx(expected)
    table = format_table(metrics, names + [OOD_AVERAGE])
    print(f'\n{table}')  # shown with pytest -s
    assert [line.split()[0] for line in table.splitlines()[2:]] == \
        names + [OOD_AVERAGE]
    return table


@pytest.fixture(scope='module')
def domainnet_run(tmp_path_factory, clip_weights):
    """configs/domainnet_spd.py trained in-process for 2 tiny epochs."""
    root = tmp_path_factory.mktemp('domainnet_spd')
    data = str(root / 'domainnet')
    write_domainnet(data)
    options = {f'{split}_dataloader.dataset.data_root': data
               for split in ('train', 'val', 'test')}
    cfg = tiny_config('domainnet_spd', root / 'train', clip_weights,
                      options)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return root, cfg, runner


def test_domainnet_anchors_are_the_clip_weights_and_the_head_has_none(
        domainnet_run, clip_weights):
    _, _, runner = domainnet_run
    clip = torch.load(clip_weights, map_location='cpu',
                      weights_only=True)['state_dict']
    optimizer = runner.optim_wrapper.optimizer
    model = runner.model
    for name, param in model.named_parameters():
        state = optimizer.state[param]
        if name.startswith('head.'):
            assert 'anchor' not in state, name  # anchor='zero', lambda 0
            continue
        assert torch.equal(state['anchor'], clip[name]), name
        assert float(state['step']) == 4  # 2 epochs x 2 iterations
    # training moved the weights away from the anchors
    moved = [not torch.equal(p, clip[n]) for n, p in
             model.named_parameters() if not n.startswith('head.')]
    assert all(moved)
    groups = optimizer.param_groups
    assert {g['weight_decay'] for g in groups} == {0.0, 1.0}
    # auto_scale_lr: lr x (4 images x 1 process) / 256
    assert [g['initial_lr'] for g in groups] == pytest.approx(
        [1e-3] * len(groups))


def test_domainnet_selects_on_the_id_validation_split_then_tests_all(
        domainnet_run):
    root, cfg, _ = domainnet_run
    assert cfg.val_dataloader.dataset.split == 'val_split'
    [best] = glob.glob(osp.join(str(root / 'train'),
                                'best_accuracy_top1_epoch_*.pth'))
    config_file = str(root / 'domainnet_spd_tiny.py')
    cfg.dump(config_file)
    metrics, report = _test_run(config_file, best, root / 'test')
    _check_table(metrics, report, DOMAINNET_SETS)
    # 4 classes x 2 images per domain
    for name in DOMAINNET_SETS:
        assert metrics[f'{name}/accuracy/top1'] % 12.5 == 0


@pytest.fixture(scope='module')
def imagenet_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet_data')
    write_imagenet(str(root / 'imagenet'))
    write_imagenet_v2(str(root / 'imagenetv2'), num_folders=12)
    write_wnid_folders(str(root / 'imagenet-sketch' / 'sketch'),
                       SHARED_WNIDS)
    only_a = [w for w in IMAGENET_A_WNIDS if w not in IMAGENET_R_WNIDS][:1]
    only_r = [w for w in IMAGENET_R_WNIDS if w not in IMAGENET_A_WNIDS][:1]
    write_wnid_folders(str(root / 'imagenet-a'), [*SHARED_WNIDS, *only_a],
                       readme=True)
    write_wnid_folders(str(root / 'imagenet-r'), [*SHARED_WNIDS, *only_r],
                       readme=True)
    return root


def test_imagenet_train_and_test_through_the_tools(tmp_path, imagenet_data,
                                                   clip_weights):
    data = imagenet_data
    options = {f'{split}_dataloader.dataset.data_root': str(data / 'imagenet')
               for split in ('train', 'val', 'test')}
    for i, folder in enumerate(['imagenetv2', 'imagenet-sketch',
                                'imagenet-a', 'imagenet-r']):
        options[f'test_cfg.ood_sets.{i}.dataset.data_root'] = \
            str(data / folder)
    cfg = tiny_config('imagenet_spd', tmp_path / 'train', clip_weights,
                      options)
    config_file = str(tmp_path / 'imagenet_spd_tiny.py')
    cfg.dump(config_file)
    load_tool('train.py').main([config_file])
    checkpoint = osp.join(str(tmp_path / 'train'), 'epoch_2.pth')
    assert osp.isfile(checkpoint)
    metrics, report = _test_run(config_file, checkpoint, tmp_path / 'test')
    _check_table(metrics, report, IMAGENET_SETS)
    # the loop the config builds scores ImageNet-A/-R with the masked metric
    # on their own 200 classes, the other sets with plain accuracy
    test_cfg = Config.fromfile(config_file)
    test_cfg.update(work_dir=str(tmp_path / 'inspect'), load_from=checkpoint,
                    experiment_name='inspect_' + osp.basename(tmp_path))
    loop = Runner.from_cfg(test_cfg).test_loop
    assert loop.set_names == IMAGENET_SETS
    for name, loader, evaluator in loop.sets:
        [metric] = evaluator.metrics
        masked = name in ('imagenet-a', 'imagenet-r')
        assert isinstance(metric, MaskedAccuracy) == masked, name
        if masked:
            assert metric._subset() == list(
                loader.dataset.metainfo['label_subset'])
            assert len(metric._subset()) == 200

