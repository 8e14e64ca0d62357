"""configs/coco_spd.py (and its AdamW / L2-SP baselines) as shipped, at
full size, through the real tools.

The full Mask R-CNN Swin-T FPN with the config's pipeline (images resized
to 1333x800), optimizer, hooks and test loop; a "pretrained" Swin-T file in
OpenMMLab's layout that the config's ``init_cfg`` loads and the strict
loading check accepts; a tiny COCO 2017 set in the real format (annotation
JSON files with boxes and polygons, JPEG files of 128x96 pixels).
``tools/train.py`` runs 2 training iterations (2 images, batch 1, one
epoch), ``tools/test.py`` evaluates the checkpoint on the clean val set and
2 corruptions x 2 severities of the config's corruption sweep, and
``tools/dist_train.sh`` trains the same config on 2 CPU processes (gloo);
coco_adamw.py and coco_l2sp.py train 1 iteration and test on 2 sets.
Overridden: data paths, batch size, worker counts, epochs, the sweep's
corruptions and severities, and the test score threshold: the heads'
classifier starts near uniform over 81 classes (about 0.012 each), under
the config's 0.05, so after 2 iterations CocoMetric would have no
detection to evaluate.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch

from tests.distributed import free_port
from tests.test_detection.coco_files import data_options, write_coco
from tests.test_detection.swin_files import write_coco_swin_t
from tests.test_detection.test_coco_configs import config
from tests.test_segmentation.seg_runs import to_cli
from tests.tool_modules import REPO, load_tool

CONFIG = osp.join(REPO, 'configs', 'coco_spd.py')
SWEEP = dict(corruptions=['gaussian_noise', 'contrast'], severities=[1, 3])
SETS = ['clean'] + [f'{c}-{s}' for c in SWEEP['corruptions']
                    for s in SWEEP['severities']]
METRICS = ['coco/bbox_mAP', 'coco/segm_mAP']


def _options(root, swin, batch_size=1, max_epochs=1):
    options = data_options(root)
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    options.update({'train_dataloader.batch_size': batch_size,
                    'val_dataloader.batch_size': 1,
                    'test_dataloader.batch_size': 1,
                    'train_cfg.max_epochs': max_epochs,
                    'model.backbone.init_cfg.checkpoint': swin,
                    'model.test_cfg.rcnn.score_thr': 0.0})
    return options


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_full')
    data = write_coco(str(root / 'coco'), train_ids=(9, 25), val_ids=(139, ))
    swin = str(root / 'swin_tiny_patch4_window7_224.pth')
    write_coco_swin_t(swin, config('coco_spd').model.backbone)
    return root, data, swin


@pytest.fixture(scope='module')
def trained(coco):
    root, data, swin = coco
    work_dir = root / 'train'
    start = time.perf_counter()
    load_tool('train.py').main(
        [CONFIG, '--work-dir', str(work_dir), '--cfg-options',
         *to_cli(_options(data, swin))])
    print(f'coco_spd.py: 2 training iterations + 1 validation took '
          f'{time.perf_counter() - start:.0f} s')
    with open(osp.join(str(work_dir), 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.mark.slow
def test_the_shipped_config_trains_two_iterations(trained):
    state = torch.load(trained, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 2
    # the anchors went into the checkpoint with the optimizer state
    optimizer = state['optimizer']
    anchored = [s for s in optimizer['state'].values() if 'anchor' in s]
    backbone = [k for k in state['state_dict'] if k.startswith('backbone.')
                and not k.endswith('relative_position_index')]  # buffers
    assert len(anchored) == len(backbone) > 100


@pytest.mark.slow
def test_the_test_tool_runs_the_clean_set_and_the_sweep(coco, trained,
                                                        tmp_path):
    _, data, swin = coco
    options = _options(data, swin)
    options.update({f'test_cfg.corruption_sweep.{k}': v
                    for k, v in SWEEP.items()})
    start = time.perf_counter()
    metrics = load_tool('test.py').main(
        [CONFIG, trained, '--work-dir', str(tmp_path), '--cfg-options',
         *to_cli(options)])
    print(f'coco_spd.py: test on {len(SETS)} sets of 1 image took '
          f'{time.perf_counter() - start:.0f} s')
    [path] = glob.glob(osp.join(str(tmp_path), '*', 'robustness.json'))
    with open(path) as f:
        report = json.load(f)
    assert report['id'] == 'clean' and report['ood'] == []
    assert report['corruption_sweep'] == dict(SWEEP, sets=SETS[1:])
    for name in SETS + ['P', 'mPC']:
        for metric in METRICS:
            key = f'{name}/{metric}'
            assert key in report['metrics'], (key, sorted(report['metrics']))
            assert 0.0 <= report['metrics'][key] <= 1.0
            assert metrics[key] == pytest.approx(report['metrics'][key])
    for metric in METRICS:
        assert report['metrics'][f'P/{metric}'] == \
            report['metrics'][f'clean/{metric}']
        # rPC = mPC / P: left out where a 2-iteration model has P = 0
        assert (f'rPC/{metric}' in report['metrics']) == \
            (report['metrics'][f'P/{metric}'] > 0)


@pytest.mark.slow
def test_dist_train_on_two_cpu_processes(coco, tmp_path):
    """2 gloo processes x 1 image = 1 iteration per epoch; 2 epochs."""
    _, data, swin = coco
    work_dir = tmp_path / 'dist'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='', PORT=str(free_port()))
    start = time.perf_counter()
    proc = subprocess.run(
        ['bash', osp.join('tools', 'dist_train.sh'), CONFIG, '2',
         '--work-dir', str(work_dir), '--cfg-options',
         *to_cli(_options(data, swin, max_epochs=2))],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=900)
    print(f'coco_spd.py: dist_train.sh, 2 processes, 2 iterations took '
          f'{time.perf_counter() - start:.0f} s')
    assert proc.returncode == 0, proc.stdout[-6000:]
    with open(osp.join(str(work_dir), 'last_checkpoint')) as f:
        state = torch.load(f.read().strip(), map_location='cpu',
                           weights_only=False)
    assert state['meta']['iter'] == 2


@pytest.mark.slow
@pytest.mark.parametrize('name', ['coco_adamw', 'coco_l2sp'])
def test_the_baseline_configs_train_and_test_at_full_size(coco, tmp_path,
                                                          name):
    """The AdamW and L2-SP configs as shipped: 1 iteration (both training
    images in one batch), then tools/test.py on the clean set and one
    corrupted set."""
    _, data, swin = coco
    config_file = osp.join(REPO, 'configs', f'{name}.py')
    options = _options(data, swin, batch_size=2)
    start = time.perf_counter()
    load_tool('train.py').main(
        [config_file, '--work-dir', str(tmp_path / 'train'),
         '--cfg-options', *to_cli(options)])
    with open(osp.join(str(tmp_path / 'train'), 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 1
    anchored = [s for s in state['optimizer']['state'].values()
                if 'anchor' in s]
    assert (len(anchored) > 100) == (name == 'coco_l2sp')
    options.update({'test_cfg.corruption_sweep.corruptions': ['contrast'],
                    'test_cfg.corruption_sweep.severities': [3]})
    metrics = load_tool('test.py').main(
        [config_file, checkpoint, '--work-dir', str(tmp_path / 'test'),
         '--cfg-options', *to_cli(options)])
    print(f'{name}.py: 1 training iteration, validation and a test on 2 '
          f'sets took {time.perf_counter() - start:.0f} s')
    for metric in METRICS:
        for set_name in ('clean', 'contrast-3', 'P', 'mPC'):
            assert 0.0 <= metrics[f'{set_name}/{metric}'] <= 1.0
