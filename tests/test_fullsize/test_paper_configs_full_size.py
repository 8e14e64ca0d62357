"""The paper configs as shipped, at full size, through the real tools.

For one config of each family: the full model (CLIP ViT-B/16 at 224, Swin-T
UperNet at 480x480 crops), the configs' own pipelines, schedule shape,
optimizer and test loop; a "pretrained" checkpoint in the real format (an
OpenAI-layout CLIP file converted by the real tool, a Swin-T file in
OpenMMLab's layout) that the config's ``init_cfg`` loads and the strict
loading check accepts; a few synthetic images in the data set's real
layout. ``tools/train.py`` runs 2 training iterations, then
``tools/test.py`` evaluates the checkpoint on the ID set and every OOD set
with RobustTestLoop. Only data paths, batch size, worker counts and
iteration counts are overridden (workers 0, hence no persistent workers).
"""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmspd.classification.categories import (IMAGENET_A_WNIDS,
                                             IMAGENET_R_WNIDS)
from mmspd.engine.runner.robust_test_loop import OOD_AVERAGE
from tests.test_classification.data_files import (DOMAINNET_OOD,
                                                  SHARED_WNIDS,
                                                  write_domainnet,
                                                  write_imagenet,
                                                  write_imagenet_v2,
                                                  write_wnid_folders)
from tests.test_classification.openai_clip_reference import \
    random_openai_clip_state_dict
from tests.test_segmentation.seg_files import (write_pascal_context,
                                               write_pascal_mt)
from tests.test_segmentation.seg_runs import to_cli
from tests.test_segmentation.swin_release import write_swin_t_release
from tests.tool_modules import REPO, load_tool

CORRUPTIONS = ['fog', 'defocus_blur', 'gaussian_noise', 'brightness']
#: ID and OOD set names of each config's RobustTestLoop, and its metric.
EXPECTED_SETS = {
    'domainnet_spd': (['real', *DOMAINNET_OOD], 'accuracy/top1'),
    'imagenet_spd': (['imagenet', 'imagenet-v2', 'imagenet-sketch',
                      'imagenet-a', 'imagenet-r'], 'accuracy/top1'),
    'pascal_ctx_spd': (['clean', *CORRUPTIONS], 'mIoU'),
    'pascal_mt_spd': (['clean', *CORRUPTIONS], 'mIoU'),
}


def _config(name):
    return Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))


def _loaders(options, batch_size):
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.num_workers'] = 0
        options[f'{split}_dataloader.persistent_workers'] = False
    options['train_dataloader.batch_size'] = batch_size
    options['val_dataloader.batch_size'] = 2
    options['test_dataloader.batch_size'] = 2
    return options


#: The random OpenAI-layout CLIP file that :func:`_clip_checkpoint` writes
#: (text tower included) next to its converted image encoder.
OPENAI_CLIP_FILE = 'ViT-B-16.pt'


def _clip_checkpoint(folder) -> str:
    src = osp.join(str(folder), OPENAI_CLIP_FILE)
    torch.save(random_openai_clip_state_dict(seed=3), src)
    dst = osp.join(str(folder), 'clip-vit-base-p16_openai.pth')
    load_tool('model_converters/openai_clip_to_mmpretrain.py').main(
        [src, dst])
    return dst


def _domainnet(root) -> dict:
    data = osp.join(str(root), 'domainnet')
    # 4 classes x 1 training image: 2 iterations of batch 2, 1 epoch
    write_domainnet(data, per_class=1)
    options = {f'{s}_dataloader.dataset.data_root': data
               for s in ('train', 'val', 'test')}
    options['train_cfg.max_epochs'] = 1
    return _loaders(options, batch_size=2)


