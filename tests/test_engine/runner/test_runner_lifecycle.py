"""Anchors and steps through mmengine's Runner: load_from, init_cfg,
gradient accumulation, gradient clipping, AMP."""
import uuid

import pytest
import torch
from mmengine.runner import Runner

import mmspd  # noqa: F401
from tests.toy_runner import BATCH_SIZE, ToyData, ToyModel, model_state


def _runner(tmp_path, model, max_iters, optim_wrapper=None, **kwargs):
    optim_wrapper = optim_wrapper or dict(
        optimizer=dict(type='AdamSPD', lr=0.05, weight_decay=1.0))
    return Runner(
        model=model,
        work_dir=str(tmp_path / uuid.uuid4().hex),
        experiment_name=f'lifecycle_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=BATCH_SIZE, num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=optim_wrapper,
        train_cfg=dict(by_epoch=False, max_iters=max_iters,
                       val_interval=1000),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1000, by_epoch=False)),
        randomness=dict(seed=0), log_level='WARNING',
        default_scope='mmengine', **kwargs)


def _anchors(runner):
    model = runner.model
    optimizer = runner.optim_wrapper.optimizer
    return {name: optimizer.state[p]['anchor']
            for name, p in model.named_parameters()}


def _save_pretrained(path, seed):
    pretrained = model_state(ToyModel(init_seed=seed))
    torch.save(dict(state_dict=pretrained), path)
    return pretrained


def test_anchors_are_the_weights_loaded_by_load_from(tmp_path):
    pretrained = _save_pretrained(tmp_path / 'pretrained.pth', seed=7)
    runner = _runner(tmp_path, ToyModel(init_seed=0), max_iters=2,
                     load_from=str(tmp_path / 'pretrained.pth'))
    runner.train()
    anchors = _anchors(runner)
    for name, value in pretrained.items():
        assert torch.equal(anchors[name], value), name
    # and the model did move away from them
    assert not torch.equal(runner.model.linear.weight.detach(),
                           pretrained['linear.weight'])


class PretrainedToy(ToyModel):
    """A model whose init_cfg loads pretrained weights, as mmseg/mmpretrain
    backbones do."""

    def __init__(self, checkpoint):
        super().__init__(init_seed=0)
        self.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)


def test_anchors_are_the_init_cfg_pretrained_weights(tmp_path):
    pretrained = _save_pretrained(tmp_path / 'pretrained.pth', seed=11)
    model = PretrainedToy(str(tmp_path / 'pretrained.pth'))
    constructed = model_state(model)
    runner = _runner(tmp_path, model, max_iters=2)
    runner.train()
    anchors = _anchors(runner)
    for name, value in pretrained.items():
        assert torch.equal(anchors[name], value), name
        assert not torch.equal(anchors[name], constructed[name])


def _manual_training(iters, accumulate, max_norm):
    """The same training written by hand with AdamSPD."""
    model = ToyModel(init_seed=0)
    optimizer = mmspd.AdamSPD(model.parameters(), lr=0.05, weight_decay=1.0)
    data = ToyData()
    for i in range(iters):
        batch = range(i * BATCH_SIZE, (i + 1) * BATCH_SIZE)
        x = torch.stack([data[j]['inputs'] for j in batch])
        y = torch.stack([data[j]['labels'] for j in batch])
        loss = model(x, y, mode='loss')['loss'] / accumulate
        loss.backward()
        if (i + 1) % accumulate == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad()
    return model_state(model)


def test_gradient_accumulation_and_clipping_match_a_hand_written_loop(
        tmp_path):
    runner = _runner(
        tmp_path, ToyModel(init_seed=0), max_iters=6,
        optim_wrapper=dict(
            optimizer=dict(type='AdamSPD', lr=0.05, weight_decay=1.0),
            accumulative_counts=2, clip_grad=dict(max_norm=0.5)))
    runner.train()
    expected = _manual_training(6, accumulate=2, max_norm=0.5)
    got = model_state(runner.model)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6)
    # three updates happened, each a real SPD step
    state = runner.optim_wrapper.optimizer.state
    assert {float(s['step']) for s in state.values()} == {3.0}


@pytest.mark.cuda
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_optim_wrapper_trains_with_float32_anchors(tmp_path, dtype):
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip('bfloat16 not supported on this GPU')
    pretrained = _save_pretrained(tmp_path / 'pretrained.pth', seed=7)
    runner = _runner(
        tmp_path, ToyModel(init_seed=0), max_iters=4,
        optim_wrapper=dict(
            type='AmpOptimWrapper', dtype=dtype, loss_scale='dynamic',
            optimizer=dict(type='AdamSPD', lr=0.05, weight_decay=1.0)),
        load_from=str(tmp_path / 'pretrained.pth'))
    runner.train()
    anchors = _anchors(runner)
    for name, value in pretrained.items():
        assert anchors[name].dtype == torch.float32
        assert torch.equal(anchors[name].cpu(), value)
    for p in runner.model.parameters():
        assert torch.isfinite(p).all()
