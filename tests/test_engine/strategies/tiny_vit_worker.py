"""What the FSDP2Strategy workers (run by torchrun) share: the tiny ViT of
``tests/data/configs/tiny_vit_ddp.py`` with a non-zero head, and a
deterministic batch split over the processes."""
import os.path as osp
import sys

import torch
import torch.distributed as dist

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))


def tiny_vit_batch(seed: int, rank: int, world: int) -> dict:
    """4 random 32x32 grayscale images and labels drawn from ``seed``; this
    process's share of them (every ``world``-th from ``rank``)."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 255, (4, 1, 32, 32), generator=g,
                           dtype=torch.uint8)
    labels = torch.randint(0, 3, (4, ), generator=g)
    mine = range(rank, 4, world)
    return dict(inputs=[images[i] for i in mine],
                data_samples=[DataSample().set_gt_label(labels[i])
                              for i in mine])


def start_tiny_vit_worker():
    """Join the gloo process group and return ``(work_dir, out, model
    config)`` from the command line ``WORKER WORK_DIR OUT``: the tiny ViT
    with its data preprocessor and a non-zero head (so the backbone gets
    gradients)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmpretrain.models  # noqa: F401 (registers the ViT)
    import mmspd  # noqa: F401
    work_dir, out = sys.argv[1], sys.argv[2]
    dist.init_process_group('gloo')
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(REPO, 'tests', 'data', 'configs',
                                   'tiny_vit_ddp.py'))
    cfg.model.data_preprocessor = cfg.data_preprocessor
    cfg.model.head.init_cfg = dict(type='Normal', layer='Linear', std=0.1)
    return work_dir, out, cfg.model
