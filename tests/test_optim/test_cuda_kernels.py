"""AdamSPD / AdamL2SP on a CUDA device: both CUDA kernels (the foreach
default and mmspd's Triton kernel, ``fused=True``) against the float64
reference, without host synchronisation, under CUDA-graph capture and with
AMP. Marked ``cuda``; skipped without a CUDA device."""
import itertools

import pytest
import torch

from mmspd.optim import AdamL2SP, AdamSPD, _triton_kernels
from tests.optim_helpers import SHAPES, gradient_stream, make_params
from tests.reference import ReferenceAdamL2SP, ReferenceAdamSPD

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA'),
]

DEVICE = torch.device('cuda')
#: the kernels of a CUDA group: the default (torch's foreach ops) and the
#: opt-in Triton kernel
KERNELS = {'default': {}, 'triton': dict(fused=True)}
#: the last tensor spans four of the Triton kernel's chunks (16384
#: elements); float32 sums over far larger tensors drift from the float64
#: reference by more than a few ulps
LARGE_SHAPES = SHAPES + [(300, 200)]
FP32_ATOL = 2e-5  # a few float32 ulps of the parameters' scale
OPTIMIZERS = [(AdamSPD, ReferenceAdamSPD), (AdamL2SP, ReferenceAdamL2SP)]


@pytest.fixture(params=list(KERNELS))
def kernel(request):
    """Constructor keywords of one CUDA kernel; the Triton one is skipped,
    with the reason, where Triton cannot run."""
    if request.param == 'triton':
        reason = _triton_kernels.unavailable_reason(DEVICE)
        if reason is not None:
            pytest.skip(f'the Triton kernel cannot run here: {reason}')
    return KERNELS[request.param]


def _on_device(params):
    return [torch.nn.Parameter(p.detach().to(DEVICE)) for p in params]


def _give(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.to(p.device, p.dtype)


def _device_stream(steps, dtype=torch.float32, shapes=LARGE_SHAPES):
    return [[None if g is None else g.to(DEVICE, dtype) for g in grads]
            for grads in gradient_stream(shapes=shapes, steps=steps,
                                         dtype=dtype)]


@pytest.mark.parametrize('cls,reference', OPTIMIZERS)
@pytest.mark.parametrize('anchor,amsgrad',
                         list(itertools.product(('init', 'zero'),
                                                (False, True))))
def test_float32_steps_match_the_float64_reference(kernel, cls, reference,
                                                   anchor, amsgrad):
    host = make_params(torch.float32, shapes=LARGE_SHAPES)
    if anchor == 'zero':
        # near their (zero) anchors, so that Adam's steps grow |p - a| and
        # SPD projects within the steps run here
        with torch.no_grad():
            torch._foreach_mul_(host, 0.02)
    params = _on_device(host)
    ref = reference(host, lr=0.05, weight_decay=0.8, amsgrad=amsgrad,
                    zero_anchor=anchor == 'zero')
    opt = cls(params, lr=0.05, weight_decay=0.8, anchor=anchor,
              amsgrad=amsgrad, **kernel)
    for grads in gradient_stream(shapes=LARGE_SHAPES, steps=7):
        _give(params, grads)
        opt.step()
        ref.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach().cpu().double(), expected,
                                       rtol=0, atol=FP32_ATOL)
    if cls is AdamSPD:
        assert ref.fired > 0  # the projection ran, or this checks only Adam


