"""The ``decoupled_decay`` group option of AdamSPD and AdamL2SP: AdamW's
decoupled weight decay, checked against ``torch.optim.AdamW`` stepped side
by side on every CPU kernel."""
import copy
import io
import math

import pytest
import torch

from mmspd.optim import AdamL2SP, AdamSPD
from tests.optim_helpers import (KERNELS, apply_grads, gradient_stream,
                                 make_params, step_in_lockstep)

OPTIMIZERS = [AdamSPD, AdamL2SP]
with_each_optimizer = pytest.mark.parametrize(
    'cls', OPTIMIZERS, ids=[c.__name__ for c in OPTIMIZERS])
#: every kernel the CPU runs, capturable (counter tensors) included
CPU_KERNELS = dict(KERNELS, capturable=dict(capturable=True))
LR, DECAY = 0.05, 0.5  # lr * decay = 0.025: a visible shrink per step


def _float32_params(seed=0):
    return make_params(dtype=torch.float32, seed=seed)


def _decayed_group(params, **options):
    """A group that should step as AdamW: no SPD / L2-SP, zero anchor."""
    return [dict(params=params, weight_decay=0.0, anchor='zero',
                 decoupled_decay=DECAY, **options)]


@with_each_optimizer
@pytest.mark.parametrize('kernel', CPU_KERNELS)
def test_a_decayed_group_without_pull_steps_as_torch_adamw(cls, kernel):
    ours, theirs, plain = (_float32_params(), _float32_params(),
                           _float32_params())
    runs = [(ours, cls(_decayed_group(ours), lr=LR, **CPU_KERNELS[kernel])),
            (theirs, torch.optim.AdamW(theirs, lr=LR, weight_decay=DECAY)),
            (plain, torch.optim.Adam(plain, lr=LR))]
    step_in_lockstep(runs, gradient_stream(steps=8, dtype=torch.float32))
    for a, b, c in zip(ours, theirs, plain):
        torch.testing.assert_close(a, b)  # float32 rounding
        # and the decay did something: Adam alone lands elsewhere
        assert (a - c).abs().max() > 1e-3


@with_each_optimizer
@pytest.mark.parametrize('kernel', CPU_KERNELS)
def test_a_tensor_lr_decays_as_the_same_float_lr(cls, kernel):
    ours, theirs = _float32_params(), _float32_params()
    runs = [(ours, cls(_decayed_group(ours), lr=torch.tensor(LR),
                       **CPU_KERNELS[kernel])),
            (theirs, torch.optim.AdamW(theirs, lr=LR, weight_decay=DECAY))]
    step_in_lockstep(runs, gradient_stream(steps=6, dtype=torch.float32))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@with_each_optimizer
@pytest.mark.parametrize('kernel', CPU_KERNELS)
def test_the_decay_comes_before_the_pull(cls, kernel):
    """With a non-zero SPD lambda / L2-SP coefficient too, one step is:
    shrink by ``1 - lr * decay``, then the ordinary step from there."""
    decayed, reference = make_params(), make_params()
    opt = cls(decayed, lr=LR, weight_decay=0.8, anchor='zero',
              decoupled_decay=DECAY, **CPU_KERNELS[kernel])
    ref_opt = cls(reference, lr=LR, weight_decay=0.8, anchor='zero',
                  **CPU_KERNELS[kernel])
    for grads in gradient_stream(steps=8):
        apply_grads(decayed, grads)
        opt.step()
        with torch.no_grad():
            for p, grad in zip(reference, grads):
                if grad is not None:  # torch's AdamW: stepped ones only
                    p.mul_(1 - LR * DECAY)
        apply_grads(reference, grads)
        ref_opt.step()
        for p, q in zip(decayed, reference):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


@with_each_optimizer
def test_init_anchors_are_the_values_before_the_first_decay(cls):
    params = make_params()
    initial = [p.detach().clone() for p in params]
    opt = cls(params, lr=LR, weight_decay=0.8, decoupled_decay=DECAY)
    step_in_lockstep([(params, opt)], gradient_stream(steps=6))
    for p, value in zip(params, initial):
        assert torch.equal(opt.state[p]['anchor'], value)


