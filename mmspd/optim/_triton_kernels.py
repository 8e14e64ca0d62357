"""Multi-tensor Triton kernels for AdamSPD and AdamL2SP (CUDA).

One launch steps every tensor of a same-device, same-dtype list: a table of
the tensors' addresses and a table of fixed-size chunks (``(tensor, start)``
per program) replace a launch per tensor. The programs themselves are in
:mod:`mmspd.optim._triton_jit`; this module builds and caches the tables,
computes the bias corrections and launches. Importing it needs neither
Triton nor CUDA: Triton is imported at the first launch.

The phases (``propose`` then ``project``) are separate functions so that a
sharded step can all-reduce the partial sums between them:

* :func:`propose`: Adam's moments and the proposal ``q`` (written into the
  parameters) and, per tensor, ``g.(p - a)``, ``|p - a|^2`` and
  ``|q - a|^2``, summed in a fixed order (two runs give the same bits).
* :func:`project`: ``p = a + keep * (p - a)``; chunks of tensors whose
  ``keep`` is 1 read one number and stop.
* :func:`adam_with_pull`: AdamL2SP's single pass (Adam on
  ``g + pull * (p - a)``).

The optimizers' steps on these programs are in their front-ends
(:mod:`mmspd.optim.adam_spd`, :mod:`mmspd.optim.adam_l2sp`), which also
step what the programs do not serve (:func:`served_buckets`).

Arithmetic is float32 for float32, bfloat16 and float16 tensors; moments
are stored in the parameters' dtype (as ``torch.optim.Adam``). Step counters
may be numbers or, for CUDA-graph capture, tensors on the device; ``lr`` may
be a number or a 0-d tensor. On the CPU the programs run only in Triton's
interpreter (``TRITON_INTERPRET=1`` set before the first launch), which is
how they are tested without a GPU.
"""
import contextlib
import functools
import importlib
import math
from collections import OrderedDict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._step_lists import StepLists

#: dtypes the programs serve (float32 arithmetic)
SERVED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

#: elements per vector operation of a program (a power of two)
BLOCK_SIZE = 1024
#: blocks per chunk: a program steps ``BLOCK_SIZE * BLOCKS_PER_CHUNK``
#: elements of one tensor (a power of two)
BLOCKS_PER_CHUNK = 16
#: warps per program on CUDA
NUM_WARPS = 4
#: most chunk partial sums a program of the reduction adds per vector
#: operation (a power of two; fewer when no tensor has that many chunks)
REDUCE_BLOCK = 1024

#: cached device tables (address and chunk tables), most recent last
_TABLES: 'OrderedDict[tuple, Tensor]' = OrderedDict()
_TABLES_KEPT = 32
#: tables a CUDA graph was captured with: kept for the process's lifetime,
#: since a replay reads them
_CAPTURED_TABLES: Dict[tuple, Tensor] = {}


@functools.lru_cache(maxsize=None)
def _import_error() -> Optional[str]:
    try:
        importlib.import_module('triton')
    except Exception as error:  # ImportError, or a broken install
        return f'{type(error).__name__}: {error}'
    return None


def jit_module():
    """:mod:`mmspd.optim._triton_jit` (imports Triton on first use)."""
    return importlib.import_module('mmspd.optim._triton_jit')


def interpreted() -> bool:
    """Whether the programs run in Triton's interpreter (CPU tensors)."""
    if _import_error() is not None:
        return False
    kernel = jit_module().adam_chunk_kernel
    return type(kernel).__name__ == 'InterpretedFunction'


@functools.lru_cache(maxsize=None)
def _cuda_unavailable_reason(device: torch.device) -> Optional[str]:
    if not torch.cuda.is_available():
        return 'CUDA is not available'
    if torch.version.hip is not None:
        return 'ROCm builds are not served (the kernel is tested on CUDA)'
    capability = torch.cuda.get_device_capability(device)
    if capability < (7, 0):
        return (f'Triton needs compute capability 7.0 or newer; {device} '
                f'has {capability[0]}.{capability[1]}')
    return None


