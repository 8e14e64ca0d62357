"""Behaviour AdamSPD and AdamL2SP share through AnchoredAdam.

Hyper-parameter checks, lazily captured anchors, anchor modes, state-dict
round trips and their checks, ``reset_anchors``.
"""
import copy
import io

import pytest
import torch

from tests.optim_helpers import (KERNELS, SHAPES, apply_grads,
                                 gradient_stream, make_params,
                                 max_scaled_ulps, step_in_lockstep)
from mmspd.optim import AdamL2SP, AdamSPD

OPTIMIZERS = [AdamSPD, AdamL2SP]
ids = [cls.__name__ for cls in OPTIMIZERS]
with_each_optimizer = pytest.mark.parametrize('cls', OPTIMIZERS, ids=ids)

NAN, INF = float('nan'), float('inf')

# name, bad value, fragments the error message must contain
BAD_HYPERPARAMETERS = [
    ('lr', -1, ['lr', '-1']),
    ('lr', NAN, ['lr', 'nan']),
    ('lr', INF, ['lr', 'inf']),
    ('eps', 0, ['eps', '0']),
    ('eps', -1e-8, ['eps', repr(-1e-8)]),
    ('betas', (1.0, 0.999), ['beta1', '1.0']),
    ('betas', (0.9, -0.1), ['beta2', '-0.1']),
    ('betas', (0.9, ), ['betas', '(0.9,)']),
    ('weight_decay', -0.5, ['weight_decay', '-0.5']),
    ('weight_decay', NAN, ['weight_decay', 'nan']),
    ('anchor', 'pretrained', ['anchor', "'pretrained'", 'init', 'zero']),
    ('amsgrad', 'yes', ['amsgrad', "'yes'"]),
    ('foreach', 'fast', ['foreach', "'fast'"]),
]


def _bad_id(case):
    name, value, _ = case
    return f'{name}={value!r}'


def _assert_names(message, fragments):
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def _param(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(*shape, generator=g))


def _state_bytes(state):
    return sum(t.numel() * t.element_size() for k, t in state.items()
               if k != 'step')


