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

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
sys.path.insert(0, REPO)

LAYER = 'TransformerEncoderLayer'


def _batch(rank: int, world: int):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 255, (4, 1, 32, 32), generator=g,
                           dtype=torch.uint8)
    labels = torch.randint(0, 3, (4, ), generator=g)
    mine = range(rank, 4, world)
    return dict(inputs=[images[i] for i in mine],
                data_samples=[DataSample().set_gt_label(labels[i])
                              for i in mine])


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
        _batch(dist.get_rank(), dist.get_world_size()), True)
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
    # a non-zero head, so the backbone gets gradients
    cfg.model.head.init_cfg = dict(type='Normal', layer='Linear', std=0.1)
    plain, plain_grads = _run(work_dir, cfg.model, save_as=True,
                              shard_modules=[LAYER])
    ac, ac_grads = _run(work_dir, cfg.model, shard_modules=[LAYER],
                        activation_checkpointing=[LAYER])
    mixed, mixed_grads = _run(
        work_dir, cfg.model, shard_modules=[LAYER],
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
