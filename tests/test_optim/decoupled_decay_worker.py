"""Run under torchrun (gloo, CPU): AdamSPD / AdamL2SP with
``decoupled_decay`` on DTensor parameters against the same optimizer on
whole tensors, for test_decoupled_decay.py.

    python -m torch.distributed.run --nproc_per_node=2 \\
        tests/test_optim/decoupled_decay_worker.py OUT_JSON

The tensors, their shards (uneven) and the gradient stream are those of
sharded_step_worker.py. Rank 0 writes, per case, the largest difference of
the sharded run from the whole-tensor run relative to the size of the
update, and the same for a run without the decay (so the decay is seen to
change the result).
"""
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import distribute_tensor

from mmspd.optim import AdamL2SP, AdamSPD
from tests.test_optim.sharded_step_worker import (KERNELS, LAYOUT,
                                                  gradient_stream,
                                                  initial_tensors,
                                                  placements)


def run(mesh, cls, kernel, decay):
    start = initial_tensors()
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    sharded = [
        torch.nn.Parameter(distribute_tensor(t.clone(), mesh, placements(k)))
        for t, (_, k) in zip(start, LAYOUT)]
    strength = 1.0 if cls is AdamSPD else 0.3

    def build(params):
        # the first three tensors pulled toward their anchors and decayed,
        # the others decayed only (a detector's new modules)
        return cls([dict(params=params[:3], decoupled_decay=decay),
                     dict(params=params[3:], weight_decay=0.0,
                          anchor='zero', decoupled_decay=decay)],
                    lr=3e-2, weight_decay=strength, **KERNELS[kernel])

    opt_plain, opt_sharded = build(plain), build(sharded)
    for grads in gradient_stream():
        for p, q, grad in zip(plain, sharded, grads):
            p.grad = grad.clone()
            q.grad = distribute_tensor(grad.clone(), mesh, q.placements)
        opt_plain.step()
        opt_sharded.step()
    diffs = []
    for p, q, s in zip(plain, sharded, start):
        update = float((p.detach() - s).abs().max())
        diff = float((q.detach().full_tensor() - p.detach()).abs().max())
        diffs.append(diff / max(update, 1e-12))
    return max(diffs), [p.detach().clone() for p in plain]


def main(out):
    dist.init_process_group('gloo')
    mesh = init_device_mesh('cpu', (dist.get_world_size(), ))
    records = []
    for cls in (AdamSPD, AdamL2SP):
        for kernel in ('loop', 'foreach', 'fused', 'capturable'):
            diff, decayed = run(mesh, cls, kernel, decay=0.5)
            _, undecayed = run(mesh, cls, kernel, decay=0.0)
            effect = max(float((a - b).abs().max())
                         for a, b in zip(decayed, undecayed))
            records.append(dict(optimizer=cls.__name__, kernel=kernel,
                                max_rel_diff=diff, decay_effect=effect))
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            json.dump(records, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