def unavailable_reason(device: torch.device) -> Optional[str]:
    """``None`` if the programs can step tensors on ``device``, else why
    they cannot (one phrase)."""
    error = _import_error()
    if error is not None:
        return f'Triton cannot be imported ({error})'
    if device.type == 'cuda':
        return _cuda_unavailable_reason(device)
    if device.type == 'cpu':
        if interpreted():
            return None
        return ('CPU tensors run only in Triton\'s interpreter '
                '(TRITON_INTERPRET=1 set before the first launch)')
    return f'{device.type} tensors are not served (CUDA only)'


def available(device: torch.device) -> bool:
    """Whether the programs can step tensors on ``device``."""
    return unavailable_reason(device) is None


def require(device: torch.device) -> None:
    """Raise ``RuntimeError`` if the programs cannot run on ``device``."""
    reason = unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(f"kernel='triton' cannot step {device} tensors: "
                           f'{reason}; use the foreach kernel instead')


# ------------------------------------------------------------------- tables
def _device_table(key: tuple, values: Sequence[int],
                  device: torch.device) -> Tensor:
    """An int64 tensor of ``values`` on ``device``, cached under ``key``.

    Building one copies to the device (asynchronously, from pinned memory);
    during CUDA-graph capture nothing may be copied, so the table must have
    been built by an eager step before (the usual warm-up).
    """
    capturing = (device.type == 'cuda'
                 and torch.cuda.is_current_stream_capturing())
    table = _TABLES.get(key)
    if table is not None:
        _TABLES.move_to_end(key)
    else:
        table = _CAPTURED_TABLES.get(key)
    if table is None:
        if capturing:
            raise RuntimeError(
                "kernel='triton': a CUDA graph is being captured over "
                'tensors this kernel has not stepped before; run one eager '
                'step on the same tensors before capturing (the warm-up '
                'torch.cuda.graph asks for)')
        host = torch.tensor(values, dtype=torch.int64,
                            pin_memory=device.type == 'cuda')
        table = host.to(device, non_blocking=True)
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_KEPT:
            _TABLES.popitem(last=False)
    if capturing:
        _CAPTURED_TABLES[key] = table
    return table


def _address_table(device: torch.device,
                   rows: Sequence[Optional[Sequence[Tensor]]],
                   n: int) -> Tuple[Tensor, bool]:
    """[6, n] int64 addresses, one row per role of :mod:`_triton_jit`
    (a missing role's row is zeros), and whether all are multiples of 16
    bytes (then whole blocks move in vectors)."""
    addresses = []
    for row in rows:
        addresses.extend([0] * n if row is None else
                         list(map(Tensor.data_ptr, row)))
    aligned = not any(address & 15 for address in addresses)
    return _device_table(('addresses', device, n, *addresses), addresses,
                         device), aligned


