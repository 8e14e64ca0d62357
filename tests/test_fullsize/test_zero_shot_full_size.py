"""The zero-shot-head configs as shipped, at full size, through the real
tools.

For one ImageNet and one DomainNet ``*_zeroshot-head.py`` config: the full
model as the config builds it (CLIP ViT-B/16 at 224), a random
OpenAI-layout CLIP file (text tower included) whose image encoder the real
converter writes, CLIP's zero-shot head made from that file by
``tools/model_converters/clip_zero_shot_head.py`` (checked against the
config's head by ``--config``; one prompt template instead of 80, to keep
the CPU time small), the configs' own pipelines, optimizer, head rule and
test loop, the tiny data sets of ``test_paper_configs_full_size.py``.
``tools/train.py`` runs 2 training iterations, ``tools/test.py`` tests the
checkpoint, and ``tools/test.py --zero-shot`` tests the zero-shot model;
both on the ID set and every OOD set (RobustTestLoop). Only data paths,
batch size, worker counts, iteration counts and the two weight files are
overridden.
"""
import glob
import json
import os.path as osp

import pytest
import torch

from mmspd.classification.zero_shot import HEAD_WEIGHT
from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from mmspd.robust_ft.zero_shot import ZERO_SHOT_FILE
from tests.test_fullsize.test_paper_configs_full_size import (
    EXPECTED_SETS, OPENAI_CLIP_FILE, _clip_checkpoint, _domainnet, _imagenet,
    _trained_checkpoint)
from tests.test_segmentation.seg_runs import to_cli
from tests.tool_modules import REPO, load_tool

#: config -> (the head tool's --dataset, the data writer, the config
#: whose sets it tests)
CONFIGS = {
    'imagenet_spd_zeroshot-head': ('imagenet', _imagenet, 'imagenet_spd'),
    'domainnet_l2sp_zeroshot-head': ('domainnet', _domainnet,
                                     'domainnet_spd'),
}


def _robustness(work_dir, metrics, sets, metric) -> str:
    """The run's robustness.json, checked: every set and the OOD average,
    the numbers the tool returned; returns its path."""
    [path] = glob.glob(osp.join(str(work_dir), '*', 'robustness.json'))
    with open(path) as f:
        report = json.load(f)
    assert report['id'] == sets[0] and report['ood'] == sets[1:]
    for name in sets + [OOD_AVERAGE]:
        key = f'{name}/{metric}'
        assert key in report['metrics'], (key, sorted(report['metrics']))
        assert 0.0 <= report['metrics'][key] <= 100.0
        assert metrics[key] == pytest.approx(report['metrics'][key])
    return path


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_zero_shot_head_config_trains_and_tests_at_full_size(name,
                                                             tmp_path):
    dataset, write_data, sets_of = CONFIGS[name]
    sets, metric = EXPECTED_SETS[sets_of]
    config = osp.join(REPO, 'configs', f'{name}.py')
    options = write_data(tmp_path / 'data')
    backbone = _clip_checkpoint(tmp_path)
    head = str(tmp_path / f'zeroshot-head_{dataset}.pth')
    load_tool('model_converters/clip_zero_shot_head.py').main(
        [osp.join(str(tmp_path), OPENAI_CLIP_FILE), head, '--dataset',
         dataset, '--templates', 'vanilla', '--config', config])
    options.update({'model.backbone.init_cfg.checkpoint': backbone,
                    'model.head.init_cfg.checkpoint': head})
    cli = to_cli(options)
    train_dir = tmp_path / 'train'
    load_tool('train.py').main([config, '--work-dir', str(train_dir),
                                '--cfg-options', *cli])
    checkpoint = _trained_checkpoint(train_dir)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 2
    # the head started at CLIP's zero-shot head (StrictLoadingHook checked
    # the load): 2 warm-up steps leave it there, far from a zero head
    start = torch.load(head, weights_only=True)['state_dict'][HEAD_WEIGHT]
    trained = state['state_dict'][HEAD_WEIGHT]
    assert trained.shape == start.shape
    assert (trained - start).abs().max() <= 1e-4 < start.abs().max()
    metrics = load_tool('test.py').main(
        [config, checkpoint, '--work-dir', str(tmp_path / 'test'),
         '--cfg-options', *cli])
    _robustness(tmp_path / 'test', metrics, sets, metric)
    # the zero-shot row: no checkpoint, the model as the config builds it
    zero_shot = load_tool('test.py').main(
        [config, '--zero-shot', '--work-dir', str(tmp_path / 'zero_shot'),
         '--cfg-options', *cli])
    path = _robustness(tmp_path / 'zero_shot', zero_shot, sets, metric)
    with open(osp.join(osp.dirname(path), ZERO_SHOT_FILE)) as f:
        meta = json.load(f)
    assert meta['model'] == 'zero-shot'
    assert meta['pretrained'] == [
        f"backbone <- {backbone} (prefix 'backbone')",
        f"head <- {head} (prefix 'head')"]
