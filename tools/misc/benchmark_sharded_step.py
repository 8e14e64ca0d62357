#!/usr/bin/env python
"""Step time of AdamSPD on sharded (FSDP2-style DTensor) parameters.

    python -m torch.distributed.run --nproc_per_node=2 \\
        tools/misc/benchmark_sharded_step.py [--model vit-s16] [--steps 20]

Every process holds a ``Shard(0)`` slice of each parameter of a ViT (the
layout ``fully_shard`` gives) and steps it with fresh random gradients.
Timed in the same processes, interleaved: AdamSPD (default kernel) and
``torch.optim.AdamW`` (foreach, and fused where available) on the shards,
and AdamSPD on whole, unsharded tensors in each process (what one
data-parallel process steps). Prints medians, ratios, and the bytes
AdamSPD's all-reduce moves per step (counted, not estimated). Without GPUs
it runs on CPU processes with gloo.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmark_optimizer import VIT_CONFIGS, vit_param_shapes  # noqa: E402

from mmspd.optim import AdamSPD  # noqa: E402


class CountingAllReduce:
    """Counts ``dist.all_reduce`` calls and their bytes while active."""

    def __init__(self):
        self.calls = self.bytes = 0
        self._original = dist.all_reduce

    def __enter__(self):
        def counting(tensor, *args, **kwargs):
            self.calls += 1
            self.bytes += tensor.numel() * tensor.element_size()
            return self._original(tensor, *args, **kwargs)
        dist.all_reduce = counting
        return self

    def __exit__(self, *exc):
        dist.all_reduce = self._original


def contenders(mesh):
    """name -> (params factory, optimizer factory, sharded?)"""
    lr = 1e-4
    table = {
        'AdamSPD(default), sharded': (True, lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0)),
        'AdamW(foreach), sharded': (True, lambda ps: torch.optim.AdamW(
            ps, lr=lr, weight_decay=0.05, foreach=True)),
        'AdamSPD(default), whole tensors': (False, lambda ps: AdamSPD(
            ps, lr=lr, weight_decay=1.0)),
    }
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='vit-s16', choices=VIT_CONFIGS)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--out', help='write the report as JSON here')
    args = parser.parse_args(argv)
    dist.init_process_group('gloo')
    world, rank = dist.get_world_size(), dist.get_rank()
    mesh = init_device_mesh('cpu', (world, ))
    shapes = vit_param_shapes(*VIT_CONFIGS[args.model])
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) * 0.02 for s in shapes]
    runs = {}
    for name, (sharded, build) in contenders(mesh).items():
        if sharded:
            params = [torch.nn.Parameter(distribute_tensor(t.clone(), mesh,
                                                           [Shard(0)]))
                      for t in start]
        else:
            params = [torch.nn.Parameter(t.clone()) for t in start]
        runs[name] = (sharded, params, build(params), [])
    traffic = None
    for step in range(args.steps + 2):  # two warm-up steps
        for name, (sharded, params, optimizer, times) in runs.items():
            for p in params:
                grad = torch.randn(p.shape, generator=g) * 1e-3
                p.grad = (distribute_tensor(grad, mesh, [Shard(0)])
                          if sharded else grad)
            dist.barrier()
            with CountingAllReduce() as counter:
                begin = time.perf_counter()
                optimizer.step()
                elapsed = time.perf_counter() - begin
            if step >= 2:
                times.append(elapsed)
            if name.startswith('AdamSPD') and sharded:
                traffic = (counter.calls, counter.bytes)
    medians = {}
    for name, (_, _, _, times) in runs.items():
        local = torch.tensor([statistics.median(times)], dtype=torch.float64)
        dist.all_reduce(local, op=dist.ReduceOp.MAX)  # the slowest rank
        medians[name] = float(local)
    numel = sum(t.numel() for t in start)
    report = dict(
        model=args.model, parameters=numel, tensors=len(start),
        processes=world, threads_per_process=torch.get_num_threads(),
        median_step_s=medians,
        spd_sharded_over_adamw_sharded=medians['AdamSPD(default), sharded'] /
        medians['AdamW(foreach), sharded'],
        spd_sharded_over_spd_whole=medians['AdamSPD(default), sharded'] /
        medians['AdamSPD(default), whole tensors'],
        all_reduces_per_step=traffic[0], all_reduce_bytes_per_step=traffic[1])
    if rank == 0:
        for name, seconds in medians.items():
            print(f'{name:34s} {seconds * 1e3:8.2f} ms')
        print(json.dumps(report, indent=1))
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(report, f, indent=1)
    dist.destroy_process_group()
    return report


if __name__ == '__main__':
    main()
