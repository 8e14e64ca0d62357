"""AdamSPD against the float64 reference, path equivalence, edge cases."""
import itertools

import pytest
import torch

from mmspd.optim import AdamSPD
from mmspd.optim._spd_rule import keep_factors
from tests.optim_helpers import (KERNELS, apply_grads,
                                 gradient_stream, make_params,
                                 max_scaled_ulps, step_beside_reference)
from tests.reference import ReferenceAdamSPD

CASES = [
    # kernel, anchor, amsgrad, lambda
    dict(kernel=k, anchor=a, amsgrad=ams, weight_decay=lam)
    for k, a, ams, lam in itertools.product(KERNELS, ('init', 'zero'),
                                            (False, True), (1.0, 0.6))
]


def _ids(case):
    return '-'.join(f'{k}={v}' for k, v in case.items())


@pytest.mark.parametrize('case', CASES, ids=_ids)
def test_matches_float64_reference(case):
    params = make_params()
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=case['weight_decay'],
                           amsgrad=case['amsgrad'],
                           zero_anchor=case['anchor'] == 'zero')
    opt = AdamSPD(params, lr=0.05, weight_decay=case['weight_decay'],
                  anchor=case['anchor'], amsgrad=case['amsgrad'],
                  **KERNELS[case['kernel']])
    initial = [p.detach().clone() for p in params]
    step_beside_reference(opt, params, ref)
    # The projection must really have fired, or this test checks only Adam.
    assert ref.fired >= 20, ref.fired
    for i, p in enumerate(params):
        state = opt.state[p]
        if case['anchor'] == 'zero':
            assert 'anchor' not in state
        elif i == 3:
            # first gradient at step 5: the anchor is its value then, which is
            # still the initial value since it was never updated before
            torch.testing.assert_close(state['anchor'], initial[i])
        else:
            torch.testing.assert_close(state['anchor'], initial[i])


@pytest.mark.parametrize('kernel', ['foreach', 'fused'])
@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_fast_kernels_equal_the_loop_in_float32(kernel, anchor, amsgrad):
    loop_params = make_params(torch.float32)
    fast_params = make_params(torch.float32)
    kwargs = dict(lr=0.05, weight_decay=1.0, anchor=anchor, amsgrad=amsgrad)
    loop = AdamSPD(loop_params, foreach=False, **kwargs)
    fast = AdamSPD(fast_params, **KERNELS[kernel], **kwargs)
    for grads in gradient_stream(steps=40):
        apply_grads(loop_params, grads)
        apply_grads(fast_params, grads)
        loop.step()
        fast.step()
    # foreach runs the loop's per-tensor ops: a few ulp per element. The fused
    # kernel rounds Adam's arithmetic its own way: a few ulp of the tensor's
    # scale.
    eps32 = torch.finfo(torch.float32).eps
    for a, b in zip(loop_params, fast_params):
        a, b = a.detach(), b.detach()
        if kernel == 'foreach':
            ulps = (a - b).abs() / (eps32 * a.abs().clamp_min(1e-6))
            assert float(ulps.max()) <= 4.0
        else:
            assert max_scaled_ulps(a, b) <= 8.0


@pytest.mark.parametrize('kernel', KERNELS)
def test_lambda_one_never_grows_a_selected_deviation(kernel):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50, dtype=torch.float64))
    opt = AdamSPD([p], lr=0.1, weight_decay=1.0, **KERNELS[kernel])
    p.grad = torch.randn(50, dtype=torch.float64)
    opt.step()  # first step: p == anchor, nothing projected
    anchor = opt.state[p]['anchor']
    for _ in range(20):
        before = p.detach() - anchor
        # gradient pointing back toward the anchor: g.(p - a) > 0
        p.grad = before + 0.1 * torch.randn(50, dtype=torch.float64)
        selected = float((p.grad * before).sum()) > 0
        opt.step()
        after = torch.linalg.vector_norm(p.detach() - anchor)
        if selected:
            assert float(after) <= float(torch.linalg.vector_norm(before)) \
                * (1 + 1e-12)


