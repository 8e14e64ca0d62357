"""The Triton kernel where it does not run, and on CUDA where it does.

Its arithmetic is tested on CPU tensors through Triton's interpreter
(``test_triton_interpreted.py``); the CUDA tests here skip without a GPU.
"""
import os

import pytest
import torch

from mmspd.optim import AdamL2SP, AdamSPD, _triton_kernels, adam_spd
from mmspd.optim._dispatch import select_kernel
from tests.optim_helpers import (SHAPES, gradient_stream, make_params,
                                 step_in_lockstep)

needs_cuda = pytest.mark.cuda  # skipped without a GPU (conftest.py)


def _one_tensor_lists(device='cpu'):
    p = torch.zeros(3, device=device)
    return ([p], [torch.ones(3, device=device)], [torch.zeros_like(p)],
            [torch.zeros_like(p)], None, [p.clone()], [1.0])


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                    reason='checks the error of a compiling (not '
                    'interpreting) process')
def test_triton_on_cpu_tensors_is_a_clear_error():
    with pytest.raises(RuntimeError) as info:
        adam_spd(*_one_tensor_lists(), kernel='triton', amsgrad=False,
                 beta1=0.9, beta2=0.999, lr=0.1, weight_decay=1.0, eps=1e-8)
    message = str(info.value)
    assert "kernel='triton' cannot step cpu tensors" in message
    assert 'TRITON_INTERPRET=1' in message or 'Triton cannot be imported' \
        in message
    assert 'foreach' in message


def test_meta_tensors_are_not_served():
    reason = _triton_kernels.unavailable_reason(torch.device('meta'))
    assert reason is not None and ('meta' in reason or 'Triton' in reason)


def test_cpu_groups_keep_their_kernels():
    params = make_params(torch.float32)
    base = dict(foreach=None, fused=None, capturable=False)
    assert select_kernel(base, params) == 'fused'
    assert select_kernel(dict(base, capturable=True), params) == 'foreach'
    assert select_kernel(dict(base, fused=False), params) == 'foreach'
    assert select_kernel(dict(base, foreach=False), params) == 'loop'


class _OnCuda:
    """Stands for a CUDA parameter in the kernel policy, which reads only
    ``device`` and ``dtype`` (so the policy is checked without a GPU)."""
    device = torch.device('cuda', 0)
    dtype = torch.float32


@pytest.mark.parametrize('capturable', [False, True])
def test_cuda_groups_default_to_foreach_and_opt_in_to_triton(capturable):
    """On CUDA the default is torch's foreach ops; the Triton kernel, not
    yet run on a GPU, is taken only with fused=True."""
    params = [_OnCuda(), _OnCuda()]
    group = dict(foreach=None, fused=None, capturable=capturable)
    assert select_kernel(group, params) == 'foreach'
    assert select_kernel(dict(group, fused=False), params) == 'foreach'
    assert select_kernel(dict(group, foreach=False), params) == 'loop'
    if _triton_kernels.available(torch.device('cuda')):
        assert select_kernel(dict(group, fused=True), params) == 'triton'
    else:
        with pytest.raises(RuntimeError, match='Triton kernel.*fused=None'):
            select_kernel(dict(group, fused=True), params)


@needs_cuda
@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('anchor', ['init', 'zero'])
def test_cuda_triton_steps_match_the_loop(cls, dtype, anchor):
    if not _triton_kernels.available(torch.device('cuda')):
        pytest.skip(_triton_kernels.unavailable_reason(torch.device('cuda')))
    runs = []
    for kernel in (dict(foreach=False), dict(fused=True)):
        params = [torch.nn.Parameter(p.detach().to('cuda', dtype))
                  for p in make_params(torch.float32)]
        runs.append((params, cls(params, lr=0.05, weight_decay=0.8,
                                 amsgrad=True, anchor=anchor, **kernel)))
    stream = [[None if g is None else g.cuda() for g in grads]
              for grads in gradient_stream(steps=20, dtype=torch.float32)]
    step_in_lockstep(runs, stream)
    tol = 1e-5 if dtype == torch.float32 else 4e-2
    for a, b in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=tol)


