"""The Triton programs behind :mod:`mmspd.optim._triton_kernels`.

Importing this module imports Triton and compiles nothing: the programs are
built per signature at their first launch. Whether they run compiled (CUDA)
or in Triton's interpreter (CPU tensors, ``TRITON_INTERPRET=1``) is decided
by Triton when this module is imported, so it is imported lazily, by
:func:`mmspd.optim._triton_kernels.jit_module` only.

Every program walks a *chunk table*: chunk ``c`` covers elements
``[start[c], start[c] + CHUNK)`` (clipped to the tensor) of tensor
``tensor[c]``, whose addresses are read from an int64 *pointer table* (one
row per role: parameter, gradient, first moment, second moment, running
maximum of the second moment, anchor). Arithmetic is float32 whatever the
storage dtype.
"""
import triton
import triton.language as tl

#: rows of the pointer table
PARAM, GRAD, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ, ANCHOR = range(6)


@triton.jit
def _address(pointers, row, index, n_tensors, dtype: tl.constexpr,
             ALIGNED: tl.constexpr):
    """The address of role ``row`` of tensor ``index``, typed ``dtype``
    (``ALIGNED``: the host checked that it is a multiple of 16 bytes)."""
    address = tl.load(pointers + row * n_tensors + index)
    pointer = address.to(tl.pointer_type(dtype), bitcast=True)
    if ALIGNED:
        pointer = tl.multiple_of(pointer, 16)
    return pointer


@triton.jit
def _load(pointer, mask, MASKED: tl.constexpr):
    """A float32 vector from ``pointer`` (masked: zero outside ``mask``)."""
    if MASKED:
        return tl.load(pointer, mask=mask, other=0.0).to(tl.float32)
    else:
        return tl.load(pointer).to(tl.float32)


@triton.jit
def _store(pointer, value, mask, MASKED: tl.constexpr):
    if MASKED:
        tl.store(pointer, value, mask=mask)
    else:
        tl.store(pointer, value)


@triton.jit
def _adam_block(p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, a_ptr, offsets, numel,
                step_size, bias2_sqrt, weight1, beta2, weight2, eps, pull,
                dot, dev2, prop2, P_DTYPE: tl.constexpr,
                HAS_ANCHOR: tl.constexpr, AMSGRAD: tl.constexpr,
                PULL: tl.constexpr, SUMS: tl.constexpr,
                MASKED: tl.constexpr):
    """One block of :func:`adam_chunk_kernel`; returns the updated sums.
    ``MASKED`` for a block that may end past the tensor."""
    mask = offsets < numel
    p = _load(p_ptr + offsets, mask, MASKED)
    g = _load(g_ptr + offsets, mask, MASKED)
    m = _load(m_ptr + offsets, mask, MASKED)
    v = _load(v_ptr + offsets, mask, MASKED)
    if HAS_ANCHOR:
        a = _load(a_ptr + offsets, mask, MASKED)
        deviation = p - a
    else:
        a = p  # unused
        deviation = p
    if PULL:
        g = g + pull * deviation
    # torch's lerp(m, g, weight1), as it rounds on either side of 0.5
    if weight1 < 0.5:
        m = m + weight1 * (g - m)
    else:
        m = g - (g - m) * (1.0 - weight1)
    v = v * beta2 + weight2 * g * g
    _store(m_ptr + offsets, m.to(P_DTYPE), mask, MASKED)
    _store(v_ptr + offsets, v.to(P_DTYPE), mask, MASKED)
    # what is stored is what Adam goes on with (as torch's Adam does)
    m = m.to(P_DTYPE).to(tl.float32)
    second = v.to(P_DTYPE).to(tl.float32)
    if AMSGRAD:
        second = tl.maximum(_load(vmax_ptr + offsets, mask, MASKED), second)
        _store(vmax_ptr + offsets, second.to(P_DTYPE), mask, MASKED)
    denom = tl.sqrt(second) / bias2_sqrt + eps
    q = (p - step_size * (m / denom)).to(P_DTYPE)
    _store(p_ptr + offsets, q, mask, MASKED)
    if SUMS:
        dot += g * deviation
        dev2 += deviation * deviation
        if HAS_ANCHOR:
            proposal = q.to(tl.float32) - a
        else:
            proposal = q.to(tl.float32)
        prop2 += proposal * proposal
    return dot, dev2, prop2


