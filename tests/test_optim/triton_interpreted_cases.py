"""The Triton kernel on CPU tensors, through Triton's interpreter.

Run by ``test_triton_interpreted.py`` in a process of its own that starts
with ``TRITON_INTERPRET=1``: Triton reads the variable when a ``@triton.jit``
function is decorated, its own library functions (``tl.zeros``, ...) at
``import triton``, so the variable must be set before Triton is imported at
all, which a process that already ran other tests cannot promise. (Directly:
``TRITON_INTERPRET=1 python -m pytest tests/test_optim/
triton_interpreted_cases.py``.) Blocks are 8 elements and chunks 16 here, so
that tensors span several chunks.

The interpreter is slow (a launch costs ~0.05 s here): runs are a few steps.
"""
import copy
import itertools

import pytest
import torch

from mmspd.optim import AdamL2SP, AdamSPD, adam_l2sp, adam_spd
from mmspd.optim import _triton_kernels, anchored_adam
from tests.optim_helpers import (SHAPES, apply_grads, gradient_stream,
                                 make_params, step_in_lockstep)
from tests.reference import ReferenceAdamL2SP, ReferenceAdamSPD

pytest.importorskip('triton')
if not _triton_kernels.interpreted():
    pytest.skip('needs TRITON_INTERPRET=1 from the start of the process '
                '(test_triton_interpreted.py runs this module so)',
                allow_module_level=True)


@pytest.fixture(scope='module', autouse=True)
def small_chunks():
    saved = (_triton_kernels.BLOCK_SIZE, _triton_kernels.BLOCKS_PER_CHUNK)
    _triton_kernels.BLOCK_SIZE, _triton_kernels.BLOCKS_PER_CHUNK = 8, 2
    yield
    _triton_kernels.BLOCK_SIZE, _triton_kernels.BLOCKS_PER_CHUNK = saved


@pytest.fixture
def on_triton(monkeypatch):
    """Make the optimizers step CPU groups on the Triton kernel (where a
    group would take the fused or foreach kernel), as CUDA groups do."""
    chosen = []
    real = anchored_adam.select_kernel

    def select(group, params):
        kernel = real(group, params)
        kernel = 'triton' if kernel in ('fused', 'foreach') else kernel
        chosen.append(kernel)
        return kernel

    monkeypatch.setattr(anchored_adam, 'select_kernel', select)
    return chosen


FP32_ATOL = 2e-5  # a few float32 ulps of the parameters' scale (~3)


@pytest.mark.parametrize('anchor,amsgrad',
                         list(itertools.product(('init', 'zero'),
                                                (False, True))))
def test_adam_spd_matches_float64_reference(on_triton, anchor, amsgrad):
    params = make_params(torch.float32)
    if anchor == 'zero':
        # near their (zero) anchors, so that Adam's steps grow |p - a| and
        # SPD projects within the few steps run here
        with torch.no_grad():
            torch._foreach_mul_(params, 0.02)
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=0.8,
                           amsgrad=amsgrad, zero_anchor=anchor == 'zero')
    opt = AdamSPD(params, lr=0.05, weight_decay=0.8, anchor=anchor,
                  amsgrad=amsgrad)
    for grads in gradient_stream(steps=7):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach().double(), expected,
                                       rtol=0, atol=FP32_ATOL)
    assert set(on_triton) == {'triton'}
    # the projection fired, or this checks only Adam
    assert ref.fired >= 5, ref.fired
    stats = opt.projection_statistics()  # of the last step
    assert stats['tensors'] == sum(g is not None for g in grads)


@pytest.mark.parametrize('anchor,amsgrad',
                         list(itertools.product(('init', 'zero'),
                                                (False, True))))
def test_adam_l2sp_matches_float64_reference(on_triton, anchor, amsgrad):
    params = make_params(torch.float32)
    ref = ReferenceAdamL2SP(params, lr=0.05, weight_decay=0.5,
                            amsgrad=amsgrad, zero_anchor=anchor == 'zero')
    plain = ReferenceAdamL2SP(params, lr=0.05, amsgrad=amsgrad)
    opt = AdamL2SP(params, lr=0.05, weight_decay=0.5, anchor=anchor,
                   amsgrad=amsgrad)
    for grads in gradient_stream(steps=6):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
        plain.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach().double(), expected,
                                       rtol=0, atol=FP32_ATOL)
    assert set(on_triton) == {'triton'}
    gap = max(float((a - b).abs().max())
              for a, b in zip(ref.params, plain.params))
    assert gap > 1e-3, gap  # the pull changed the result


