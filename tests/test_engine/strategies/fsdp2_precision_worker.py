"""One process of the FSDP2Strategy precision / activation-checkpointing
test (run by torchrun on 2 gloo CPU processes).

    python -m torch.distributed.run --nproc_per_node 2 \\
        tests/test_engine/strategies/fsdp2_precision_worker.py WORK_DIR OUT_JSON

Prepares the tiny ViT of tests/data/configs/tiny_vit_ddp.py with
FSDP2Strategy three times (plain; activation checkpointing; bf16 mixed
precision + activation checkpointing), runs one optimizer step on the same
batch and writes (rank 0) what the test checks: dtypes seen in the forward,
how often a checkpointed layer ran, the gradients' differences. The plain
run also saves its state as a sharded and as a full checkpoint
(WORK_DIR/sharded.pth, WORK_DIR/full.pth).
"""
import json
import os.path as osp
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..',
                                       '..')))
from tests.test_engine.strategies.tiny_vit_worker import (  # noqa: E402
    start_tiny_vit_worker, tiny_vit_batch)

LAYER = 'TransformerEncoderLayer'


def _run(work_dir: str, model_cfg, save_as=False, **strategy_args):
    from mmspd.engine.strategies import FSDP2Strategy
    torch.manual_seed(0)
    strategy = FSDP2Strategy(
        work_dir=work_dir, **strategy_args,
        env_kwargs=dict(launcher='pytorch', randomness=dict(seed=0),
                        dist_cfg=dict(backend='gloo')))
    model, wrapper = strategy.prepare(
        model_cfg, optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)))
    layer = model.backbone.layers[0]
    seen = dict(ln1_calls=0, ffn_input_dtypes=[])
    layer.ln1.register_forward_hook(
        lambda *_: seen.__setitem__('ln1_calls', seen['ln1_calls'] + 1))
    layer.ffn.register_forward_pre_hook(
        lambda m, args: seen['ffn_input_dtypes'].append(str(args[0].dtype)))
    data = model.data_preprocessor(
        tiny_vit_batch(3, dist.get_rank(), dist.get_world_size()), True)
    loss = model(**data, mode='loss')['loss']
    loss.backward()
    grads = {n: p.grad.full_tensor().clone()
             for n, p in model.named_parameters()}
    wrapper.step()
    if save_as:  # the same state as both checkpoint kinds
        strategy.save_checkpoint(osp.join(work_dir, 'sharded.pth'))
        strategy.state_dict_type = 'full'
        strategy.save_checkpoint(osp.join(work_dir, 'full.pth'))
    states = [s for s in wrapper.optimizer.state.values()]
    seen.update(
        param_dtypes=sorted({str(p.dtype) for p in model.parameters()}),
        param_types=sorted({type(p.data).__name__
                            for p in model.parameters()}),
        grad_dtypes=sorted({str(g.dtype) for g in grads.values()}),
        state_dtypes=sorted({str(s['exp_avg'].dtype) for s in states}),
        state_types=sorted({type(s['exp_avg']).__name__ for s in states}))
    return seen, grads


def _diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main():
    work_dir, out, model_cfg = start_tiny_vit_worker()
    plain, plain_grads = _run(work_dir, model_cfg, save_as=True,
                              shard_modules=[LAYER])
    ac, ac_grads = _run(work_dir, model_cfg, shard_modules=[LAYER],
                        activation_checkpointing=[LAYER])
    mixed, mixed_grads = _run(
        work_dir, model_cfg, shard_modules=[LAYER],
        activation_checkpointing=[LAYER],
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'))
    scale = max(g.abs().max().item() for g in plain_grads.values())
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            json.dump(dict(plain=plain, ac=ac, mixed=mixed, grad_scale=scale,
                           ac_grad_diff=_diff(plain_grads, ac_grads),
                           mixed_grad_diff=_diff(plain_grads, mixed_grads)),
                      f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
