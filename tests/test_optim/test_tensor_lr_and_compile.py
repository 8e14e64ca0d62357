"""A 0-d tensor learning rate, and the methods torch.compile must not trace.

A tensor ``lr`` (as ``torch.optim.Adam`` allows) lets a captured CUDA graph
follow a schedule that writes into it; every kernel must give the numbers
a float ``lr`` gives, through mmengine's schedulers and state dicts too.
"""
import copy
import io

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

from mmspd.optim import AdamL2SP, AdamSPD
from tests.optim_helpers import (KERNELS, apply_grads, gradient_stream,
                                 make_params, step_in_lockstep)

OPTIMIZERS = [AdamSPD, AdamL2SP]
with_each_optimizer = pytest.mark.parametrize(
    'cls', OPTIMIZERS, ids=[c.__name__ for c in OPTIMIZERS])
#: every kernel the CPU runs, capturable (counter tensors) included
CPU_KERNELS = dict(KERNELS, capturable=dict(capturable=True))


@with_each_optimizer
@pytest.mark.parametrize('kernel', CPU_KERNELS)
def test_tensor_lr_steps_as_the_same_float_lr(cls, kernel):
    runs = []
    for lr in (0.05, torch.tensor(0.05, dtype=torch.float64)):
        params = make_params()
        runs.append((params, cls(params, lr=lr, weight_decay=0.8,
                                 **CPU_KERNELS[kernel])))
    step_in_lockstep(runs, gradient_stream(steps=8))
    for a, b in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert isinstance(runs[1][1].param_groups[0]['lr'], torch.Tensor)


@with_each_optimizer
def test_writing_into_a_tensor_lr_changes_the_next_step(cls):
    # what a CUDA graph replay relies on: the value is read at each step
    params = make_params()
    lr = torch.tensor(0.05)
    opt = cls(params, lr=lr, weight_decay=0.8, capturable=True)
    stream = gradient_stream(steps=2)
    apply_grads(params, stream[0])
    opt.step()
    lr.fill_(0.0)  # a zero lr: nothing moves
    before = [p.detach().clone() for p in params]
    apply_grads(params, stream[1])
    opt.step()
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)


@with_each_optimizer
@pytest.mark.parametrize('bad, fragment', [
    (torch.tensor([0.1, 0.2]), 'expected a 0-d floating-point tensor'),
    (torch.tensor(1), 'expected a 0-d floating-point tensor'),
    (torch.tensor(-0.1), 'expected a finite value >= 0'),
    (torch.tensor(float('nan')), 'expected a finite value >= 0'),
])
def test_bad_tensor_lr_is_named(cls, bad, fragment):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=fragment) as info:
        cls([p], lr=bad)
    assert 'lr=tensor(' in str(info.value)
    opt = cls([p])
    with pytest.raises(ValueError, match=fragment):
        opt.add_param_group(dict(params=[torch.nn.Parameter(torch.ones(1))],
                                 lr=bad))
    assert len(opt.param_groups) == 1


@with_each_optimizer
def test_mmengine_schedulers_drive_a_tensor_lr(cls):
    values = {}
    runs = []
    for kind, lr in (('float', 0.05), ('tensor', torch.tensor(0.05))):
        params = make_params()
        wrapper = OptimWrapper(cls(params, lr=lr, weight_decay=0.8))
        schedulers = [
            LinearLR(wrapper, start_factor=0.1, by_epoch=False, begin=0,
                     end=3),
            CosineAnnealingLR(wrapper, T_max=6, by_epoch=False, begin=3,
                              end=9)
        ]
        values[kind] = []
        runs.append((params, wrapper, schedulers, values[kind]))
    for grads in gradient_stream(steps=9):
        for params, wrapper, schedulers, seen in runs:
            apply_grads(params, grads)
            wrapper.step()
            seen.append(float(wrapper.get_lr()['lr'][0]))
            for scheduler in schedulers:
                scheduler.step()
    assert values['float'] == pytest.approx(values['tensor'], rel=1e-6)
    assert len(set(values['float'])) > 5  # the schedule really moved lr
    for a, b in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


@with_each_optimizer
def test_tensor_lr_survives_a_state_dict_round_trip(cls):
    params = make_params()
    opt = cls(params, lr=torch.tensor(0.05), weight_decay=0.8)
    stream = gradient_stream(steps=6)
    step_in_lockstep([(params, opt)], stream[:3])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = cls(copies, lr=torch.tensor(1.0), weight_decay=0.8)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    lr = resumed.param_groups[0]['lr']
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(0.05)
    step_in_lockstep([(params, opt), (copies, resumed)], stream[3:])
    for a, b in zip(params, copies):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ---------------------------------------------------------- torch.compile
@with_each_optimizer
def test_load_state_dict_and_add_param_group_run_eagerly_when_compiled(
        cls, monkeypatch):
    # Traced by dynamo, these methods would see param_groups through its
    # optimizer tracking, which writes capturable=True into the real groups
    # of CUDA parameters (checked on CUDA below). Here: they run eagerly.
    params = make_params(torch.float32)
    opt = cls(params, lr=0.05, weight_decay=0.8)
    step_in_lockstep([(params, opt)], gradient_stream(steps=2))
    saved = copy.deepcopy(opt.state_dict())
    seen = []
    check = opt._check_saved_anchors

    def recording_check(state_dict):
        seen.append(torch.compiler.is_compiling())
        return check(state_dict)

    monkeypatch.setattr(opt, '_check_saved_anchors', recording_check)
    extra = torch.nn.Parameter(torch.ones(3))

    @torch.compile(backend='eager')
    def load_and_extend(x):
        opt.load_state_dict(saved)
        opt.add_param_group(dict(params=[extra]))
        return x * 2

    torch._dynamo.reset()
    assert torch.equal(load_and_extend(torch.ones(2)), torch.full((2, ), 2.))
    assert seen == [False]  # ran, and not under tracing
    assert len(opt.param_groups) == 2
    assert all(g['capturable'] is False for g in opt.param_groups)
    torch._dynamo.reset()


@pytest.mark.cuda
@with_each_optimizer
def test_compiled_load_state_dict_leaves_cuda_groups_uncapturable(cls):
    params = [torch.nn.Parameter(torch.randn(4, 3, device='cuda'))]
    source = cls(params, lr=0.05, weight_decay=0.8)
    saved = copy.deepcopy(source.state_dict())  # no state yet
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = cls(fresh, lr=0.05, weight_decay=0.8)

    @torch.compile(backend='eager')
    def load(x):
        opt.load_state_dict(saved)
        return x + 1

    torch._dynamo.reset()
    load(torch.ones(2, device='cuda'))
    assert opt.param_groups[0]['capturable'] is False
    torch._dynamo.reset()
