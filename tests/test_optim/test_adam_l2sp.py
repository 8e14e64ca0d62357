"""AdamL2SP against the float64 reference, path equivalence, edge cases."""
import itertools

import pytest
import torch

from mmspd.optim import AdamL2SP
from tests.optim_helpers import (KERNELS, apply_grads,
                                 gradient_stream, make_params,
                                 max_scaled_ulps)
from tests.reference import ReferenceAdamL2SP

CASES = [
    # kernel, anchor, amsgrad
    dict(kernel=k, anchor=a, amsgrad=ams)
    for k, a, ams in itertools.product(KERNELS, ('init', 'zero'),
                                       (False, True))
]


def _ids(case):
    return '-'.join(f'{k}={v}' for k, v in case.items())


@pytest.mark.parametrize('case', CASES, ids=_ids)
def test_matches_float64_reference(case):
    params = make_params()
    zero_anchor = case['anchor'] == 'zero'
    ref = ReferenceAdamL2SP(params, lr=0.05, weight_decay=0.5,
                            amsgrad=case['amsgrad'], zero_anchor=zero_anchor)
    # The same run without the pull: the L2-SP term must change the result,
    # or this test checks only Adam.
    plain = ReferenceAdamL2SP(params, lr=0.05, weight_decay=0.0,
                              amsgrad=case['amsgrad'])
    opt = AdamL2SP(params, lr=0.05, weight_decay=0.5,
                   anchor=case['anchor'], amsgrad=case['amsgrad'],
                   **KERNELS[case['kernel']])
    initial = [p.detach().clone() for p in params]
    for grads in gradient_stream(steps=35):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
        plain.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach(), expected, rtol=0,
                                       atol=1e-12)
    gap = max(float((a - b).abs().max())
              for a, b in zip(ref.params, plain.params))
    assert gap > 1e-2, gap
    for p, p0 in zip(params, initial):
        state = opt.state[p]
        assert float(state['step']) > 0
        if zero_anchor:
            assert 'anchor' not in state
        else:
            # every tensor, including tensor 3 (first gradient at step 5),
            # is anchored at its initial value
            assert torch.equal(state['anchor'], p0)
        assert ('max_exp_avg_sq' in state) == case['amsgrad']


@pytest.mark.parametrize('kernel', ['foreach', 'fused'])
@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_fast_kernels_equal_the_loop_in_float32(kernel, anchor, amsgrad):
    loop_params = make_params(torch.float32)
    fast_params = make_params(torch.float32)
    kwargs = dict(lr=0.05, weight_decay=0.5, anchor=anchor, amsgrad=amsgrad)
    loop = AdamL2SP(loop_params, foreach=False, **kwargs)
    fast = AdamL2SP(fast_params, **KERNELS[kernel], **kwargs)
    initial = [p.detach().clone() for p in loop_params]
    for grads in gradient_stream(steps=40):
        apply_grads(loop_params, grads)
        apply_grads(fast_params, grads)
        loop.step()
        fast.step()
    # foreach runs the loop's per-tensor ops: a few ulp per element. The fused
    # kernel rounds Adam's arithmetic its own way: a few ulp of the tensor's
    # scale.
    eps32 = torch.finfo(torch.float32).eps
    for a, b, a0 in zip(loop_params, fast_params, initial):
        a, b = a.detach(), b.detach()
        assert not torch.equal(a, a0)  # both really trained
        if kernel == 'foreach':
            ulps = (a - b).abs() / (eps32 * a.abs().clamp_min(1e-6))
            assert float(ulps.max()) <= 4.0
        else:
            assert max_scaled_ulps(a, b) <= 8.0
