"""Parameters and gradient streams shared by the optimizer tests."""
import torch

# Shapes like a small network's: matrices, vectors, a 4-d conv kernel, a
# scalar-like tensor.
SHAPES = [(6, 5), (5, ), (3, 2, 2, 2), (1, )]


def make_params(dtype=torch.float64, seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype))
        for s in shapes
    ]


def gradient_stream(shapes=SHAPES, steps=30, seed=1, dtype=torch.float64):
    """Per step, a list of gradients (``None`` where a tensor gets none).

    Tensor 1 receives no gradient on every third step and tensor 3 none
    before step 5, so lazily-initialised and skipped parameters are covered.
    """
    g = torch.Generator().manual_seed(seed)
    stream = []
    for t in range(steps):
        grads = []
        for i, s in enumerate(shapes):
            grad = torch.randn(s, generator=g, dtype=dtype)
            if (i == 1 and t % 3 == 2) or (i == 3 and t < 5):
                grad = None
            grads.append(grad)
        stream.append(grads)
    return stream


def apply_grads(params, grads):
    for p, grad in zip(params, grads):
        p.grad = None if grad is None else grad.to(p.dtype).clone()




#: The three kernels of the optimizers, as constructor keywords.
KERNELS = {
    'loop': dict(foreach=False),
    'foreach': dict(fused=False),
    'fused': dict(fused=True),
}


def max_scaled_ulps(a, b):
    """Largest |a - b| in float32 ulps of the tensor's scale (max |a|)."""
    a, b = a.detach(), b.detach()
    scale = a.abs().max().clamp_min(1e-30)
    return float((a - b).abs().max() / (torch.finfo(a.dtype).eps * scale))


def step_beside_reference(opt, params, ref, steps=40, atol=1e-12):
    """Step ``opt`` (over ``params``) and a float64 reference optimizer on
    the same gradient stream; after every step each parameter must be
    within ``atol`` of the reference's. Returns the reference."""
    for grads in gradient_stream(steps=steps):
        apply_grads(params, grads)
        opt.step()
        ref.step(grads)
        for p, expected in zip(params, ref.params):
            torch.testing.assert_close(p.detach(), expected, rtol=0,
                                       atol=atol)
    return ref


def step_in_lockstep(runs, stream, after_each=None):
    """For every gradient list of ``stream``, give it to each ``(params,
    optimizer)`` of ``runs`` and step it; then call ``after_each()``."""
    for grads in stream:
        for params, optimizer in runs:
            apply_grads(params, grads)
            optimizer.step()
        if after_each is not None:
            after_each()