def _imagenet(root) -> dict:
    root = str(root)
    data = osp.join(root, 'imagenet')
    # 3 classes x 2 training images: 2 iterations of batch 3, 1 epoch
    write_imagenet(data, per_class=2)
    v2 = osp.join(root, 'imagenetv2')
    write_imagenet_v2(v2, num_folders=3)
    sketch = osp.join(root, 'imagenet-sketch')
    write_wnid_folders(osp.join(sketch, 'sketch'), SHARED_WNIDS, per_class=1)
    a, r = osp.join(root, 'imagenet-a'), osp.join(root, 'imagenet-r')
    write_wnid_folders(a, IMAGENET_A_WNIDS[:2], per_class=1, readme=True)
    write_wnid_folders(r, IMAGENET_R_WNIDS[:2], per_class=1, readme=True)
    options = {f'{s}_dataloader.dataset.data_root': data
               for s in ('train', 'val', 'test')}
    for index, folder in enumerate((v2, sketch, a, r)):
        options[f'test_cfg.ood_sets.{index}.dataset.data_root'] = folder
    options['train_cfg.max_epochs'] = 1
    return _loaders(options, batch_size=3)


def _segmentation(data, max_iters=2) -> dict:
    options = {f'{s}_dataloader.dataset.data_root': data
               for s in ('train', 'val', 'test')}
    options.update({'train_cfg.max_iters': max_iters,
                    'train_cfg.val_interval': max_iters,
                    'default_hooks.checkpoint.interval': max_iters})
    # batch 2: UperNet's pooling branch has BatchNorm on 1x1 maps, which
    # cannot train on a single image
    options = _loaders(options, batch_size=2)
    options['val_dataloader.batch_size'] = 1
    options['test_dataloader.batch_size'] = 1
    return options


def _pascal_ctx(root) -> dict:
    data = write_pascal_context(
        str(root), {'train': ['2008_000002', '2008_000003'],
                    'val': ['2008_000009']}, size=(375, 500))
    return _segmentation(data)


def _pascal_mt(root) -> dict:
    data = write_pascal_mt(
        str(root), {'train': ['2008_000002', '2008_000003'],
                    'val': ['2008_000009']},
        voc12_ids=['2008_000003'], size=(375, 500))
    return _segmentation(data)


DATA = {'domainnet_spd': _domainnet, 'imagenet_spd': _imagenet,
        'pascal_ctx_spd': _pascal_ctx, 'pascal_mt_spd': _pascal_mt}


def _pretrained(name, folder) -> dict:
    if name.startswith('pascal'):
        path = osp.join(str(folder), 'swin_tiny_patch4_window7_224.pth')
        write_swin_t_release(path, _config(name).model.backbone)
    else:
        path = _clip_checkpoint(folder)
    return {'model.backbone.init_cfg.checkpoint': path}


def _trained_checkpoint(work_dir) -> str:
    best = glob.glob(osp.join(str(work_dir), 'best_*.pth'))
    if best:
        return best[0]
    with open(osp.join(str(work_dir), 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.mark.slow
@pytest.mark.parametrize('name', list(EXPECTED_SETS))
def test_shipped_config_trains_and_tests_at_full_size(name, tmp_path):
    options = DATA[name](tmp_path / 'data')
    options.update(_pretrained(name, tmp_path))
    config = osp.join(REPO, 'configs', f'{name}.py')
    train_dir = tmp_path / 'train'
    load_tool('train.py').main(
        [config, '--work-dir', str(train_dir), '--cfg-options',
         *to_cli(options)])
    checkpoint = _trained_checkpoint(train_dir)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 2
    test_dir = tmp_path / 'test'
    metrics = load_tool('test.py').main(
        [config, checkpoint, '--work-dir', str(test_dir), '--cfg-options',
         *to_cli(options)])
    [path] = glob.glob(osp.join(str(test_dir), '*', 'robustness.json'))
    with open(path) as f:
        report = json.load(f)
    names, metric = EXPECTED_SETS[name]
    assert report['id'] == names[0] and report['ood'] == names[1:]
    for set_name in names + [OOD_AVERAGE]:
        key = f'{set_name}/{metric}'
        assert key in report['metrics'], (key, sorted(report['metrics']))
        assert 0.0 <= report['metrics'][key] <= 100.0
        assert metrics[key] == pytest.approx(report['metrics'][key])