@triton.jit
def adam_chunk_kernel(
        pointers, chunk_tensor, chunk_start, numels, scalars, partials,
        n_tensors, step_size, bias2_sqrt, weight1, beta2, weight2, eps, pull,
        P_DTYPE: tl.constexpr, A_DTYPE: tl.constexpr,
        HAS_ANCHOR: tl.constexpr, AMSGRAD: tl.constexpr,
        PER_TENSOR_SCALARS: tl.constexpr, PULL: tl.constexpr,
        SUMS: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
        BLOCKS_PER_CHUNK: tl.constexpr):
    """One chunk of Adam's step, optionally with L2-SP's pull and SPD's sums.

    ``g' = g + pull * (p - a)`` when ``PULL``; Adam's moments on ``g'``
    (``weight1 = 1 - beta1``, ``weight2 = 1 - beta2``, rounded once on the
    host); ``q = p - step_size * m / (sqrt(v) / bias2_sqrt + eps)`` stored
    into ``p``. ``step_size`` and ``bias2_sqrt`` are the scalar arguments,
    or per tensor ``scalars[t, 0]`` and ``scalars[t, 1]`` when
    ``PER_TENSOR_SCALARS``. With ``SUMS`` the chunk's ``g.(p - a)``,
    ``|p - a|^2`` and ``|q - a|^2`` (``q`` as stored) go to
    ``partials[c, 0:3]``, each summed over the chunk in a fixed order.
    ``ALIGNED``: every address is a multiple of 16 bytes (the host checked),
    so whole blocks load and store in vectors, without masks.
    """
    chunk = tl.program_id(0)
    t = tl.load(chunk_tensor + chunk)
    start = tl.load(chunk_start + chunk)
    numel = tl.load(numels + t)
    p_ptr = _address(pointers, 0, t, n_tensors, P_DTYPE,
                             ALIGNED)
    g_ptr = _address(pointers, 1, t, n_tensors, P_DTYPE,
                             ALIGNED)
    m_ptr = _address(pointers, 2, t, n_tensors, P_DTYPE,
                             ALIGNED)
    v_ptr = _address(pointers, 3, t, n_tensors, P_DTYPE,
                             ALIGNED)
    vmax_ptr = p_ptr  # unused without amsgrad
    if AMSGRAD:
        vmax_ptr = _address(pointers, 4, t, n_tensors, P_DTYPE,
                             ALIGNED)
    a_ptr = p_ptr  # unused without anchors
    if HAS_ANCHOR:
        a_ptr = _address(pointers, 5, t, n_tensors, A_DTYPE,
                             ALIGNED)
    if ALIGNED:
        start = tl.multiple_of(start, BLOCK)
    if PER_TENSOR_SCALARS:
        step_size = tl.load(scalars + 2 * t)
        bias2_sqrt = tl.load(scalars + 2 * t + 1)
    dot = tl.zeros([BLOCK], dtype=tl.float32)
    dev2 = tl.zeros([BLOCK], dtype=tl.float32)
    prop2 = tl.zeros([BLOCK], dtype=tl.float32)
    n_blocks = tl.minimum(tl.cdiv(numel - start, BLOCK), BLOCKS_PER_CHUNK)
    n_whole = tl.minimum((numel - start) // BLOCK, BLOCKS_PER_CHUNK)
    # a constant trip count (Triton 3.6's interpreter takes no loaded or
    # argument values as loop bounds), whole blocks only
    for b in range(0, BLOCKS_PER_CHUNK):
        if b < n_whole:
            offsets = start + b * BLOCK + tl.arange(0, BLOCK)
            dot, dev2, prop2 = _adam_block(
                p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, a_ptr, offsets, numel,
                step_size, bias2_sqrt, weight1, beta2, weight2, eps, pull,
                dot, dev2, prop2, P_DTYPE, HAS_ANCHOR, AMSGRAD, PULL, SUMS,
                False)
    if n_blocks > n_whole:  # the tensor's last, partial block
        offsets = start + n_whole * BLOCK + tl.arange(0, BLOCK)
        dot, dev2, prop2 = _adam_block(
            p_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, a_ptr, offsets, numel,
            step_size, bias2_sqrt, weight1, beta2, weight2, eps, pull, dot,
            dev2, prop2, P_DTYPE, HAS_ANCHOR, AMSGRAD, PULL, SUMS, True)
    if SUMS:
        tl.store(partials + 3 * chunk, tl.sum(dot, axis=0))
        tl.store(partials + 3 * chunk + 1, tl.sum(dev2, axis=0))
        tl.store(partials + 3 * chunk + 2, tl.sum(prop2, axis=0))


@triton.jit
def sum_partials_kernel(partials, first_chunk, sums, RBLOCK: tl.constexpr,
                        N_RBLOCKS: tl.constexpr):
    """``sums[t] = sum of partials[first_chunk[t]:first_chunk[t + 1]]``
    (three columns), in float64 and in a fixed order. A tensor has at most
    ``RBLOCK * N_RBLOCKS`` chunks (the host sizes both)."""
    t = tl.program_id(0)
    begin = tl.load(first_chunk + t)
    end = tl.load(first_chunk + t + 1)
    acc0 = tl.zeros([RBLOCK], dtype=tl.float64)
    acc1 = tl.zeros([RBLOCK], dtype=tl.float64)
    acc2 = tl.zeros([RBLOCK], dtype=tl.float64)
    for i in range(0, N_RBLOCKS):  # constant bounds: see adam_chunk_kernel
        rows = begin + i * RBLOCK + tl.arange(0, RBLOCK)
        mask = rows < end
        acc0 += tl.load(partials + 3 * rows, mask=mask,
                        other=0.0).to(tl.float64)
        acc1 += tl.load(partials + 3 * rows + 1, mask=mask,
                        other=0.0).to(tl.float64)
        acc2 += tl.load(partials + 3 * rows + 2, mask=mask,
                        other=0.0).to(tl.float64)
    tl.store(sums + 3 * t, tl.sum(acc0, axis=0).to(tl.float32))
    tl.store(sums + 3 * t + 1, tl.sum(acc1, axis=0).to(tl.float32))
    tl.store(sums + 3 * t + 2, tl.sum(acc2, axis=0).to(tl.float32))


@triton.jit
def _project_block(p_ptr, a_ptr, offsets, numel, keep,
                   P_DTYPE: tl.constexpr, HAS_ANCHOR: tl.constexpr,
                   MASKED: tl.constexpr):
    mask = offsets < numel
    p = _load(p_ptr + offsets, mask, MASKED)
    if HAS_ANCHOR:
        a = _load(a_ptr + offsets, mask, MASKED)
        p = a + keep * (p - a)
    else:
        p = keep * p
    _store(p_ptr + offsets, p.to(P_DTYPE), mask, MASKED)


@triton.jit
def project_chunk_kernel(pointers, chunk_tensor, chunk_start, numels, keeps,
                         n_tensors, P_DTYPE: tl.constexpr,
                         A_DTYPE: tl.constexpr, HAS_ANCHOR: tl.constexpr,
                         ALIGNED: tl.constexpr, BLOCK: tl.constexpr,
                         BLOCKS_PER_CHUNK: tl.constexpr):
    """``p = a + keep[t] * (p - a)`` over one chunk; nothing is read or
    written beyond ``keep`` where ``keep == 1``."""
    chunk = tl.program_id(0)
    t = tl.load(chunk_tensor + chunk)
    keep = tl.load(keeps + t).to(tl.float32)
    if keep != 1.0:
        start = tl.load(chunk_start + chunk)
        numel = tl.load(numels + t)
        p_ptr = _address(pointers, 0, t, n_tensors, P_DTYPE,
                             ALIGNED)
        a_ptr = p_ptr  # unused without anchors
        if HAS_ANCHOR:
            a_ptr = _address(pointers, 5, t, n_tensors, A_DTYPE,
                             ALIGNED)
        if ALIGNED:
            start = tl.multiple_of(start, BLOCK)
        n_blocks = tl.minimum(tl.cdiv(numel - start, BLOCK),
                              BLOCKS_PER_CHUNK)
        n_whole = tl.minimum((numel - start) // BLOCK, BLOCKS_PER_CHUNK)
        for b in range(0, BLOCKS_PER_CHUNK):  # see adam_chunk_kernel
            if b < n_whole:
                offsets = start + b * BLOCK + tl.arange(0, BLOCK)
                _project_block(p_ptr, a_ptr, offsets, numel, keep, P_DTYPE,
                               HAS_ANCHOR, False)
        if n_blocks > n_whole:
            offsets = start + n_whole * BLOCK + tl.arange(0, BLOCK)
            _project_block(p_ptr, a_ptr, offsets, numel, keep, P_DTYPE,
                           HAS_ANCHOR, True)