def test_keep_factors_guard_zero_over_zero():
    dots = torch.tensor([1.0, 1.0, -1.0, 1.0])
    deviation = torch.tensor([0.0, 1.0, 1.0, 2.0])
    proposal = torch.tensor([0.0, 2.0, 2.0, 1.0])
    keep = keep_factors(dots, deviation, proposal, weight_decay=1.0)
    # q == a -> r = 0; selected and growing -> 1 - (2-1)/2; not selected;
    # selected but shrinking -> r clamped to 0.
    torch.testing.assert_close(keep, torch.tensor([1.0, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize('kernel', KERNELS)
def test_parameter_sitting_on_its_anchor_stays_finite(kernel):
    # Zero anchor, zero weight and zero gradients: every norm is 0.
    p = torch.nn.Parameter(torch.zeros(4))
    opt = AdamSPD([dict(params=[p], anchor='zero')], weight_decay=1.0,
                  **KERNELS[kernel])
    for _ in range(3):
        p.grad = torch.zeros(4)
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(4))


def test_bfloat16_parameters_step_with_float32_reductions():
    # float16 parameters share torch.optim.Adam's limits (v underflows at
    # eps=1e-8); mixed precision keeps float32 master weights instead.
    dtype = torch.bfloat16
    params = make_params(dtype)
    opt = AdamSPD(params, lr=0.05, weight_decay=1.0)
    for grads in gradient_stream(steps=5):
        apply_grads(params, grads)
        opt.step()
    for p in params:
        assert p.dtype == dtype
        assert torch.isfinite(p).all()


def test_mixed_dtypes_in_one_group_match_the_loop():
    def build():
        return [torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=d))
                for d in (torch.float32, torch.float64)]

    g = torch.Generator().manual_seed(3)
    loop_params = build()
    g = torch.Generator().manual_seed(3)
    fast_params = build()
    loop = AdamSPD(loop_params, lr=0.1, weight_decay=1.0, foreach=False)
    fast = AdamSPD(fast_params, lr=0.1, weight_decay=1.0, foreach=True)
    stream = torch.Generator().manual_seed(4)
    for _ in range(10):
        grads = [torch.randn(4, 3, generator=stream) for _ in range(2)]
        apply_grads(loop_params, grads)
        apply_grads(fast_params, grads)
        loop.step()
        fast.step()
    for a, b in zip(loop_params, fast_params):
        torch.testing.assert_close(a, b)


def test_closure_loss_is_returned():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamSPD([p], lr=0.1, weight_decay=1.0)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 3.0
    assert float(p.detach().sum()) < 3.0


def test_learns_a_regression_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    opt = AdamSPD(model.parameters(), lr=0.05, weight_decay=1.0)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.1 * first


@pytest.mark.parametrize('kernel', KERNELS)
def test_projection_statistics_count_what_the_reference_projected(kernel):
    params = make_params()
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=1.0)
    opt = AdamSPD(params, lr=0.05, weight_decay=1.0, **KERNELS[kernel])
    assert opt.projection_statistics() == dict(
        tensors=0, projected_fraction=0.0, mean_ratio=0.0)
    seen_projection = False
    for grads in gradient_stream(steps=30):
        apply_grads(params, grads)
        fired_before = ref.fired
        opt.step()
        ref.step(grads)
        stats = opt.projection_statistics()
        stepped = sum(g is not None for g in grads)
        assert stats['tensors'] == stepped
        projected = round(stats['projected_fraction'] * stepped)
        assert projected == ref.fired - fired_before
        if projected:
            seen_projection = True
            assert 0.0 < stats['mean_ratio'] <= 1.0
        else:
            assert stats['mean_ratio'] == 0.0
    assert seen_projection


def test_projection_statistics_skip_groups_without_spd():
    params = make_params()
    opt = AdamSPD([dict(params=params[:2], weight_decay=0.0),
                   dict(params=params[2:])], lr=0.05, weight_decay=1.0)
    apply_grads(params, gradient_stream(steps=1)[0])
    opt.step()
    # tensor 3 has no gradient at step 0, so only tensor 2 was considered
    assert opt.projection_statistics()['tensors'] == 1


@pytest.mark.parametrize('kernel', KERNELS)
def test_bfloat16_anchors_are_the_rounded_pretrained_weights(kernel):
    params = make_params()
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=1.0,
                           anchor_dtype=torch.bfloat16)
    opt = AdamSPD(params, lr=0.05, weight_decay=1.0, anchor_dtype='bfloat16',
                  **KERNELS[kernel])
    for grads in gradient_stream(steps=30):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
    for p, expected in zip(params, ref.params):
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-12)
    anchors = [opt.state[p]['anchor'] for p in params]
    assert all(a.dtype == torch.bfloat16 for a in anchors)
    assert ref.fired >= 10
    # 2 bytes of anchor next to 8 + 8 of moments per float64 parameter
    state_bytes = sum(t.numel() * t.element_size() for p in params
                      for k, t in opt.state[p].items() if k != 'step')
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    assert state_bytes / param_bytes == pytest.approx(2.25)