def _chunk_table(device: torch.device, numels: Sequence[int],
                 chunk: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """``(chunk_tensor, chunk_start, numels, first_chunk, n_chunks)``."""
    key = ('chunks', device, chunk, *numels)
    chunk_tensor, chunk_start, first_chunk = [], [], [0]
    for t, numel in enumerate(numels):
        count = -(-numel // chunk)
        chunk_tensor.extend([t] * count)
        chunk_start.extend(range(0, count * chunk, chunk))
        first_chunk.append(first_chunk[-1] + count)
    n_chunks = first_chunk[-1]
    table = _device_table(
        key, chunk_tensor + chunk_start + list(numels) + first_chunk, device)
    n = len(numels)
    return (table[:n_chunks], table[n_chunks:2 * n_chunks],
            table[2 * n_chunks:2 * n_chunks + n],
            table[2 * n_chunks + n:], n_chunks)


# ------------------------------------------------------------------ scalars
def _step_scalars(steps: List[Union[float, Tensor]], lr: Union[float, Tensor],
                  beta1: float, beta2: float, device: torch.device
                  ) -> Tuple[float, float, Optional[Tensor]]:
    """``(step_size, bias2_sqrt, None)`` when one pair of numbers serves
    every tensor, else ``(1.0, 1.0, table)`` with a [n, 2] float32 table
    on ``device`` (counter tensors or a device ``lr``: computed there, in
    float64, without reading anything on the host)."""
    if isinstance(lr, Tensor) and lr.device.type == 'cpu' \
            and not isinstance(steps[0], Tensor):
        lr = float(lr)  # a host number: reading it waits for nothing
    if isinstance(steps[0], Tensor):
        counts = torch.stack([s.reshape(()) for s in steps]).to(
            device=device, dtype=torch.float64, non_blocking=True)
        bias1 = 1 - torch.pow(beta1, counts)
        bias2_sqrt = torch.sqrt(1 - torch.pow(beta2, counts))
    else:
        if not isinstance(lr, Tensor) and len(set(steps)) == 1:
            step = steps[0]
            return (lr / (1 - beta1**step), math.sqrt(1 - beta2**step),
                    None)
        host = torch.tensor([[1 - beta1**s, math.sqrt(1 - beta2**s)]
                             for s in steps], dtype=torch.float64,
                            pin_memory=device.type == 'cuda')
        host = host.to(device, non_blocking=True)
        bias1, bias2_sqrt = host[:, 0], host[:, 1]
    if isinstance(lr, Tensor):
        lr = lr.detach().to(device=device, dtype=torch.float64,
                            non_blocking=True)
    table = torch.stack([lr / bias1, bias2_sqrt], dim=1).float()
    return 1.0, 1.0, table


# ------------------------------------------------------------------ checks
def _check_lists(params: List[Tensor], others: Dict[str, Optional[list]],
                 anchors: Optional[List[Tensor]]) -> None:
    """Raise ``ValueError`` unless the lists are what the programs index:
    contiguous tensors on one device, of the parameters' sizes, all of the
    parameters' dtype (the anchors: of one dtype). Runs every step, so the
    common case is checked list by list, in C++ calls."""
    device, dtype = params[0].device, params[0].dtype
    if dtype not in SERVED_DTYPES:
        raise ValueError(f"kernel='triton' serves float32, bfloat16 and "
                         f'float16 tensors, not {dtype}')
    numels = list(map(Tensor.numel, params))
    device_index = params[0].get_device()
    lists = dict(params=params, **others)
    if anchors is not None:
        lists['anchors'] = anchors
    for name, tensors in lists.items():
        if tensors is None:
            continue
        if len(tensors) != len(params):
            raise ValueError(f"kernel='triton': {len(tensors)} {name} for "
                             f'{len(params)} parameters')
        want = tensors[0].dtype if name == 'anchors' else dtype
        if (list(map(Tensor.numel, tensors)) == numels
                and all(map(Tensor.is_contiguous, tensors))
                and set(map(Tensor.get_device, tensors)) == {device_index}
                and {t.dtype for t in tensors} == {want}
                and tensors[0].device == device):
            continue
        note = ' (one dtype for all anchors)' if name == 'anchors' else ''
        for i, (t, numel) in enumerate(zip(tensors, numels)):
            if (t.device != device or t.dtype != want
                    or not t.is_contiguous() or t.numel() != numel):
                raise ValueError(
                    f"kernel='triton': {name}[{i}] is a "
                    f'{"" if t.is_contiguous() else "non-contiguous "}'
                    f'{t.device} {t.dtype} tensor of {t.numel()} elements; '
                    f'expected a contiguous {device} {want} tensor of '
                    f'{numel}, like its parameter{note}')


def _next_power_of_2(n: int) -> int:
    """The smallest power of two >= ``n`` (>= 1)."""
    return 1 << max(n - 1, 0).bit_length()


def _triton_dtype(dtype: torch.dtype):
    tl = importlib.import_module('triton.language')
    return {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16,
            torch.float16: tl.float16}[dtype]


# ----------------------------------------------------------------- launches
def _launching_on(device: torch.device):
    """Triton launches on the current CUDA device: make it ``device``."""
    if device.type == 'cuda':
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _adam_pass(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
               anchors, steps, *, beta1, beta2, lr, eps, amsgrad,
               pull: float, sums: bool) -> Optional[Tensor]:
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("kernel='triton': amsgrad=True needs "
                         'max_exp_avg_sqs (got None)')
    _check_lists(params, dict(grads=grads, exp_avgs=exp_avgs,
                              exp_avg_sqs=exp_avg_sqs,
                              max_exp_avg_sqs=max_exp_avg_sqs
                              if amsgrad else None), anchors)
    if len(steps) != len(params):
        raise ValueError(f"kernel='triton': {len(steps)} step counts for "
                         f'{len(params)} parameters')
    device, n = params[0].device, len(params)
    require(device)
    jit = jit_module()
    chunk = BLOCK_SIZE * BLOCKS_PER_CHUNK
    chunk_tensor, chunk_start, numels, first_chunk, n_chunks = _chunk_table(
        device, [p.numel() for p in params], chunk)
    addresses, aligned = _address_table(
        device, [params, grads, exp_avgs, exp_avg_sqs,
                 max_exp_avg_sqs if amsgrad else None, anchors], n)
    step_size, bias2_sqrt, scalars = _step_scalars(steps, lr, beta1, beta2,
                                                   device)
    partials = torch.empty((max(n_chunks, 1), 3) if sums else (1, ),
                           dtype=torch.float32, device=device)
    p_dtype = _triton_dtype(params[0].dtype)
    a_dtype = p_dtype if anchors is None else _triton_dtype(anchors[0].dtype)
    if n_chunks:
        with _launching_on(device):
            jit.adam_chunk_kernel[(n_chunks, )](
                addresses, chunk_tensor, chunk_start, numels,
                partials if scalars is None else scalars, partials, n,
                float(step_size), float(bias2_sqrt), 1.0 - beta1, beta2,
                1.0 - beta2, eps, float(pull),
                P_DTYPE=p_dtype, A_DTYPE=a_dtype,
                HAS_ANCHOR=anchors is not None, AMSGRAD=bool(amsgrad),
                PER_TENSOR_SCALARS=scalars is not None, PULL=pull != 0,
                SUMS=sums, ALIGNED=aligned, BLOCK=BLOCK_SIZE,
                BLOCKS_PER_CHUNK=BLOCKS_PER_CHUNK, num_warps=NUM_WARPS)
    if not sums:
        return None
    if n_chunks == n and all(0 < p.numel() <= chunk for p in params):
        return partials  # one chunk per tensor: its partials are its sums
    totals = torch.empty((n, 3), dtype=torch.float32, device=device)
    most = max(-(-p.numel() // chunk) for p in params)
    rblock = min(REDUCE_BLOCK, _next_power_of_2(most))
    with _launching_on(device):
        jit.sum_partials_kernel[(n, )](partials, first_chunk, totals,
                                       RBLOCK=rblock,
                                       N_RBLOCKS=-(-most // rblock),
                                       num_warps=1 if rblock <= 128 else 4)
    return totals


def propose(params: List[Tensor], grads: List[Tensor],
            exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
            max_exp_avg_sqs: Optional[List[Tensor]],
            anchors: Optional[List[Tensor]],
            steps: List[Union[float, Tensor]], *, beta1: float,
            beta2: float, lr: Union[float, Tensor], eps: float,
            amsgrad: bool) -> Tensor:
    """SPD's first pass over same-device, same-dtype contiguous lists.

    Updates the moments, writes Adam's proposal ``q`` into ``params`` and
    returns a [n, 3] float32 tensor on their device whose rows are
    ``g.(p - a)``, ``|p - a|^2`` and ``|q - a|^2`` (``p`` before the step,
    ``q`` as stored). ``anchors=None`` means zero anchors; ``steps`` are
    the counts after this step's increment (numbers, or counter tensors).
    Raises ``ValueError`` for lists the programs cannot index and
    ``RuntimeError`` where they cannot run.
    """
    if not params:
        return torch.empty((0, 3), dtype=torch.float32)
    return _adam_pass(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                      anchors, steps, beta1=beta1, beta2=beta2, lr=lr,
                      eps=eps, amsgrad=amsgrad, pull=0.0, sums=True)


def project(params: List[Tensor], anchors: Optional[List[Tensor]],
            keeps: Tensor) -> None:
    """``p = a + keep * (p - a)`` per tensor (``keeps``: [n] on the
    parameters' device); tensors whose keep is 1 are left unread."""
    if not params:
        return
    _check_lists(params, {}, anchors)
    device, n = params[0].device, len(params)
    if keeps.shape != (n, ) or keeps.device != device:
        raise ValueError(f"kernel='triton': keeps has shape "
                         f'{tuple(keeps.shape)} on {keeps.device}; expected '
                         f'({n},) on {device}')
    require(device)
    chunk = BLOCK_SIZE * BLOCKS_PER_CHUNK
    chunk_tensor, chunk_start, numels, _, n_chunks = _chunk_table(
        device, [p.numel() for p in params], chunk)
    if not n_chunks:
        return
    addresses, aligned = _address_table(
        device, [params, None, None, None, None, anchors], n)
    p_dtype = _triton_dtype(params[0].dtype)
    a_dtype = p_dtype if anchors is None else _triton_dtype(anchors[0].dtype)
    with _launching_on(device):
        jit_module().project_chunk_kernel[(n_chunks, )](
            addresses, chunk_tensor, chunk_start, numels,
            keeps.detach().float().contiguous(), n, P_DTYPE=p_dtype,
            A_DTYPE=a_dtype, HAS_ANCHOR=anchors is not None, ALIGNED=aligned,
            BLOCK=BLOCK_SIZE, BLOCKS_PER_CHUNK=BLOCKS_PER_CHUNK,
            num_warps=NUM_WARPS)


def adam_with_pull(params: List[Tensor], grads: List[Tensor],
                   exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
                   max_exp_avg_sqs: Optional[List[Tensor]],
                   anchors: Optional[List[Tensor]],
                   steps: List[Union[float, Tensor]], *, beta1: float,
                   beta2: float, lr: Union[float, Tensor], eps: float,
                   amsgrad: bool, pull: float) -> None:
    """Adam on ``g + pull * (p - a)`` in one pass (AdamL2SP; ``pull=0``
    is Adam, and then the anchors are not read). Arguments as
    :func:`propose`."""
    if not params:
        return
    _adam_pass(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
               anchors if pull != 0 else None, steps, beta1=beta1,
               beta2=beta2, lr=lr, eps=eps, amsgrad=amsgrad, pull=pull,
               sums=False)


# ------------------------------------------------------------------ buckets
def served_buckets(lists: StepLists
                   ) -> Iterator[Tuple[bool, StepLists]]:
    """Split ``lists`` by device, dtype and anchor dtype; yield
    ``(served, bucket)`` per bucket, where ``served`` is False for what the
    programs do not serve (float64, non-contiguous tensors: the caller
    steps those with another kernel). Raises where a device cannot run the
    programs."""
    for (device, dtype), bucket in lists.by_device_and_dtype().items():
        require(device)
        if dtype not in SERVED_DTYPES:
            yield False, bucket
            continue
        contiguous, strided = bucket.split_contiguous()
        if strided is not None:
            yield False, strided
        if contiguous is not None:
            for sub in contiguous.by_anchor_dtype():
                yield True, sub