@needs_cuda
def test_cuda_triton_sums_repeat_bit_for_bit():
    if not _triton_kernels.available(torch.device('cuda')):
        pytest.skip(_triton_kernels.unavailable_reason(torch.device('cuda')))
    g = torch.Generator(device='cuda').manual_seed(0)
    shapes = SHAPES + [(3000, 700)]  # several chunks of the default size

    def lists():
        def rand(s):
            return torch.randn(s, generator=g, device='cuda')
        params = [rand(s) for s in shapes]
        return (params, [rand(s) for s in shapes],
                [rand(s) * 0.1 for s in shapes],
                [rand(s).abs() for s in shapes], None,
                [p + rand(p.shape) for p in params], [3.0] * len(shapes))

    first = lists()
    second = tuple([t.clone() for t in x] if isinstance(x, list) and
                   isinstance(x[0], torch.Tensor) else x for x in first)
    sums = [_triton_kernels.propose(*run, beta1=0.9, beta2=0.999, lr=1e-3,
                                    eps=1e-8, amsgrad=False)
            for run in (first, second)]
    assert torch.equal(sums[0], sums[1])


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                    reason='compiles, does not interpret')
@pytest.mark.parametrize('dtype,anchor_dtype,per_vector', [
    ('float32', 'float32', 4),    # 4 floats in 16 bytes
    ('bfloat16', 'bfloat16', 8),
])
def test_programs_compile_for_hopper_with_vector_loads(dtype, anchor_dtype,
                                                       per_vector):
    # No GPU needed: Triton compiles for a named target (PTX, then ptxas).
    # Whole blocks of aligned tensors must move in 16-byte vectors (the
    # kernel is memory-bound): one ld.global.v4 per 16 bytes of each of the
    # tensors read (p, g, m, v, max v, anchor), one st per tensor written.
    triton = pytest.importorskip('triton')
    import inspect

    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    jit = _triton_kernels.jit_module()
    target = GPUTarget('cuda', 90, 32)
    block, warps = 1024, 4
    vectors = block // (32 * warps) // per_vector  # per thread and tensor

    def ptx(kernel, signature, constexprs):
        names = list(inspect.signature(kernel.fn).parameters)
        signature = dict(signature, **{k: 'constexpr' for k in constexprs})
        source = ASTSource(fn=kernel, signature=signature, constexprs={
            (names.index(k), ): v for k, v in constexprs.items()})
        return triton.compile(source, target=target, options=dict(
            num_warps=warps)).asm['ptx']

    tables = {name: '*i64' for name in ('pointers', 'chunk_tensor',
                                        'chunk_start', 'numels')}
    adam = ptx(jit.adam_chunk_kernel, dict(
        tables, scalars='*fp32', partials='*fp32', n_tensors='i32',
        **{k: 'fp32' for k in ('step_size', 'bias2_sqrt', 'weight1',
                               'beta2', 'weight2', 'eps', 'pull')}),
        dict(P_DTYPE=getattr(tl, dtype), A_DTYPE=getattr(tl, anchor_dtype),
             HAS_ANCHOR=True, AMSGRAD=True, PER_TENSOR_SCALARS=False,
             PULL=False, SUMS=True, ALIGNED=True, BLOCK=block,
             BLOCKS_PER_CHUNK=16))
    assert adam.count('ld.global.v4') == 6 * vectors
    assert adam.count('st.global.v4') == 4 * vectors  # p, m, v, max v
    project = ptx(jit.project_chunk_kernel,
                  dict(tables, keeps='*fp32', n_tensors='i32'),
                  dict(P_DTYPE=getattr(tl, dtype),
                       A_DTYPE=getattr(tl, anchor_dtype), HAS_ANCHOR=True,
                       ALIGNED=True, BLOCK=block, BLOCKS_PER_CHUNK=16))
    assert project.count('ld.global.v4') == 2 * vectors
    ptx(jit.sum_partials_kernel,
        dict(partials='*fp32', first_chunk='*i64', sums='*fp32'),
        dict(RBLOCK=_triton_kernels.REDUCE_BLOCK, N_RBLOCKS=2))