@with_each_optimizer
def test_zero_decoupled_decay_is_the_default_and_changes_nothing(cls):
    default, explicit = make_params(), make_params()
    runs = [(default, cls(default, lr=LR, weight_decay=0.8)),
            (explicit, cls(explicit, lr=LR, weight_decay=0.8,
                           decoupled_decay=0.0))]
    assert runs[0][1].param_groups[0]['decoupled_decay'] == 0.0
    step_in_lockstep(runs, gradient_stream(steps=6))
    for a, b in zip(default, explicit):
        assert torch.equal(a, b)


@with_each_optimizer
@pytest.mark.parametrize('bad', [-0.1, math.nan, math.inf, 'x', True, None])
def test_an_invalid_decoupled_decay_is_a_clear_error(cls, bad):
    with pytest.raises(ValueError, match=r'Invalid decoupled_decay=.* in '
                                         r'.*arguments.*>= 0'):
        cls(make_params(), decoupled_decay=bad)
    opt = cls(make_params()[:1])
    with pytest.raises(ValueError, match=r'Invalid decoupled_decay=.* in '
                                         r'parameter group 1'):
        opt.add_param_group(dict(params=make_params(seed=3)[:1],
                                 decoupled_decay=bad))
    assert len(opt.param_groups) == 1  # the bad group was not added


@with_each_optimizer
@pytest.mark.parametrize('kernel', CPU_KERNELS)
def test_the_option_is_saved_and_a_resumed_run_steps_on(cls, kernel):
    stream = gradient_stream(steps=8)
    whole = make_params()
    whole_opt = cls(_decayed_group(whole), lr=LR, **CPU_KERNELS[kernel])
    step_in_lockstep([(whole, whole_opt)], stream)

    first = make_params()
    first_opt = cls(_decayed_group(first), lr=LR, **CPU_KERNELS[kernel])
    step_in_lockstep([(first, first_opt)], stream[:4])
    buffer = io.BytesIO()
    torch.save(first_opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved['param_groups'][0]['decoupled_decay'] == DECAY

    resumed = [p.detach().clone().requires_grad_() for p in first]
    # built with another value: the saved one wins, as torch's groups do
    resumed_opt = cls([dict(params=resumed, weight_decay=0.0,
                            anchor='zero', decoupled_decay=0.0)], lr=LR,
                      **CPU_KERNELS[kernel])
    resumed_opt.load_state_dict(saved)
    assert resumed_opt.param_groups[0]['decoupled_decay'] == DECAY
    step_in_lockstep([(resumed, resumed_opt)], stream[4:])
    for a, b in zip(resumed, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@with_each_optimizer
def test_a_state_dict_saved_before_the_option_existed_loads_as_zero(cls):
    params = make_params()
    opt = cls(params, lr=LR, weight_decay=0.8)
    step_in_lockstep([(params, opt)], gradient_stream(steps=2))
    old = copy.deepcopy(opt.state_dict())
    for group in old['param_groups']:
        del group['decoupled_decay']
    fresh = cls([p.detach().clone().requires_grad_() for p in params],
                lr=LR, weight_decay=0.8, decoupled_decay=DECAY)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]['decoupled_decay'] == 0.0


@pytest.mark.slow
def test_sharded_parameters_decay_as_whole_tensors(tmp_path):
    """2 gloo processes: DTensor parameters (uneven shards) with the decay,
    in a pulled group and in an AdamW-like group, on every CPU kernel."""
    import json
    import os
    import os.path as osp
    import subprocess
    import sys

    from tests.distributed import free_port
    from tests.tool_modules import REPO
    out = tmp_path / 'results.json'
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=REPO)
    worker = osp.join(REPO, 'tests', 'test_optim', 'decoupled_decay_worker.py')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', worker, str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    records = json.loads(out.read_text())
    assert len(records) == 8
    for record in records:
        assert record['max_rel_diff'] <= 1e-6, record
        assert record['decay_effect'] > 1e-3, record
