"""The demo's parts: data splits, the noise transform, the backbone, the
protocol's checks and the stage cache."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmpretrain.registry import MODELS, TRANSFORMS

from projects.spd_demo import models  # noqa: F401  (registration)
from projects.spd_demo import transforms
from projects.spd_demo.data import (CANVAS, DigitSplits, load_digit_images,
                                    split_indices)
from projects.spd_demo.protocol import METHODS, DemoProtocol, Method
from projects.spd_demo.stages import STAGE_FILE, run_stage


def test_splits_are_disjoint_and_sized_as_asked():
    images, labels = load_digit_images()
    assert images.shape[1:] == (CANVAS, CANVAS) and images.dtype == np.uint8
    splits = DigitSplits()
    parts = split_indices(labels, splits)
    everything = [i for task in parts.values() for s in task.values()
                  for i in s]
    assert len(everything) == len(set(everything)) == len(labels)
    assert set(labels[parts['digits04']['train']]) == {0, 1, 2, 3, 4}
    assert set(labels[parts['digits59']['test']]) == {5, 6, 7, 8, 9}
    assert len(parts['digits59']['train']) == 5 * 30
    assert len(parts['digits59']['val']) == 5 * 30
    assert split_indices(labels, splits) == parts  # seeded


@pytest.mark.parametrize('kwargs, message', [
    (dict(finetune_classes=(4, 5)), r'disjoint, both have \[4\]'),
    (dict(finetune_val_per_class=0), 'finetune_val_per_class 0'),
])
def test_bad_splits_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitSplits(**kwargs)


def test_too_few_images_for_the_splits_is_an_error():
    _, labels = load_digit_images()
    with pytest.raises(ValueError, match='Digit 5 has .* too few'):
        split_indices(labels, DigitSplits(finetune_train_per_class=100,
                                          finetune_val_per_class=100))


def test_seeded_noise_depends_on_the_image_not_the_run():
    noise = TRANSFORMS.build(dict(type='AddGaussianNoise', std=50., seed=0))
    img = np.full((32, 32), 100, dtype=np.uint8)

    def apply(path):
        return noise(dict(img=img.copy(), img_path=path))['img']

    a = apply('/data/x/digit_5/0001.png')
    assert a.dtype == np.uint8 and 30 < np.abs(a - 100.).mean() < 50
    # same folder/file elsewhere on disk: the same noise; another image: not
    assert np.array_equal(a, apply('/elsewhere/digit_5/0001.png'))
    assert not np.array_equal(a, apply('/data/x/digit_5/0002.png'))
    with pytest.raises(KeyError, match='img_path'):
        noise(dict(img=img.copy()))


@pytest.mark.parametrize('kwargs, message', [
    (dict(std=-1.), 'noise std -1.0'),
    (dict(std=(20., 10.)), r'noise std \(20.0, 10.0\)'),
    (dict(std=1., prob=1.5), 'probability 1.5'),
])
def test_bad_noise_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transforms.AddGaussianNoise(**kwargs)


def test_backbone_loads_pretrained_weights_alone(tmp_path):
    source = MODELS.build(dict(type='PretrainableLeNet5'))
    weights = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               source.state_dict().items()}}, weights)
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='PretrainableLeNet5', init_cfg=dict(
            type='Pretrained', checkpoint=weights, prefix='backbone.')),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=120)))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    assert model.backbone(torch.zeros(2, 1, 32, 32))[0].shape == (2, 120, 1,
                                                                  1)


def test_protocol_demands_equal_grids_and_valid_seeds():
    assert {len(m.grid) for m in METHODS} == {3}
    for method in METHODS:
        assert osp.isfile(method.config)
    uneven = METHODS[:2] + (Method('spd', 'AdamSPD', 'lambda', (1.0, )), )
    with pytest.raises(ValueError, match="same size.*'AdamSPD': 1"):
        DemoProtocol(methods=uneven)
    with pytest.raises(ValueError, match=r'seeds \(0, 0\)'):
        DemoProtocol(seeds=(0, 0))
    with pytest.raises(ValueError, match='finetune_epochs 0'):
        DemoProtocol(finetune_epochs=0)


def test_protocol_checks_lpft_and_wise_ft():
    protocol = DemoProtocol()
    assert osp.isfile(protocol.lpft.config)
    assert len(protocol.lpft.grid) == len(METHODS[0].grid)
    with pytest.raises(ValueError, match='lpft needs the reference'):
        DemoProtocol(reference=None)
    assert DemoProtocol(reference=None, lpft=None).lpft is None
    with pytest.raises(ValueError, match=r"WiSE-FT methods \['sgd'\] are "
                       r"not among"):
        DemoProtocol(wise_ft_methods=('sgd', ))
    with pytest.raises(ValueError, match=r'Invalid WiSE-FT alpha 1\.5'):
        DemoProtocol(wise_ft_alphas=(0., 1.5))


def test_stage_reruns_only_when_its_key_changes(tmp_path):
    calls = []

    def stage(folder):
        calls.append(folder)
        with open(osp.join(folder, 'out.txt'), 'w') as f:
            f.write('x')
        return {'n': len(calls)}

    folder = str(tmp_path / 'stage')
    assert run_stage(folder, {'a': 1}, stage)[0] == {'n': 1}
    result, _, reused = run_stage(folder, {'a': 1}, stage)
    assert (result, reused, len(calls)) == ({'n': 1}, True, 1)
    result, _, reused = run_stage(folder, {'a': 2}, stage)
    assert (result, reused, len(calls)) == ({'n': 2}, False, 2)
    # an interrupted stage (no stage.json) is wiped and run again
    os.remove(osp.join(folder, STAGE_FILE))
    with open(osp.join(folder, 'stale.txt'), 'w') as f:
        f.write('half-written')
    result, _, reused = run_stage(folder, {'a': 2}, stage)
    assert not reused and sorted(os.listdir(folder)) == ['out.txt',
                                                         STAGE_FILE]
    with open(osp.join(folder, STAGE_FILE)) as f:
        assert json.load(f)['key'] == {'a': 2}