def _fake_grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def _train(model, opt, steps, seed):
    """Deterministic steps on a fixed regression stream."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        y = torch.randn(8, 2, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(),
                               torch.nn.Linear(3, 2))


def _roundtrip(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _snapshot(opt):
    """A deep copy of everything load_state_dict could change."""
    return (copy.deepcopy(opt.param_groups),
            {p: {k: (v.clone() if torch.is_tensor(v) else v)
                 for k, v in s.items()}
             for p, s in opt.state.items()},
            {p: {k: id(v) for k, v in s.items()}
             for p, s in opt.state.items()})


# ------------------------------------------------------- hyper-parameters
@with_each_optimizer
@pytest.mark.parametrize('case', BAD_HYPERPARAMETERS, ids=_bad_id)
def test_bad_constructor_argument_raises_naming_the_value(cls, case):
    name, value, fragments = case
    with pytest.raises(ValueError) as info:
        cls([_param(3)], **{name: value})
    _assert_names(str(info.value), fragments)


@with_each_optimizer
@pytest.mark.parametrize('case', BAD_HYPERPARAMETERS, ids=_bad_id)
def test_bad_group_value_raises_naming_the_value(cls, case):
    name, value, fragments = case
    groups = [dict(params=[_param(3)]), dict(params=[_param(2)])]
    groups[1][name] = value
    with pytest.raises(ValueError) as info:
        cls(groups)
    _assert_names(str(info.value), fragments + ['group 1'])


@with_each_optimizer
@pytest.mark.parametrize('case', BAD_HYPERPARAMETERS, ids=_bad_id)
def test_add_param_group_with_bad_value_changes_nothing(cls, case):
    name, value, fragments = case
    first, second = _param(3), _param(2)
    opt = cls([first], lr=0.1)
    before = copy.deepcopy(opt.param_groups)
    with pytest.raises(ValueError) as info:
        opt.add_param_group({'params': [second], name: value})
    _assert_names(str(info.value), fragments)
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]['params'][0] is first
    assert repr(opt.param_groups) == repr(before)
    # the rejected parameter is not left registered anywhere: it can be added
    opt.add_param_group({'params': [second]})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]['anchor'] == 'init'


@with_each_optimizer
def test_valid_edge_values_are_accepted(cls):
    opt = cls([_param(3)], lr=0, betas=(0.0, 0.0), weight_decay=0,
              foreach=None)
    assert opt.param_groups[0]['lr'] == 0


# ---------------------------------------------------------------- sparse
@with_each_optimizer
def test_sparse_gradient_raises(cls):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters(), weight_decay=1.0)
    emb(torch.tensor([1, 4, 4])).sum().backward()
    assert emb.weight.grad.is_sparse
    with pytest.raises(RuntimeError, match='sparse'):
        opt.step()


@with_each_optimizer
def test_a_failing_step_leaves_every_group_untouched(cls):
    dense = torch.nn.Parameter(torch.ones(3))
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls([dict(params=[dense]), dict(params=emb.parameters())],
              weight_decay=1.0)
    dense.grad = torch.ones(3)
    emb(torch.tensor([1, 4])).sum().backward()
    with pytest.raises(RuntimeError, match='parameter 1'):
        opt.step()
    # the dense group comes first but was neither initialised nor stepped
    assert len(opt.state) == 0
    assert torch.equal(dense.detach(), torch.ones(3))


# --------------------------------------------------------- lazy anchors
@with_each_optimizer
@pytest.mark.parametrize('kernel', KERNELS)
def test_anchor_is_captured_at_the_first_step_not_at_construction(
        cls, kernel):
    model = torch.nn.Linear(3, 2)
    frozen = _param(4, seed=9)
    opt = cls(list(model.parameters()) + [frozen], lr=0.1, weight_decay=1.0,
              **KERNELS[kernel])
    constructed = [p.detach().clone() for p in model.parameters()]
    # weights loaded after the optimizer was built (mmengine's load_from)
    pretrained = [torch.full_like(p, 0.5 + i)
                  for i, p in enumerate(model.parameters())]
    with torch.no_grad():
        for p, w in zip(model.parameters(), pretrained):
            p.copy_(w)
    frozen_before = frozen.detach().clone()
    for seed in range(3):
        _fake_grads(model.parameters(), seed)
        opt.step()
    for p, w, c in zip(model.parameters(), pretrained, constructed):
        anchor = opt.state[p]['anchor']
        assert torch.equal(anchor, w)
        assert not torch.equal(anchor, c)
        assert not torch.equal(p.detach(), w)  # the weights did move
    # no gradient: not stepped, no state, unchanged
    assert frozen.grad is None
    assert not opt.state.get(frozen)
    assert torch.equal(frozen.detach(), frozen_before)


# ----------------------------------------------------------- anchor modes
@with_each_optimizer
def test_every_group_carries_an_anchor_mode(cls):
    a, b = _param(3), _param(2)
    opt = cls([dict(params=[a]), dict(params=[b], lr=0.5)])
    assert [g['anchor'] for g in opt.param_groups] == ['init', 'init']
    opt = cls([dict(params=[a]), dict(params=[b], anchor='init')],
              anchor='zero')
    assert [g['anchor'] for g in opt.param_groups] == ['zero', 'init']
    assert opt.defaults['anchor'] == 'zero'


@with_each_optimizer
@pytest.mark.parametrize('kernel', KERNELS)
def test_mixed_groups_store_anchors_only_for_init(cls, kernel):
    backbone = [_param(6, 5, seed=1), _param(5, seed=2)]
    head = [_param(4, 3, seed=3), _param(7, seed=4)]
    opt = cls([dict(params=backbone), dict(params=head, anchor='zero')],
              lr=0.1, weight_decay=1.0, **KERNELS[kernel])
    for seed in range(3):
        _fake_grads(backbone + head, seed)
        opt.step()
    for p in backbone:
        state = opt.state[p]
        assert 'anchor' in state
        assert _state_bytes(state) == 3 * p.numel() * p.element_size()
    for p in head:
        state = opt.state[p]
        assert 'anchor' not in state
        assert _state_bytes(state) == 2 * p.numel() * p.element_size()


# ------------------------------------------------------------ state dict
@with_each_optimizer
@pytest.mark.parametrize('kernel', KERNELS)
def test_state_dict_round_trip_resumes_exactly(cls, kernel):
    model = _model()
    pretrained = [p.detach().clone() for p in model.parameters()]
    kwargs = dict(lr=0.05, weight_decay=0.5, **KERNELS[kernel])
    opt = cls(model.parameters(), **kwargs)
    _train(model, opt, 10, seed=1)
    saved = _roundtrip(opt.state_dict())

    resumed = _model(seed=123)  # different initial weights...
    resumed.load_state_dict(model.state_dict())  # ...then the trained ones
    opt2 = cls(resumed.parameters(), **kwargs)
    opt2.load_state_dict(saved)
    for p in resumed.parameters():
        step = opt2.state[p]['step']
        assert torch.is_tensor(step)
        assert step.device.type == 'cpu'
        assert step.dtype == torch.float32
        assert step.dim() == 0
        assert float(step) == 10.0

    _train(model, opt, 10, seed=2)
    _train(resumed, opt2, 10, seed=2)
    for p, q, w in zip(model.parameters(), resumed.parameters(), pretrained):
        assert torch.equal(p, q)
        assert not torch.equal(q.detach(), w)  # trained away from w...
        assert torch.equal(opt2.state[q]['anchor'], w)  # ...anchored at w
        assert torch.equal(opt.state[p]['anchor'], w)
        assert float(opt2.state[q]['step']) == 20.0


@with_each_optimizer
@pytest.mark.parametrize('stored_as', ['int', 'float64', 'float32'])
def test_loaded_step_counters_become_host_float32(cls, stored_as):
    model = _model()
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    _train(model, opt, 3, seed=1)
    saved = _roundtrip(opt.state_dict())
    for s in saved['state'].values():
        if stored_as == 'int':
            s['step'] = 3
        else:
            s['step'] = s['step'].to(getattr(torch, stored_as))
    opt2 = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    opt2.load_state_dict(saved)
    for p in model.parameters():
        step = opt2.state[p]['step']
        assert torch.is_tensor(step) and step.dim() == 0
        assert step.device.type == 'cpu' and step.dtype == torch.float32
        assert float(step) == 3.0


@with_each_optimizer
def test_old_state_dict_without_anchor_key_loads_as_init(cls):
    model = _model()
    pretrained = [p.detach().clone() for p in model.parameters()]
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    _train(model, opt, 4, seed=1)
    saved = _roundtrip(opt.state_dict())
    for group in saved['param_groups']:
        del group['anchor']
    opt2 = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    opt2.load_state_dict(saved)
    assert [g['anchor'] for g in opt2.param_groups] == ['init']
    _train(model, opt2, 2, seed=2)
    for p, w in zip(model.parameters(), pretrained):
        assert torch.equal(opt2.state[p]['anchor'], w)


@with_each_optimizer
def test_anchor_of_wrong_shape_is_rejected_before_anything_changes(cls):
    model = torch.nn.Linear(3, 2)  # weight (2, 3)
    assert model.weight.shape == (2, 3)
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    _fake_grads(model.parameters(), 0)
    opt.step()
    saved = _roundtrip(opt.state_dict())
    saved['state'][0]['anchor'] = torch.zeros(3, 2)
    saved['state'][0]['exp_avg'] = torch.full((2, 3), 7.0)
    saved['param_groups'][0]['lr'] = 123.0

    target = torch.nn.Linear(3, 2)
    opt2 = cls(target.parameters(), lr=0.05, weight_decay=0.5)
    _fake_grads(target.parameters(), 1)
    opt2.step()
    groups_before, state_before, ids_before = _snapshot(opt2)
    with pytest.raises(ValueError) as info:
        opt2.load_state_dict(saved)
    _assert_names(str(info.value), ['parameter 0', '(3, 2)', '(2, 3)'])
    groups_after, state_after, ids_after = _snapshot(opt2)
    assert repr(groups_after) == repr(groups_before)
    assert opt2.param_groups[0]['lr'] == 0.05
    assert ids_after == ids_before
    assert state_after.keys() == state_before.keys()
    for p in state_before:
        for k, v in state_before[p].items():
            assert torch.equal(state_after[p][k], v), k


def _adam_state_dict(model):
    adam = torch.optim.Adam(model.parameters(), lr=0.05)
    _train(model, adam, 3, seed=1)
    return _roundtrip(adam.state_dict())


@with_each_optimizer
def test_torch_adam_state_cannot_load_into_init_groups(cls):
    model = _model()
    saved = _adam_state_dict(model)
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5)
    with pytest.raises(ValueError, match='anchor'):
        opt.load_state_dict(saved)
    assert not opt.state


@with_each_optimizer
def test_torch_adam_state_loads_into_zero_groups(cls):
    model = _model()
    saved = _adam_state_dict(model)
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5, anchor='zero')
    opt.load_state_dict(saved)
    for p, index in zip(model.parameters(), range(4)):
        assert torch.equal(opt.state[p]['exp_avg'],
                           saved['state'][index]['exp_avg'])
        assert 'anchor' not in opt.state[p]
    assert opt.param_groups[0]['anchor'] == 'zero'
    _train(model, opt, 1, seed=2)  # and it keeps training with zero anchors
    assert all(float(opt.state[p]['step']) == 4.0
               for p in model.parameters())


@with_each_optimizer
def test_zero_group_drops_loaded_anchors_with_a_warning(cls):
    model = _model()
    opt = cls(model.parameters(), lr=0.05, weight_decay=0.5)  # 'init'
    _train(model, opt, 3, seed=1)
    saved = _roundtrip(opt.state_dict())
    assert all('anchor' in s for s in saved['state'].values())
    opt2 = cls(model.parameters(), lr=0.05, weight_decay=0.5, anchor='zero')
    with pytest.warns(UserWarning, match='anchor'):
        opt2.load_state_dict(saved)
    assert opt2.param_groups[0]['anchor'] == 'zero'
    for p in model.parameters():
        assert 'anchor' not in opt2.state[p]
        assert _state_bytes(opt2.state[p]) == 2 * p.numel() * 4


# --------------------------------------------------------- reset_anchors
@with_each_optimizer
def test_reset_anchors_takes_the_current_weights(cls):
    backbone = [_param(6, 5, seed=1), _param(5, seed=2)]
    never_stepped = _param(3, seed=5)
    head = [_param(4, 3, seed=3)]
    opt = cls([dict(params=backbone + [never_stepped]),
               dict(params=head, anchor='zero')], lr=0.1, weight_decay=1.0)
    pretrained = [p.detach().clone() for p in backbone]
    for seed in range(4):
        _fake_grads(backbone + head, seed)
        opt.step()
    for p, w in zip(backbone, pretrained):
        assert torch.equal(opt.state[p]['anchor'], w)
    current = [p.detach().clone() for p in backbone]

    assert opt.reset_anchors() == len(backbone)

    for p, w in zip(backbone, current):
        assert torch.equal(opt.state[p]['anchor'], w)
        assert opt.state[p]['anchor'].data_ptr() != p.data_ptr()
    for p in head:
        assert 'anchor' not in opt.state[p]
    assert not opt.state.get(never_stepped)
    # the new anchors are copies: later steps move the weights, not them
    _fake_grads(backbone + head, 10)
    opt.step()
    for p, w in zip(backbone, current):
        assert not torch.equal(p.detach(), w)
        assert torch.equal(opt.state[p]['anchor'], w)


@with_each_optimizer
def test_reset_anchors_does_nothing_for_zero_groups(cls):
    params = [_param(4, 3), _param(3)]
    opt = cls(params, lr=0.1, weight_decay=1.0, anchor='zero')
    _fake_grads(params, 0)
    opt.step()
    before = {p: dict(opt.state[p]) for p in params}
    assert opt.reset_anchors() == 0
    for p in params:
        assert 'anchor' not in opt.state[p]
        assert opt.state[p].keys() == before[p].keys()


@with_each_optimizer
def test_switching_a_group_from_zero_to_init_needs_reset_anchors(cls):
    params = [_param(4, 3), _param(3)]
    opt = cls(params, lr=0.1, weight_decay=1.0, anchor='zero')
    _fake_grads(params, 0)
    opt.step()
    opt.param_groups[0]['anchor'] = 'init'
    _fake_grads(params, 1)
    weights = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match='reset_anchors'):
        opt.step()
    for p, w in zip(params, weights):
        assert torch.equal(p.detach(), w)
    # the fix the message names works
    assert opt.reset_anchors() == len(params)
    opt.step()
    for p, w in zip(params, weights):
        assert torch.equal(opt.state[p]['anchor'], w)
        assert not torch.equal(p.detach(), w)


# ------------------------------------------------------------ kernel choice
@with_each_optimizer
def test_fused_and_loop_together_is_a_clear_error(cls):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match='fused=True and foreach=False'):
        cls([p], fused=True, foreach=False)


@with_each_optimizer
def test_fused_required_where_it_is_not_available_is_a_clear_error(cls):
    p = torch.nn.Parameter(torch.empty(3, device='meta'))
    opt = cls([p], weight_decay=1.0, fused=True)
    p.grad = torch.empty_like(p)
    with pytest.raises(RuntimeError, match='meta/torch.float32'):
        opt.step()
    assert len(opt.state) == 0


@pytest.mark.parametrize('params, expected', [
    ([torch.zeros(2)], 'fused'),
    ([torch.zeros(2, dtype=torch.float16)], 'foreach'),
    ([torch.zeros(2), torch.zeros(2, device='meta')], 'foreach'),
])
def test_default_kernel_is_fused_where_every_tensor_supports_it(
        params, expected):
    from mmspd.optim._dispatch import select_kernel
    group = dict(foreach=None, fused=None)
    assert select_kernel(group, params) == expected
    assert select_kernel(dict(group, foreach=False), params) == 'loop'
    assert select_kernel(dict(group, fused=False), params) == 'foreach'


@with_each_optimizer
@pytest.mark.parametrize('bad', ['int8', 'half-ish', torch.int32, 3])
def test_bad_anchor_dtype_is_named(cls, bad):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match='anchor_dtype'):
        cls([p], anchor_dtype=bad)


@with_each_optimizer
@pytest.mark.parametrize('param_dtype,anchor_dtype', [
    (torch.float32, 'float64'), (torch.bfloat16, 'float16')])
def test_anchor_dtype_the_parameter_cannot_hold_is_named(cls, param_dtype,
                                                         anchor_dtype):
    p = torch.nn.Parameter(torch.ones(2, dtype=param_dtype))
    opt = cls([p], weight_decay=1.0, anchor_dtype=anchor_dtype)
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=f"anchor_dtype='{anchor_dtype}' "
                       f'does not fit in the dtype of parameter 0'):
        opt.step()
    assert not opt.state[p]  # nothing created by the failed step
    assert torch.equal(p.detach(), torch.ones(2, dtype=param_dtype))


@with_each_optimizer
def test_bfloat16_anchors_survive_a_state_dict_round_trip(cls):
    model = torch.nn.Linear(4, 3)
    opt = cls(model.parameters(), lr=0.1, weight_decay=1.0,
              anchor_dtype=torch.bfloat16)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    saved = {id(p): opt.state[p]['anchor'].clone()
             for p in model.parameters()}
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = cls(model.parameters(), lr=0.1, weight_decay=1.0,
                anchor_dtype='bfloat16')
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for p in model.parameters():
        anchor = fresh.state[p]['anchor']
        assert anchor.dtype == torch.bfloat16
        assert torch.equal(anchor, saved[id(p)])
    fresh.reset_anchors()
    assert all(fresh.state[p]['anchor'].dtype == torch.bfloat16
               for p in model.parameters())


# ------------------------------------------------ what both add to Adam
@with_each_optimizer
@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_zero_weight_decay_is_torch_adam(cls, kernel, anchor, amsgrad):
    params = make_params()
    adam_params = make_params()
    opt = cls(params, lr=0.03, weight_decay=0.0, anchor=anchor,
              amsgrad=amsgrad, **KERNELS[kernel])
    adam = torch.optim.Adam(adam_params, lr=0.03, amsgrad=amsgrad,
                            **KERNELS[kernel])
    step_in_lockstep([(params, opt), (adam_params, adam)],
                     gradient_stream(steps=25))
    for a, b in zip(params, adam_params):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@with_each_optimizer
@pytest.mark.parametrize('kernel', KERNELS)
@pytest.mark.parametrize('anchor', ['init', 'zero'])
def test_gradients_are_left_untouched(cls, kernel, anchor):
    params = make_params()
    opt = cls(params, lr=0.05, weight_decay=1.0, anchor=anchor,
              **KERNELS[kernel])
    for grads in gradient_stream(steps=6):
        apply_grads(params, grads)
        held = [p.grad for p in params]
        opt.step()
        for p, g, h in zip(params, grads, held):
            if g is None:
                assert p.grad is None
            else:
                assert p.grad is h  # same tensor object...
                assert torch.equal(p.grad, g)  # ...with the same values


@with_each_optimizer
@pytest.mark.parametrize('kernel', ['loop', 'foreach'])
@pytest.mark.parametrize('anchor', ['init', 'zero'])
def test_step_reads_no_tensor_value_on_the_host(cls, kernel, anchor):
    """Meta tensors have no values: any .item(), bool() or Python ``if`` on a
    parameter-device tensor inside step() raises. Passing proves the step is
    free of host synchronisation on any device."""
    params = [torch.nn.Parameter(torch.empty(s, device='meta'))
              for s in SHAPES]
    opt = cls([dict(params=params, anchor=anchor)], weight_decay=1.0,
              amsgrad=True, **KERNELS[kernel])
    for _ in range(2):
        for p in params:
            p.grad = torch.empty_like(p)
        opt.step()
    for p in params:
        state = opt.state[p]
        assert state['step'].device.type == 'cpu'
        assert float(state['step']) == 2.0
        assert state['exp_avg'].device.type == 'meta'
        assert ('anchor' in state) == (anchor == 'init')


@with_each_optimizer
@pytest.mark.parametrize('kernel', ['foreach', 'fused'])
def test_transposed_parameters_step_like_the_loop(cls, kernel):
    # A transposed parameter with contiguous gradients: torch's own fused
    # Adam mixes their elements up; the fused kernels route such tensors to
    # the foreach path instead.
    kwargs = dict(lr=0.05, weight_decay=1.0)
    start = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    loop_p = [torch.nn.Parameter(start.clone().t()), torch.nn.Parameter(
        start.clone())]
    fast_p = [torch.nn.Parameter(start.clone().t()), torch.nn.Parameter(
        start.clone())]
    assert not fast_p[0].is_contiguous()
    loop = cls(loop_p, foreach=False, **kwargs)
    fast = cls(fast_p, **KERNELS[kernel], **kwargs)
    for grads in gradient_stream(shapes=[(5, 6), (6, 5)], steps=10,
                                 dtype=torch.float32):
        apply_grads(loop_p, grads)
        apply_grads(fast_p, grads)
        loop.step()
        fast.step()
    for a, b in zip(loop_p, fast_p):
        assert max_scaled_ulps(a, b) <= 8.0


@with_each_optimizer
@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_capturable_steps_equal_host_counter_steps(cls, anchor, amsgrad):
    host_params, dev_params = make_params(), make_params()
    kwargs = dict(lr=0.05, weight_decay=0.7, anchor=anchor, amsgrad=amsgrad,
                  fused=False)
    host = cls(host_params, **kwargs)
    dev = cls(dev_params, capturable=True, **kwargs)

    def same_weights():
        for a, b in zip(host_params, dev_params):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=0,
                                       atol=1e-12)

    step_in_lockstep([(host_params, host), (dev_params, dev)],
                     gradient_stream(steps=30), after_each=same_weights)
    for p in dev_params:
        step = dev.state[p]['step']
        assert step.device == p.device and step.dtype == torch.float32
    assert [float(dev.state[p]['step']) for p in dev_params] == \
        [float(host.state[p]['step']) for p in host_params]


@with_each_optimizer
@pytest.mark.parametrize('anchor', ['init', 'zero'])
def test_capturable_step_reads_nothing_on_the_host(cls, anchor):
    # as the meta test above, with the counters on the (meta) device too
    params = [torch.nn.Parameter(torch.empty(s, device='meta'))
              for s in SHAPES]
    opt = cls([dict(params=params, anchor=anchor)], weight_decay=1.0,
              amsgrad=True, capturable=True)
    for _ in range(2):
        for p in params:
            p.grad = torch.empty_like(p)
        opt.step()
    for p in params:
        assert opt.state[p]['step'].device.type == 'meta'


@with_each_optimizer
@pytest.mark.parametrize('kernel', [dict(fused=True), dict(foreach=False)])
def test_capturable_with_a_host_counter_kernel_is_named(cls, kernel):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=r'capturable=True and '
                       f'{list(kernel)[0]}='):
        cls([p], capturable=True, **kernel)
    with pytest.raises(ValueError, match="capturable='yes'"):
        cls([p], capturable='yes')


@with_each_optimizer
def test_counters_follow_the_capturable_setting_across_a_reload(cls):
    params = make_params(torch.float32)
    dev = cls(params, lr=0.05, weight_decay=1.0, capturable=True)
    for grads in gradient_stream(steps=3):
        apply_grads(params, grads)
        dev.step()
    host = cls(params, lr=0.05, weight_decay=1.0)
    host.load_state_dict(copy.deepcopy(dev.state_dict()))
    apply_grads(params, gradient_stream(steps=1, seed=7)[0])
    host.step()
    stepped = [p for p in params if p.grad is not None and dev.state[p]]
    assert stepped
    for p in stepped:
        step = host.state[p]['step']
        assert step.device.type == 'cpu'
        assert float(step) == float(dev.state[p]['step']) + 1


needs_cuda = pytest.mark.cuda  # skipped without a GPU (conftest.py)


@needs_cuda
@with_each_optimizer
@pytest.mark.parametrize('capturable', [False, True])
def test_cuda_step_never_synchronises(cls, capturable):
    params = [torch.nn.Parameter(p.detach().cuda())
              for p in make_params(torch.float32)]
    opt = cls(params, lr=0.05, weight_decay=1.0, capturable=capturable)
    stream = [[None if g is None else g.cuda() for g in grads]
              for grads in gradient_stream(steps=4, dtype=torch.float32)]
    apply_grads(params, stream[0])
    opt.step()  # creates the state
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode('error')
        for grads in stream[1:]:
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode('default')
    torch.cuda.synchronize()
    assert all(torch.isfinite(p).all() for p in params)


@needs_cuda
@with_each_optimizer
def test_capturable_step_replays_in_a_cuda_graph(cls):
    torch.manual_seed(0)
    start = [torch.randn(64, 32, device='cuda'), torch.randn(32,
                                                             device='cuda')]
    graphed = [torch.nn.Parameter(t.clone()) for t in start]
    eager = [torch.nn.Parameter(t.clone()) for t in start]
    kwargs = dict(lr=0.01, weight_decay=1.0, capturable=True)
    opt_graphed, opt_eager = cls(graphed, **kwargs), cls(eager, **kwargs)
    stream = [[torch.randn_like(t) for t in start] for _ in range(6)]
    static_grads = [torch.zeros_like(t) for t in start]
    for p, g in zip(graphed, static_grads):
        p.grad = g

    def eager_step(k):
        for p, g in zip(eager, stream[k]):
            p.grad = g.clone()
        opt_eager.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: creates state and anchors
        for k in range(3):
            for g, new in zip(static_grads, stream[k]):
                g.copy_(new)
            opt_graphed.step()
    torch.cuda.current_stream().wait_stream(side)
    for k in range(3):
        eager_step(k)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt_graphed.step()
    for k in range(3, 6):
        for g, new in zip(static_grads, stream[k]):
            g.copy_(new)
        graph.replay()
        eager_step(k)
        for a, b in zip(graphed, eager):
            torch.testing.assert_close(a.detach(), b.detach())
