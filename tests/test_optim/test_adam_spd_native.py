"""The compiled CPU kernel of AdamSPD and the torch-op fallback beside it.

The other optimizer tests run ``fused=True`` on whatever the install built
(the compiled kernel in CI); here both implementations of the fused kernel
are checked explicitly, as well as the compiled kernel's own contract
(several blocks, thread-count independence, mixed anchor dtypes, input
checks).
"""
import os

import pytest
import torch

from mmspd.optim import AdamSPD, _native
from tests.optim_helpers import (apply_grads, gradient_stream, make_params,
                                 max_scaled_ulps, step_beside_reference)
from tests.reference import ReferenceAdamSPD

needs_extension = pytest.mark.skipif(
    _native.extension is None, reason='compiled kernel not built')

#: Shapes with a tensor of several blocks (the kernel's block is 2**15).
LARGE_SHAPES = [(300, 400), (400, ), (7, 3, 3, 3)]


@pytest.fixture(params=['compiled', 'composed'])
def fused_impl(request, monkeypatch):
    """Run the test on the compiled kernel, then on the torch-op fallback."""
    if request.param == 'compiled':
        if _native.extension is None:
            pytest.skip('compiled kernel not built')
    else:
        monkeypatch.setattr(_native, 'extension', None)
        monkeypatch.setattr(_native, '_warned', True)
    return request.param


def test_the_install_built_the_compiled_kernel():
    # CI installs with the kernel; MMSPD_WITH_OPS=0 opts out knowingly.
    if os.getenv('MMSPD_WITH_OPS', '1') == '0':
        pytest.skip('MMSPD_WITH_OPS=0')
    assert _native.extension is not None, _native.LOAD_ERROR


@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_float64_steps_match_the_reference(fused_impl, anchor, amsgrad):
    params = make_params()
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=0.8, amsgrad=amsgrad,
                           zero_anchor=anchor == 'zero')
    opt = AdamSPD(params, lr=0.05, weight_decay=0.8, anchor=anchor,
                  amsgrad=amsgrad, fused=True)
    step_beside_reference(opt, params, ref)
    assert ref.fired >= 20, ref.fired


def _run_pair(shapes, steps, fast_kwargs, loop_kwargs=None, seed=0):
    """Step a loop-kernel optimizer and a fused one on the same stream."""
    loop_params = make_params(torch.float32, seed=seed, shapes=shapes)
    fast_params = make_params(torch.float32, seed=seed, shapes=shapes)
    loop = AdamSPD(loop_params, foreach=False, **(loop_kwargs or fast_kwargs))
    fast = AdamSPD(fast_params, fused=True, **fast_kwargs)
    projected = 0
    for grads in gradient_stream(shapes=shapes, steps=steps, seed=seed + 1,
                                 dtype=torch.float32):
        apply_grads(loop_params, grads)
        apply_grads(fast_params, grads)
        loop.step()
        fast.step()
        stats = loop.projection_statistics()
        projected += round(stats['projected_fraction'] * stats['tensors'])
        assert fast.projection_statistics() == pytest.approx(stats, abs=1e-5)
    return loop_params, fast_params, projected


@pytest.mark.parametrize('anchor', ['init', 'zero'])
@pytest.mark.parametrize('amsgrad', [False, True])
def test_float32_multi_block_tensors_equal_the_loop(fused_impl, anchor,
                                                    amsgrad):
    kwargs = dict(lr=0.01, weight_decay=1.0, anchor=anchor, amsgrad=amsgrad)
    loop_params, fast_params, projected = _run_pair(LARGE_SHAPES, 25, kwargs)
    assert projected >= 10, projected
    for a, b in zip(loop_params, fast_params):
        assert max_scaled_ulps(a, b) <= 8.0


@pytest.mark.parametrize('anchor_dtype', ['bfloat16', 'float16'])
def test_anchors_of_another_dtype_equal_the_loop(fused_impl, anchor_dtype):
    kwargs = dict(lr=0.01, weight_decay=1.0, anchor_dtype=anchor_dtype)
    loop_params, fast_params, projected = _run_pair(LARGE_SHAPES, 20, kwargs)
    assert projected >= 10, projected
    for a, b in zip(loop_params, fast_params):
        assert max_scaled_ulps(a, b) <= 8.0


