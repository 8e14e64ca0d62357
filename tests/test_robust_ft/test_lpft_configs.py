"""LP-FT: configs/domainnet_lpft_{probe,spd,adamw}.py on the toy ViT and
configs/demo/lenet5_digits59_lpft.py on the demo's digits. The second
stage starts from the probe's head and from the *pretrained* backbone (not
the probe checkpoint's copy of it), and its anchors are that backbone."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from tests.test_classification.clip_runs import write_tiny_clip_weights
from tests.test_classification.data_files import write_domainnet
from tests.test_robust_ft.demo_runs import (finetune, finetune_config,
                                            write_data, write_pretrained)
from tests.test_robust_ft.tiny_vit import tiny_vit_config


class CaptureStart(Hook):
    """The model's weights when training starts (after init_weights and
    load_from / resume)."""

    def __init__(self):
        self.weights = None

    def before_train(self, runner):
        self.weights = {k: v.detach().clone()
                        for k, v in runner.model.state_dict().items()}


def _perturbed_copy(checkpoint: str, path: str, prefix: str) -> str:
    """``checkpoint`` with every ``prefix`` tensor shifted by 1: a probe
    whose backbone is not the pretrained one, so that a test can tell which
    copy stage 2 starts from."""
    data = torch.load(checkpoint, weights_only=True)
    data['state_dict'] = {k: v + 1. if k.startswith(prefix) else v
                          for k, v in data['state_dict'].items()}
    torch.save(data, path)
    return path


@pytest.fixture(scope='module')
def vit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('lpft_vit')
    data = str(root / 'domainnet')
    write_domainnet(data)
    return dict(root=root, data=data,
                clip=write_tiny_clip_weights(root))


@pytest.fixture(scope='module')
def probe_run(vit_files):
    cfg = tiny_vit_config('domainnet_lpft_probe', vit_files['root'] /
                          'probe', vit_files['clip'], vit_files['data'],
                          max_epochs=2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_probe_freezes_the_whole_backbone(probe_run, vit_files):
    clip = torch.load(vit_files['clip'], weights_only=True)['state_dict']
    optimizer = probe_run.optim_wrapper.optimizer
    for name, param in probe_run.model.named_parameters():
        if name.startswith('backbone.'):
            assert not param.requires_grad, name
            assert not optimizer.state.get(param), name
            assert torch.equal(param, clip[name]), name
        else:
            assert param.requires_grad and optimizer.state[param], name
    head = probe_run.model.head.layers.head.weight
    assert head.abs().sum() > 0  # the zero-initialised head learnt


@pytest.mark.parametrize('stage2', ['domainnet_lpft_spd',
                                    'domainnet_lpft_adamw'])
def test_second_stage_starts_from_probe_head_and_pretrained_backbone(
        probe_run, vit_files, stage2):
    root = vit_files['root']
    probe = _perturbed_copy(f'{probe_run.work_dir}/epoch_2.pth',
                            str(root / f'probe_{stage2}.pth'), 'backbone.')
    probed = torch.load(probe, weights_only=True)['state_dict']
    clip = torch.load(vit_files['clip'], weights_only=True)['state_dict']
    cfg = tiny_vit_config(stage2, root / stage2, vit_files['clip'],
                          vit_files['data'], max_epochs=2, options={
                              'model.head.init_cfg.checkpoint': probe})
    runner = Runner.from_cfg(cfg)
    start = CaptureStart()
    runner.register_hook(start)
    runner.train()
    heads = [k for k in start.weights if k.startswith('head.')]
    assert heads
    for key, value in start.weights.items():
        if key.startswith('head.'):
            assert torch.equal(value, probed[key]), key
        else:
            assert torch.equal(value, clip[key]), key
            assert not torch.equal(value, probed[key]), key
    optimizer = runner.optim_wrapper.optimizer
    if stage2 == 'domainnet_lpft_spd':
        for name, param in runner.model.named_parameters():
            state = optimizer.state[param]
            if name.startswith('head.'):  # explicit rule: no anchor, no SPD
                assert 'anchor' not in state, name
            else:  # anchors: the pretrained backbone, not the probe's copy
                assert torch.equal(state['anchor'], clip[name]), name
        decay = {g['weight_decay'] for g in optimizer.param_groups
                 if any(p is runner.model.head.layers.head.weight
                        for p in g['params'])}
        assert decay == {0.0}


def test_demo_lpft_starts_from_probe_head_and_pretrained_backbone(
        tmp_path):
    data, pretrained = write_data(tmp_path), write_pretrained(tmp_path)
    probe = finetune('lenet5_digits59_linear-probe', tmp_path / 'probe',
                     data, pretrained)
    raw = torch.load(pretrained, weights_only=True)['state_dict']
    probed = torch.load(probe['checkpoint'], weights_only=True)['state_dict']
    for key in raw:  # stage 1 trains the head only
        if key.startswith('backbone.'):
            assert torch.equal(probed[key], raw[key]), key
    shifted = _perturbed_copy(probe['checkpoint'],
                              str(tmp_path / 'probe_shifted.pth'),
                              'backbone.')
    cfg = finetune_config('lenet5_digits59_lpft', data, pretrained, {
        'model.head.init_cfg.checkpoint': shifted})
    cfg.work_dir = str(tmp_path / 'lpft')
    runner = Runner.from_cfg(cfg)
    start = CaptureStart()
    runner.register_hook(start)
    runner.train()
    for key, value in start.weights.items():
        source = probed if key.startswith('head.') else raw
        assert torch.equal(value, source[key]), key
    assert type(runner.optim_wrapper.optimizer).__name__ == 'AdamW'
    assert glob.glob(osp.join(cfg.work_dir, 'epoch_*.pth'))
