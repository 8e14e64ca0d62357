"""mmengine's own checkpoints, loadable with ``weights_only=True``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without the argument, so ``resume`` of mmengine's own
checkpoints fails: its message hub pickles ``HistoryBuffer`` objects (numpy
arrays plus a table of *functions*, which pickle as ``builtins.getattr``).

Importing this module (``import mmspd`` does) fixes that without opening the
unpickler to code execution:

* ``HistoryBuffer`` pickles without its function table, and unpickling
  ignores one if a file carries it (else a crafted file could swap the
  process-wide table's functions). The table is a class attribute rebuilt
  from code at import time (built-in statistics and every
  ``@HistoryBuffer.register_statistics`` function), so nothing is lost.
* Only plain data types are allow-listed in torch's weights-only unpickler:
  ``HistoryBuffer`` itself, numpy arrays, dtypes and scalars, and
  ``_codecs.encode`` (how numpy pickles raw bytes). ``getattr``, ``eval`` and
  anything else that can call code stay refused, so a malicious file given
  as ``load_from``, ``resume`` or ``init_cfg`` is rejected by mmengine's
  loader.

Checkpoints written before this import (with the function table) still need
a trusted, explicit ``torch.load(..., weights_only=False)``; mmspd never does
that behind the user's back.
"""
import _codecs

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_NUMPY_CORE = np._core if hasattr(np, '_core') else np.core  # numpy 2 / 1


def _history_buffer_getstate(self) -> dict:
    """Pickle a ``HistoryBuffer`` as data only (no function table)."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _history_buffer_setstate(self, state: dict) -> None:
    """Restore a ``HistoryBuffer``'s data, never its function table.

    mmengine's own ``__setstate__`` merges a pickled ``statistics_methods``
    into the table shared by every buffer in the process, so a crafted file
    could replace ``mean`` with any allow-listed callable. Drop it instead.
    """
    state = dict(state)
    state.pop('statistics_methods', None)
    self._set_default_statistics()
    self.__dict__.update(state)


def _numpy_dtype_classes() -> list:
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is None:  # numpy < 1.25 has no per-dtype classes
        return []
    return [(cls, f'numpy.dtypes.{name}') for name, cls in vars(dtypes).items()
            if isinstance(cls, type) and issubclass(cls, np.dtype)]


def safe_checkpoint_globals() -> list:
    """The plain-data globals an mmengine checkpoint needs, as allow-listed.

    Each entry is ``(object, 'module.name')`` as pickle writes the name.
    """
    multiarray = _NUMPY_CORE.multiarray
    # numpy 1 writes numpy.core.*, numpy 2 numpy._core.*: accept both names,
    # so checkpoints resume across numpy major versions.
    numpy_functions = [
        (getattr(multiarray, name), f'{core}.multiarray.{name}')
        for name in ('_reconstruct', 'scalar')
        for core in ('numpy.core', 'numpy._core')
    ]
    return [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        *numpy_functions,
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
        (_codecs.encode, '_codecs.encode'),
    ] + _numpy_dtype_classes()


def install() -> None:
    """Apply both changes; idempotent."""
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    torch.serialization.add_safe_globals(safe_checkpoint_globals())


install()
