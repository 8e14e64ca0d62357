"""One process of the sharded-checkpoint tests (run by torchrun, gloo, CPU).

    python -m torch.distributed.run --nproc_per_node N \\
        tests/test_engine/checkpoint/fsdp2_checkpoint_worker.py OUT_DIR START OPTIMIZERS

Trains one tiny FSDP2 model per optimizer named in OPTIMIZERS
(comma-separated, see :func:`build_optimizer`) for steps START..STEPS-1 on
fixed data (global batch GLOBAL_BATCH split over the processes). START 0:
from the initial weights, saving ``step_<SAVE_AT>`` on the way; START > 0:
resumed from ``OUT_DIR/<name>/step_<START>`` and saved once right after
loading as ``loaded_<N>``. Ends with ``final_start<START>_<N>``.
"""
import os
import os.path as osp
import sys

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(
    0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..')))

STEPS = 6
SAVE_AT = 3
GLOBAL_BATCH = 12  # divisible by 2 and 3 processes


def build_model() -> nn.Module:
    """33 rows: uneven shards over 2 (17+16) and 3 (11 each) processes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 33), nn.Tanh(), nn.Linear(33, 5))


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(GLOBAL_BATCH, 7, generator=g),
             torch.randn(GLOBAL_BATCH, 5, generator=g))
            for _ in range(STEPS)]


def build_optimizer(name: str, params):
    """The optimizers the tests compare (strong pulls, so SPD projects)."""
    if name == 'AdamW':
        return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    from mmspd.optim import AdamL2SP, AdamSPD
    if name == 'AdamSPD':
        return AdamSPD(params, lr=1e-2, weight_decay=1.0)
    if name == 'AdamL2SP':
        return AdamL2SP(params, lr=1e-2, weight_decay=1.0)
    raise ValueError(f'Unknown optimizer {name!r}')


def loss_of(model, x, y):
    return (model(x) - y).pow(2).mean()


def main():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from mmspd.engine import sharded_checkpoint as sc

    out_dir, start, names = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh('cpu', (world, ))
    data = batches()
    for name in names.split(','):
        root = osp.join(out_dir, name)
        os.makedirs(root, exist_ok=True)
        model = build_model()
        for layer in (model[0], model[2]):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = build_optimizer(name, model.parameters())
        if start > 0:
            sc.load_sharded_checkpoint(osp.join(root, f'step_{start}'), model,
                                       optimizer)
            sc.save_sharded_checkpoint(osp.join(root, f'loaded_{world}'),
                                       model, optimizer)
        for step in range(start, STEPS):
            x, y = data[step]
            loss_of(model, x.chunk(world)[rank], y.chunk(world)[rank]
                    ).backward()
            optimizer.step()
            optimizer.zero_grad()
            if start == 0 and step + 1 == SAVE_AT:
                sc.save_sharded_checkpoint(
                    osp.join(root, f'step_{SAVE_AT}'), model, optimizer,
                    extra=dict(meta=dict(iter=SAVE_AT)))
        sc.save_sharded_checkpoint(
            osp.join(root, f'final_start{start}_{world}'), model, optimizer)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
