"""One process of the 'full' checkpoint resume test (torchrun, 2 gloo CPU
processes).

    python -m torch.distributed.run --nproc_per_node 2 \\
        tests/test_engine/strategies/fsdp2_full_resume_worker.py WORK_DIR OUT

Trains the tiny ViT of tests/data/configs/tiny_vit_ddp.py with
FSDP2Strategy(state_dict_type='full') and AdamSPD for 4 steps, saving a
checkpoint file after step 2 (with the lr changed there, so the resumed
lr must come from the file); a second strategy resumes from that file and
runs steps 3 and 4. Rank 0 writes what the test checks: per rank, how
often the file was opened with torch.load during the resume, and the
largest differences between the two runs' final weights and optimizer
state (moments, anchors, steps, lr).
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

STEPS, SAVED_AT = 4, 2


def _prepare(work_dir: str, model_cfg):
    from mmspd.engine.strategies import FSDP2Strategy
    torch.manual_seed(0)
    strategy = FSDP2Strategy(
        work_dir=work_dir, shard_modules=['TransformerEncoderLayer'],
        state_dict_type='full',
        env_kwargs=dict(launcher='pytorch', randomness=dict(seed=0),
                        dist_cfg=dict(backend='gloo')))
    model, wrapper = strategy.prepare(
        model_cfg, optim_wrapper=dict(optimizer=dict(
            type='AdamSPD', lr=1e-2, weight_decay=1.0, eps=1e-4)))
    return strategy, model, wrapper


def _train(model, wrapper, steps):
    for step in steps:
        data = model.data_preprocessor(
            tiny_vit_batch(100 + step, dist.get_rank(),
                           dist.get_world_size()), True)
        wrapper.update_params(model(**data, mode='loss')['loss'])


def _full_state(model, optimizer):
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_model_state_dict, get_optimizer_state_dict)
    options = StateDictOptions(full_state_dict=True)
    return (get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options))


def _diff(a, b) -> float:
    if torch.is_tensor(a):
        return float((a.double() - b.double()).abs().max())
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (sorted(a), sorted(b))
        return max([_diff(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        return max([_diff(x, y) for x, y in zip(a, b)] or [0.0])
    return 0.0 if a == b else float('inf')


class CountingLoads:
    """Counts torch.load calls on ``path`` while active."""

    def __init__(self, path):
        self.path, self.count, self._original = path, 0, torch.load

    def __enter__(self):
        def counting(f, *args, **kwargs):
            if isinstance(f, str) and osp.abspath(f) == self.path:
                self.count += 1
            return self._original(f, *args, **kwargs)
        torch.load = counting
        return self

    def __exit__(self, *exc):
        torch.load = self._original


def main():
    work_dir, out, model_cfg = start_tiny_vit_worker()
    checkpoint = osp.abspath(osp.join(work_dir, 'full.pth'))

    strategy, model, wrapper = _prepare(work_dir, model_cfg)
    _train(model, wrapper, range(SAVED_AT))
    for group in wrapper.optimizer.param_groups:
        group['lr'] *= 0.5  # as a schedule would
    strategy.save_checkpoint(checkpoint)
    _train(model, wrapper, range(SAVED_AT, STEPS))
    uninterrupted = _full_state(model, wrapper.optimizer)

    strategy, model, wrapper = _prepare(work_dir, model_cfg)
    with CountingLoads(checkpoint) as loads:
        strategy.resume(checkpoint)
    _train(model, wrapper, range(SAVED_AT, STEPS))
    resumed = _full_state(model, wrapper.optimizer)

    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, loads.count)
    state = uninterrupted[1]['state']
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            json.dump(dict(
                loads_per_rank=counts,
                weights=_diff(uninterrupted[0], resumed[0]),
                optimizer=_diff(uninterrupted[1], resumed[1]),
                anchors_saved=all('anchor' in s for s in state.values()),
                lr=[g['lr'] for g in resumed[1]['param_groups']]), f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