@pytest.mark.parametrize('cls,reference', [(AdamSPD, ReferenceAdamSPD),
                                           (AdamL2SP, ReferenceAdamL2SP)])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_parameters_step_in_float32(on_triton, cls,
                                                   reference, dtype):
    params = make_params(dtype)
    # float16 stores (1 - beta2) g^2 >= 6e-8 only: with eps = 1e-8 a
    # rounded-away v would make m / (sqrt(v) + eps) explode (torch's Adam
    # shares this limit; see AnchoredAdam)
    eps = 1e-2 if dtype == torch.float16 else 1e-8
    ref = reference(params, lr=0.05, weight_decay=0.8, eps=eps)
    opt = cls(params, lr=0.05, weight_decay=0.8, eps=eps)
    for grads in gradient_stream(steps=5):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
    # float32 arithmetic, storage rounded to the dtype (moments too): a
    # few of the dtype's ulps of the parameters' scale (~3), far below the
    # step (lr) a wrong update would be off by
    atol = 8 * torch.finfo(dtype).eps * 3
    for p, expected in zip(params, ref.params):
        assert p.dtype == dtype
        if opt.state[p]:  # tensor 3 gets its first gradient at step 5
            assert opt.state[p]['exp_avg'].dtype == dtype
        torch.testing.assert_close(p.detach().double(), expected, rtol=0,
                                   atol=atol)
    if cls is AdamSPD:
        assert ref.fired >= 3, ref.fired


def test_bfloat16_anchors_of_float32_parameters(on_triton):
    params = make_params(torch.float32)
    ref = ReferenceAdamSPD(params, lr=0.05, weight_decay=0.8,
                           anchor_dtype=torch.bfloat16)
    opt = AdamSPD(params, lr=0.05, weight_decay=0.8, anchor_dtype='bfloat16')
    for grads in gradient_stream(steps=6):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach().double(), expected,
                                       rtol=0, atol=FP32_ATOL)
    assert all(opt.state[p]['anchor'].dtype == torch.bfloat16
               for p in params)
    assert ref.fired >= 3, ref.fired


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP])
def test_counter_tensors_and_a_tensor_lr_equal_host_numbers(on_triton, cls):
    # capturable: counters are tensors (on the parameters' device) and the
    # bias corrections are computed there; a 0-d lr tensor is read there
    runs = []
    for kwargs in (dict(lr=0.05), dict(lr=0.05, capturable=True),
                   dict(lr=torch.tensor(0.05), capturable=True)):
        params = make_params(torch.float32)
        runs.append((params, cls(params, weight_decay=0.8, amsgrad=True,
                                 **kwargs)))
    step_in_lockstep(runs, gradient_stream(steps=4))
    (host, _), *others = runs
    for params, opt in others:
        for a, b in zip(host, params):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert all(isinstance(opt.state[p]['step'], torch.Tensor)
                   for p in params if opt.state[p])
    assert set(on_triton) == {'triton'}


def _lists(dtype=torch.float32, shapes=SHAPES + [(0, ), ()], seed=0,
           amsgrad=True, anchors=True):
    g = torch.Generator().manual_seed(seed)

    def rand(shape):
        return torch.randn(shape, generator=g).to(dtype)

    params = [rand(s) for s in shapes]
    return dict(
        params=params, grads=[rand(s) for s in shapes],
        exp_avgs=[rand(s) * 0.1 for s in shapes],
        exp_avg_sqs=[rand(s).abs() * 0.1 for s in shapes],
        max_exp_avg_sqs=[rand(s).abs() * 0.2 for s in shapes]
        if amsgrad else None,
        anchors=[p + 0.3 * rand(p.shape) for p in params]
        if anchors else None,
        steps=[3.0, 4.0, 1.0, 7.0, 3.0, 2.0][:len(shapes)])


