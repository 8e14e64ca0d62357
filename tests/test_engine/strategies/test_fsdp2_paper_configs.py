"""The shipped CLIP configs users shard (the AdamW and L2-SP baselines,
SPD, both LP-FT stages) under ``FSDP2Strategy``: each trains through
``tools/dist_train.sh`` on 2 gloo processes, writes sharded checkpoints,
and a run resumed from its first checkpoint ends exactly where the
uninterrupted run ends.

Each config is ``configs/<name>.py`` with the toy CLIP ViT of
``tests/test_robust_ft/tiny_vit.py`` (sizes, paths, run length and lr
changed; the optimizer, paramwise rules, hooks (``SPDMonitorHook``,
``StrictLoadingHook``), freezing and schedule are the config's; the
training batches are made deterministic, see below), plus the
two keys a user adds to shard: ``runner_type='FlexibleRunner'`` and
``strategy=dict(type='FSDP2Strategy', ...)``.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from mmspd.engine.sharded_checkpoint import (consolidate_sharded_checkpoint,
                                             is_complete_sharded_checkpoint)
from tests.distributed import free_port
from tests.test_classification.clip_runs import write_tiny_clip_weights
from tests.test_classification.data_files import write_domainnet
from tests.test_robust_ft.tiny_vit import tiny_vit_config, vit_config
from tests.tool_modules import REPO

#: config -> the optimizer class it builds
CONFIGS = {
    'domainnet_adamw': 'AdamW',
    'domainnet_l2sp': 'AdamL2SP',
    'domainnet_spd': 'AdamSPD',
    'domainnet_lpft_probe': 'AdamW',
    'domainnet_lpft_spd': 'AdamSPD',
}
ANCHORED = ('AdamL2SP', 'AdamSPD')
MAX_EPOCHS = 2
SHARDING = dict(runner_type='FlexibleRunner',
                strategy=dict(type='FSDP2Strategy',
                              shard_modules=['TransformerEncoderLayer']))


def _write_probe_head(path: str, clip_weights: str,
                      num_classes: int) -> str:
    """A probe checkpoint as LP-FT's first stage leaves it (the head is
    what the second stage loads from it), with a non-zero head."""
    clip = torch.load(clip_weights, weights_only=True)['state_dict']
    width = clip['backbone.ln1.weight'].numel()
    gen = torch.Generator().manual_seed(1)
    head = {'head.layers.head.weight': 0.1 * torch.randn(num_classes, width,
                                                         generator=gen),
            'head.layers.head.bias': torch.zeros(num_classes)}
    torch.save(dict(state_dict=dict(clip, **head), meta=dict()), path)
    return path


def _launch(config_file: str, work_dir, *extra):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='', PORT=str(free_port()),
               PYTHONPATH=REPO)
    log = open(f'{work_dir}.log', 'w')
    cmd = ['bash', osp.join('tools', 'dist_train.sh'), config_file, '2',
           '--work-dir', str(work_dir), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, log


def _wait(started):
    for proc, log in started:
        rc = proc.wait(timeout=900)
        log.close()
        with open(log.name) as f:
            assert rc == 0, f.read()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Per config: an uninterrupted run, then one resumed from its epoch 1
    checkpoint (both on 2 processes)."""
    root = tmp_path_factory.mktemp('fsdp2_configs')
    data = str(root / 'domainnet')
    write_domainnet(data)
    clip = write_tiny_clip_weights(root)
    files = {}
    for name in CONFIGS:
        cfg = tiny_vit_config(name, root / name, clip, data,
                              max_epochs=MAX_EPOCHS)
        if name == 'domainnet_lpft_spd':
            cfg.model.head.init_cfg.checkpoint = _write_probe_head(
                str(root / 'probe.pth'), clip, cfg.model.head.num_classes)
        cfg.merge_from_dict(SHARDING)
        # mmengine's checkpoints hold no random-number state: a resumed run
        # draws other crops, flips, Mixup / CutMix mixes and dropped paths
        # than the uninterrupted one. For a bit-for-bit comparison the
        # training batches and the model are made deterministic (the test
        # pipeline, no batch augments, no stochastic depth).
        cfg.train_dataloader.dataset.pipeline = \
            cfg.test_dataloader.dataset.pipeline
        cfg.model.pop('train_cfg', None)
        vit_config(cfg).drop_path_rate = 0.
        cfg.log_level = 'INFO'
        files[name] = str(root / f'{name}_fsdp2.py')
        cfg.dump(files[name])
    _wait([_launch(files[n], root / n) for n in CONFIGS])
    _wait([_launch(files[n], root / f'{n}_resumed', '--resume',
                   str(root / n / 'epoch_1.pth')) for n in CONFIGS])
    return dict(root=root, clip=clip)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item()
               for k in a)


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_config_trains_checkpoints_and_resumes_under_fsdp2(runs, name):
    root = runs['root']
    with open(root / f'{name}.log') as f:
        log = f.read()
    assert re.search(r'FSDP2: \d+ TransformerEncoderLayer units \+ the '
                     r'model sharded over 2', log), log[-3000:]
    final = root / name / f'epoch_{MAX_EPOCHS}.pth'
    assert is_complete_sharded_checkpoint(str(final))
    uninterrupted = consolidate_sharded_checkpoint(str(final))
    resumed = consolidate_sharded_checkpoint(
        str(root / f'{name}_resumed' / f'epoch_{MAX_EPOCHS}.pth'))
    assert resumed['meta']['epoch'] == MAX_EPOCHS
    assert _max_diff(uninterrupted['state_dict'], resumed['state_dict']) \
        == 0.0
    states = [c['optimizer']['state'] for c in (uninterrupted, resumed)]
    assert states[0].keys() == states[1].keys() and states[0]
    for index in states[0]:
        assert _max_diff(states[0][index], states[1][index]) == 0.0, index
    assert resumed['param_schedulers'] == uninterrupted['param_schedulers']

    clip = torch.load(runs['clip'], weights_only=True)['state_dict']
    weights = uninterrupted['state_dict']
    frozen = name == 'domainnet_lpft_probe'
    for key, value in clip.items():
        if key.startswith('backbone.'):
            # the probe keeps the backbone frozen; the others train it
            assert torch.equal(weights[key], value) == frozen, key
    # anchors: the CLIP weight of every backbone tensor, none elsewhere
    anchors = {key: state['anchor']
               for key, state in _named_optimizer_state(final).items()
               if 'anchor' in state}
    if CONFIGS[name] in ANCHORED:
        backbone = sorted(k for k in clip if k.startswith('backbone.'))
        assert sorted(anchors) == backbone
        for key in backbone:
            assert torch.equal(anchors[key], clip[key]), key
    else:
        assert not anchors


def _named_optimizer_state(path) -> dict:
    """The optimizer state of a sharded checkpoint, keyed by parameter
    name (as DCP stores it)."""
    with tempfile.TemporaryDirectory() as tmp:
        flat = osp.join(tmp, 'state.pth')
        dcp_to_torch_save(str(path), flat)
        return torch.load(flat, weights_only=True)['optimizer']['state']