@pytest.mark.parametrize('cls,reference', OPTIMIZERS)
def test_float64_default_steps_match_the_reference(cls, reference):
    host = make_params(torch.float64)
    params = _on_device(host)
    ref = reference(host, lr=0.05, weight_decay=0.8)
    opt = cls(params, lr=0.05, weight_decay=0.8)
    for grads in gradient_stream(steps=40):
        _give(params, grads)
        opt.step()
        ref.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach().cpu(), expected, rtol=0,
                                       atol=1e-12)


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP])
@pytest.mark.parametrize('capturable', [False, True])
def test_steps_never_synchronise_with_the_host(kernel, cls, capturable):
    params = _on_device(make_params(torch.float32, shapes=LARGE_SHAPES))
    opt = cls(params, lr=0.05, weight_decay=1.0, capturable=capturable,
              **kernel)
    stream = _device_stream(steps=4)
    _give(params, stream[0])
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
    assert all(bool(torch.isfinite(p).all()) for p in params)
    assert float(opt.state[params[0]]['step']) == 4  # all steps ran


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP])
def test_captured_step_replays_like_eager_steps(kernel, cls):
    """A capturable step with a 0-d tensor ``lr`` is captured once and
    replayed with new gradients and learning rates; the same steps run
    eagerly give the same parameters."""
    torch.manual_seed(0)
    start = [torch.randn(256, 128, device=DEVICE),
             torch.randn(128, device=DEVICE),
             torch.randn(3, 3, 8, 8, device=DEVICE)]
    stream = [[torch.randn_like(t) * 0.1 for t in start] for _ in range(8)]
    lrs = [1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 2e-3, 1e-3, 0.0]
    runs = []
    for _ in ('graphed', 'eager'):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        lr = torch.tensor(lrs[0], device=DEVICE)
        runs.append((params, lr, cls(params, lr=lr, weight_decay=1.0,
                                     capturable=True, **kernel)))
    (graphed, graphed_lr, graphed_opt), (eager, eager_lr, eager_opt) = runs
    static_grads = [torch.zeros_like(t) for t in start]
    for p, g in zip(graphed, static_grads):
        p.grad = g
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: creates state and anchors
        for k in range(3):
            for g, new in zip(static_grads, stream[k]):
                g.copy_(new)
            graphed_opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graphed_opt.step()
    for k in range(8):
        if k >= 3:
            graphed_lr.fill_(lrs[k])
            for g, new in zip(static_grads, stream[k]):
                g.copy_(new)
            graph.replay()
        eager_lr.fill_(lrs[k])
        for p, g in zip(eager, stream[k]):
            p.grad = g.clone()
        eager_opt.step()
        if k >= 3:
            for a, b in zip(graphed, eager):
                torch.testing.assert_close(a.detach(), b.detach(), rtol=0,
                                           atol=1e-6)
    moved = max(float((p - t).abs().max()) for p, t in zip(eager, start))
    assert moved > 1e-3  # the replays did step


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                               torch.nn.Linear(128, 10)).to(DEVICE)


def _batch():
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    return (torch.randn(32, 64, device=DEVICE, generator=gen),
            torch.randint(0, 10, (32, ), device=DEVICE, generator=gen))


def test_float16_grad_scaler_skips_an_inf_step_untouched(kernel):
    model = _mlp()
    opt = AdamSPD(model.parameters(), lr=1e-3, weight_decay=1.0, **kernel)
    scaler = torch.amp.GradScaler('cuda')
    x, y = _batch()

    def scaled_backward():
        opt.zero_grad()
        with torch.autocast('cuda', dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()

    for _ in range(3):
        scaled_backward()
        scaler.step(opt)
        scaler.update()

    def snapshot():
        return [t.detach().clone() for p in model.parameters()
                for t in [p] + [opt.state[p][key] for key in
                                ('step', 'exp_avg', 'exp_avg_sq', 'anchor')]]

    before = snapshot()
    assert float(opt.state[next(model.parameters())]['step']) == 3
    scaled_backward()
    next(model.parameters()).grad[0, 0] = float('inf')
    scale = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    for a, b in zip(before, snapshot()):
        assert torch.equal(a, b)
    assert scaler.get_scale() < scale


def test_bfloat16_autocast_trains(kernel):
    model = _mlp()
    opt = AdamSPD(model.parameters(), lr=1e-3, weight_decay=1.0, **kernel)
    x, y = _batch()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0], losses