def _clone(lists):
    return {k: [t.clone() if isinstance(t, torch.Tensor) else t for t in v]
            if v is not None else None for k, v in lists.items()}


HYPER = dict(beta1=0.9, beta2=0.999, lr=0.05, eps=1e-8)


@pytest.mark.parametrize('anchors', [True, False])
def test_propose_sums_span_chunks_and_repeat_bit_for_bit(anchors):
    lists = _lists(anchors=anchors)
    assert max(p.numel() for p in lists['params']) > 16  # several chunks
    before = _clone(lists)
    runs = [_clone(lists), _clone(lists)]
    sums = [_triton_kernels.propose(*run.values(), amsgrad=True, **HYPER)
            for run in runs]
    assert sums[0].shape == (len(lists['params']), 3)
    assert sums[0].dtype == torch.float32
    assert torch.equal(sums[0], sums[1])  # a fixed order of summation
    for a, b in zip(runs[0]['params'], runs[1]['params']):
        assert torch.equal(a, b)
    # the proposal is Adam's (the loop kernel with lambda = 0) ...
    adam = _clone(lists)
    adam_spd(*adam.values(), kernel='loop', amsgrad=True, weight_decay=0.0,
             **HYPER)
    for key in ('params', 'exp_avgs', 'exp_avg_sqs', 'max_exp_avg_sqs'):
        for a, b in zip(runs[0][key], adam[key]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # ... and the sums are those of float64 arithmetic on the same tensors
    zero = [torch.zeros_like(p) for p in before['params']]
    for i, (p, q, g, a) in enumerate(zip(before['params'], adam['params'],
                                         before['grads'],
                                         before['anchors'] or zero)):
        p, q, g, a = (t.double() for t in (p, q, g, a))
        expected = torch.stack([(g * (p - a)).sum(), ((p - a)**2).sum(),
                                ((q - a)**2).sum()]).float()
        torch.testing.assert_close(sums[0][i], expected, rtol=1e-6,
                                   atol=1e-6)


def test_project_leaves_tensors_whose_keep_is_one_unread():
    lists = _lists()
    params, anchors = lists['params'], lists['anchors']
    before = [p.clone() for p in params]
    anchors[0] = torch.full_like(anchors[0], float('nan'))  # must not be read
    keeps = torch.tensor([1.0, 0.25, 1.0, 0.5, 1.0, 0.0])
    _triton_kernels.project(params, anchors, keeps)
    assert torch.equal(params[0], before[0])
    assert torch.equal(params[2], before[2])
    for i in (1, 3, 5):
        expected = anchors[i] + keeps[i] * (before[i] - anchors[i])
        torch.testing.assert_close(params[i], expected)


def test_spd_step_equals_the_loop_and_sends_what_it_cannot_serve_to_foreach():
    # float64 tensors and non-contiguous ones take the foreach kernel
    lists = _lists()
    # a drift away from the anchors that the gradient opposes: g.(p - a) > 0
    # and the momentum still grows |q - a|, so every tensor is projected
    for i, (p, a) in enumerate(zip(lists['params'], lists['anchors'])):
        lists['grads'][i] = 0.1 * (p - a)
        lists['exp_avgs'][i] = -(p - a)
    lists['params'][0] = lists['params'][0].t().contiguous().t()
    for key in ('grads', 'exp_avgs', 'exp_avg_sqs', 'max_exp_avg_sqs',
                'anchors'):
        lists[key][0] = lists[key][0].t().contiguous().t()
    assert not lists['params'][0].is_contiguous()
    for key in lists:
        if key != 'steps':
            lists[key][3] = lists[key][3].double()
    loop, fast = _clone(lists), _clone(lists)
    ratios_loop, ratios_fast = [], []
    kwargs = dict(amsgrad=True, weight_decay=1.0, **HYPER)
    adam_spd(*loop.values(), kernel='loop', ratios_out=ratios_loop, **kwargs)
    adam_spd(*fast.values(), kernel='triton', ratios_out=ratios_fast,
             **kwargs)
    for a, b in zip(loop['params'], fast['params']):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert int((torch.cat(ratios_fast) > 0).sum()) >= 4  # projected
    # ratios: (|q - a| - |p - a|) / |q - a| of nearly equal norms
    torch.testing.assert_close(torch.cat(ratios_loop).sort().values,
                               torch.cat(ratios_fast).sort().values,
                               rtol=0, atol=1e-5)


def test_l2sp_step_equals_the_loop_with_zero_anchors():
    lists = _lists(anchors=False, amsgrad=False)
    loop, fast = _clone(lists), _clone(lists)
    kwargs = dict(amsgrad=False, weight_decay=0.5, **HYPER)
    adam_l2sp(*loop.values(), kernel='loop', **kwargs)
    adam_l2sp(*fast.values(), kernel='triton', **kwargs)
    for a, b in zip(loop['params'], fast['params']):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_lists_the_programs_cannot_index_are_named():
    lists = _lists()
    lists['grads'][1] = lists['grads'][1].double()
    with pytest.raises(ValueError, match=r'grads\[1\] is a cpu '
                       r'torch.float64 tensor of 5 elements; expected a '
                       r'contiguous cpu torch.float32'):
        _triton_kernels.propose(*lists.values(), amsgrad=True, **HYPER)
    lists = _lists(dtype=torch.float64)
    with pytest.raises(ValueError, match='not torch.float64'):
        _triton_kernels.propose(*lists.values(), amsgrad=True, **HYPER)
    lists = _lists(amsgrad=False)
    with pytest.raises(ValueError, match='amsgrad=True needs '
                       'max_exp_avg_sqs'):
        _triton_kernels.propose(*lists.values(), amsgrad=True, **HYPER)
    lists = _lists()
    with pytest.raises(ValueError, match=r'keeps has shape \(2,\)'):
        _triton_kernels.project(lists['params'], lists['anchors'],
                                torch.ones(2))


def test_state_dict_of_a_triton_run_resumes_on_another_kernel(on_triton):
    params = make_params(torch.float32)
    opt = AdamSPD(params, lr=0.05, weight_decay=0.8, amsgrad=True)
    stream = gradient_stream(steps=5)
    step_in_lockstep([(params, opt)], stream[:3])
    saved = copy.deepcopy(opt.state_dict())
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = AdamSPD(copies, lr=0.05, weight_decay=0.8, amsgrad=True,
                      foreach=False)
    resumed.load_state_dict(saved)
    step_in_lockstep([(params, opt), (copies, resumed)], stream[3:])
    for a, b in zip(params, copies):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_two_pass_step_on_halves_equals_the_loop_on_whole_tensors():
    """A sharded step in one process: each tensor split in two halves (as
    two shards), the halves' sums added pairwise by ``reduce_sums`` as the
    all-reduce would; float64 and non-contiguous halves take foreach."""
    from tests.test_optim.test_sharded_step import (halves_of,
                                                    pairwise_reduce)
    whole = _lists(shapes=[(12, 3), (9, ), (4, 2)])
    whole['steps'] = [3.0, 2.0, 5.0]
    for i, (p, a) in enumerate(zip(whole['params'], whole['anchors'])):
        whole['grads'][i] = 0.1 * (p - a)  # projected
        whole['exp_avgs'][i] = -(p - a)
    halves = halves_of(whole)
    for key in halves:  # one float64 pair of halves: the foreach form
        if key != 'steps':
            halves[key][2] = halves[key][2].double()
            halves[key][3] = halves[key][3].double()
    kwargs = dict(amsgrad=True, weight_decay=1.0, **HYPER)
    ratios = []
    adam_spd(*halves.values(), kernel='triton', reduce_sums=pairwise_reduce,
             ratios_out=ratios, **kwargs)
    adam_spd(*whole.values(), kernel='loop', **kwargs)
    for i, p in enumerate(whole['params']):
        joined = torch.cat([halves['params'][2 * i].float(),
                            halves['params'][2 * i + 1].float()])
        torch.testing.assert_close(joined, p, rtol=0, atol=1e-6)
    assert int((torch.cat(ratios) > 0).sum()) >= 4