def _supported_isas():
    if _native.extension is None:
        return []
    best = _native.extension.cpu_isa()
    order = ['baseline', 'avx2', 'avx512']
    return order[:order.index(best) + 1]


@needs_extension
@pytest.mark.parametrize('isa', ['baseline', 'avx2', 'avx512'])
def test_every_instruction_set_equals_the_loop(isa):
    if isa not in _supported_isas():
        pytest.skip(f'this CPU has no {isa}')
    kwargs = dict(lr=0.01, weight_decay=1.0, amsgrad=True,
                  anchor_dtype='bfloat16')
    try:
        _native.extension.set_cpu_isa(isa)
        assert _native.extension.cpu_isa() == isa
        loop_params, fast_params, projected = _run_pair(LARGE_SHAPES, 20,
                                                        kwargs)
    finally:
        _native.extension.set_cpu_isa('best')
    assert projected >= 10, projected
    for a, b in zip(loop_params, fast_params):
        assert max_scaled_ulps(a, b) <= 8.0


@needs_extension
def test_unknown_or_unsupported_instruction_set_is_named():
    with pytest.raises(RuntimeError, match="unknown instruction set 'sse9'"):
        _native.extension.set_cpu_isa('sse9')
    if 'avx512' not in _supported_isas():
        with pytest.raises(RuntimeError, match='does not support avx512'):
            _native.extension.set_cpu_isa('avx512')


@needs_extension
def test_result_does_not_depend_on_the_thread_count():
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            params = make_params(torch.float32, shapes=LARGE_SHAPES)
            opt = AdamSPD(params, lr=0.01, weight_decay=1.0, fused=True)
            for grads in gradient_stream(shapes=LARGE_SHAPES, steps=5,
                                         dtype=torch.float32):
                apply_grads(params, grads)
                opt.step()
            results.append([p.detach().clone() for p in params])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_missing_build_warns_once_and_names_why(monkeypatch):
    monkeypatch.setattr(_native, 'extension', None)
    monkeypatch.setattr(_native, 'LOAD_ERROR', 'ImportError: no such module')
    monkeypatch.setattr(_native, '_warned', False)
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamSPD([p], weight_decay=1.0)
    p.grad = torch.ones(3)
    with pytest.warns(RuntimeWarning, match='no such module'):
        opt.step()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        opt.step()  # no second warning


def _lists(n=5, numel=10):
    make = lambda: [torch.randn(numel) for _ in range(n)]  # noqa: E731
    return make(), make(), make(), make()


@needs_extension
@pytest.mark.parametrize('break_it,match', [
    (lambda l: l[1].__setitem__(2, torch.randn(11)), r'grads\[2\].*10'),
    (lambda l: l[2].__setitem__(0, torch.randn(10).double()),
     r'exp_avgs\[0\]'),
    (lambda l: l[0].__setitem__(1, torch.randn(10, 2).t()[0]),
     r'params\[1\].*contiguous'),
    (lambda l: l[3].pop(), 'one entry per parameter'),
])
def test_compiled_kernel_rejects_bad_lists_before_touching_any(break_it,
                                                               match):
    lists = _lists()
    break_it(lists)
    before = [[t.clone() for t in lst] for lst in lists]
    with pytest.raises(RuntimeError, match=match):
        _native.adam_spd_step(*lists, None, None, [1.0] * 5, beta1=0.9,
                              beta2=0.999, lr=0.1, eps=1e-8,
                              weight_decay=1.0)
    for lst, old in zip(lists, before):
        for t, o in zip(lst, old):
            assert torch.equal(t, o)


@needs_extension
def test_compiled_kernel_rejects_half_parameters():
    lists = [[torch.randn(4, dtype=torch.float16)] for _ in range(4)]
    with pytest.raises(RuntimeError, match='float32 or float64'):
        _native.adam_spd_step(*lists, None, None, [1.0], beta1=0.9,
                              beta2=0.999, lr=0.1, eps=1e-8,
                              weight_decay=1.0)


def test_empty_and_zero_dim_parameters_equal_the_loop(fused_impl):
    shapes = [(0, 3), (), (7, )]
    loop_params, fast_params, projected = _run_pair(
        shapes, 15, dict(lr=0.05, weight_decay=1.0))
    assert projected >= 3, projected
    for a, b in zip(loop_params, fast_params):
        assert a.shape == b.shape
        assert a.numel() == 0 or max_scaled_ulps(a, b) <= 8.0
