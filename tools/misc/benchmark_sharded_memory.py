#!/usr/bin/env python
"""Peak memory per process of AdamSPD training state, data parallel
(every process holds the whole model) against FSDP2Strategy (shards).

    python tools/misc/benchmark_sharded_memory.py [--model vit-l14] \\
        [--nproc 2] [--modes ddp fsdp2 fsdp2-meta] [--out report.json]

Each mode runs in fresh processes (torchrun, gloo on the CPU), so a
process's peak resident memory (``ru_maxrss``) is that mode's:

* ``ddp``: the mmpretrain ViT classifier built and initialised in every
  process, wrapped in ``DistributedDataParallel``, AdamSPD stepped on the
  whole tensors;
* ``fsdp2``: ``FSDP2Strategy.prepare`` (every process builds and
  initialises the whole model on the CPU, then shards it), AdamSPD stepped
  on the shards;
* ``fsdp2-meta``: the same with ``meta_init=True`` (processes other than 0
  build the model on the meta device).

Gradients are written directly (random, one per parameter or shard) and
the optimizer steps twice; there is no forward or backward, so the
numbers hold the weights, gradients, optimizer state (moments and
anchors), the wrappers' own buffers and the initialisation path, no
activations. Prints per mode the peak after preparing and after the steps
on every rank, and the ratios of the FSDP2 modes' largest peak to DDP's.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: name -> (embed dims, layers, patch size); 224-pixel images
MODELS = {'vit-b16': (768, 12, 16), 'vit-l14': (1024, 24, 14),
          'vit-tiny': (32, 2, 8)}
MODES = ('ddp', 'fsdp2', 'fsdp2-meta')
NUM_CLASSES = 345  # DomainNet's


def model_config(name: str) -> dict:
    embed, layers, patch = MODELS[name]
    return dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer',
                      arch=dict(embed_dims=embed, num_layers=layers,
                                num_heads=max(1, embed // 64),
                                feedforward_channels=4 * embed),
                      img_size=224, patch_size=patch),
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES,
                  in_channels=embed, loss=dict(type='CrossEntropyLoss')))


def peak_gib() -> float:
    """This process's peak resident memory so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _random_grads(params) -> None:
    import torch
    from torch.distributed.tensor import DTensor
    g = torch.Generator().manual_seed(0)
    for p in params:
        if isinstance(p, DTensor):
            local = p.to_local()
            p.grad = DTensor.from_local(
                1e-3 * torch.randn(local.shape, generator=g), p.device_mesh,
                p.placements, shape=p.shape, stride=p.stride())
        else:
            p.grad = 1e-3 * torch.randn(p.shape, generator=g)


def worker(mode: str, model_name: str, out: str) -> None:
    """One process of ``mode`` (under torchrun)."""
    import torch
    import torch.distributed as dist
    from mmengine.registry import MODELS as REGISTRY
    from mmengine.registry import init_default_scope

    import mmpretrain.models  # noqa: F401 (registers the ViT)
    sys.path.insert(0, REPO)
    from mmspd.optim import AdamSPD
    optimizer_cfg = dict(type='AdamSPD', lr=1e-5, weight_decay=1.0)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    if mode == 'ddp':
        dist.init_process_group('gloo')
        model = REGISTRY.build(model_config(model_name))
        model.init_weights()
        model = torch.nn.parallel.DistributedDataParallel(model,
                                                          device_ids=None)
        optimizer = AdamSPD(model.parameters(), lr=1e-5, weight_decay=1.0)
        params = list(model.parameters())
    else:
        from mmspd.engine.strategies import FSDP2Strategy
        strategy = FSDP2Strategy(
            work_dir=tempfile.mkdtemp(),
            shard_modules=['TransformerEncoderLayer'],
            meta_init=mode == 'fsdp2-meta',
            env_kwargs=dict(launcher='pytorch', randomness=dict(seed=0),
                            dist_cfg=dict(backend='gloo')))
        model, wrapper = strategy.prepare(
            model_config(model_name),
            optim_wrapper=dict(optimizer=optimizer_cfg))
        optimizer = wrapper.optimizer
        params = list(model.parameters())
    prepared = peak_gib()
    for _ in range(2):
        _random_grads(params)
        optimizer.step()
    stepped = peak_gib()
    rows = [None] * dist.get_world_size()
    dist.all_gather_object(rows, dict(rank=dist.get_rank(),
                                      prepared_gib=prepared,
                                      stepped_gib=stepped))
    if dist.get_rank() == 0:
        numel = sum(p.numel() for p in params)
        with open(out, 'w') as f:
            json.dump(dict(mode=mode, parameters=numel, ranks=rows), f)
    dist.barrier()
    dist.destroy_process_group()


def run_mode(mode: str, model: str, nproc: int, threads: int) -> dict:
    """``mode`` in ``nproc`` fresh processes; their report."""
    from socket import socket
    with socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'report.json')
        env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                   CUDA_VISIBLE_DEVICES='',
                   PYTHONPATH=os.pathsep.join(
                       p for p in (REPO, os.environ.get('PYTHONPATH')) if p))
        subprocess.run(
            [sys.executable, '-m', 'torch.distributed.run',
             f'--nproc_per_node={nproc}', f'--master_port={port}',
             osp.abspath(__file__), '--worker', mode, '--model', model,
             '--out', out], env=env, check=True, cwd=REPO)
        with open(out) as f:
            return json.load(f)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='vit-l14', choices=MODELS)
    parser.add_argument('--nproc', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1,
                        help='OMP threads per process')
    parser.add_argument('--modes', nargs='+', default=list(MODES),
                        choices=MODES)
    parser.add_argument('--out', help='write the report as JSON here')
    parser.add_argument('--worker', choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.out)
        return {}
    runs = {mode: run_mode(mode, args.model, args.nproc, args.threads)
            for mode in args.modes}
    report = dict(model=args.model, processes=args.nproc,
                  parameters=next(iter(runs.values()))['parameters'],
                  peak_gib={m: [r['stepped_gib'] for r in run['ranks']]
                            for m, run in runs.items()},
                  prepared_gib={m: [r['prepared_gib'] for r in run['ranks']]
                                for m, run in runs.items()})
    if 'ddp' in runs:
        ddp = max(report['peak_gib']['ddp'])
        report['largest_peak_over_ddp'] = {
            m: max(peaks) / ddp for m, peaks in report['peak_gib'].items()
            if m != 'ddp'}
    for mode in runs:
        prepared = ', '.join(f'{v:.2f}' for v in report['prepared_gib'][mode])
        peaks = ', '.join(f'{v:.2f}' for v in report['peak_gib'][mode])
        print(f'{mode:11s} peak GiB per rank: after prepare [{prepared}], '
              f'after the steps [{peaks}]')
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == '__main__':
    main()
