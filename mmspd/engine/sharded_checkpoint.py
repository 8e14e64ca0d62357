"""Sharded checkpoints of FSDP2 (DTensor) models and their optimizers.

A sharded checkpoint is a *directory* (named like mmengine's checkpoint
files, e.g. ``iter_8.pth``) holding

* the model and optimizer state in ``torch.distributed.checkpoint`` (DCP)
  format: every rank writes its own shards (``__<rank>_0.distcp``) and rank
  0 the index (``.metadata``). The state is keyed by parameter name
  (``get_model_state_dict`` / ``get_optimizer_state_dict``), so optimizer
  state that lives per parameter, AdamSPD's anchors included
  (``optimizer.state[p]['anchor']``, DTensors with the parameter's
  placements), is saved and restored shard by shard;
* ``meta.pth``: what rank 0 knows for the whole job (mmengine's ``meta``,
  ``message_hub``, ``param_schedulers``), plus the format tag and the world
  size that wrote it.

Crash safety: the directory is written as ``<name>.tmp`` and renamed to
``<name>`` once every rank has written its shards and rank 0 the meta file,
so a directory under the final name is always complete (see
:func:`is_complete_sharded_checkpoint`).

DCP reads shards by their global offsets, so a checkpoint written by N
processes loads into M processes (resharding): tested for 2 -> 3 and 3 -> 2.
:func:`consolidate_sharded_checkpoint` turns one into an ordinary
one-process mmengine checkpoint (optimizer state keyed by parameter index,
as ``torch.optim.Optimizer.state_dict``) for a one-process resume or a
release; :func:`full_to_named_optimizer_state` goes the other way.

Imports torch only.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                     get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)

from .durable_files import (TMP_SUFFIX, fsync_path, is_complete_torch_file,
                            replace_durably)

#: ``meta.pth['format']`` of the checkpoints this module writes.
SHARDED_FORMAT = 'mmspd-sharded-v1'
#: Rank 0's file in a sharded checkpoint directory.
META_FILE = 'meta.pth'
#: DCP's index file, written last by DCP's coordinator (rank 0).
DCP_METADATA_FILE = '.metadata'


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def is_sharded_checkpoint(path: str) -> bool:
    """Whether ``path`` is a directory written by
    :func:`save_sharded_checkpoint` (complete or not)."""
    return osp.isdir(path) and (
        osp.isfile(osp.join(path, META_FILE))
        or osp.isfile(osp.join(path, DCP_METADATA_FILE)))


def is_complete_sharded_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete sharded checkpoint directory: DCP's
    index, a complete ``meta.pth`` (zip directory and CRCs checked) and a
    shard file (``__<rank>_*.distcp``) of every rank of the ``world_size``
    recorded in ``meta.pth``. ``meta.pth`` is read weights-only (plain data
    only); nothing else is unpickled."""
    meta = osp.join(path, META_FILE)
    if not (osp.isdir(path) and osp.isfile(osp.join(path, DCP_METADATA_FILE))
            and is_complete_torch_file(meta)):
        return False
    try:
        world_size = torch.load(meta, map_location='cpu',
                                weights_only=True).get('world_size')
    except Exception:  # unreadable: not a checkpoint to resume from
        return False
    if not isinstance(world_size, int) or world_size < 1:
        return False
    ranks = {n[2:].split('_', 1)[0] for n in os.listdir(path)
             if n.startswith('__') and n.endswith('.distcp')}
    return all(str(rank) in ranks for rank in range(world_size))


def _named_state(model: nn.Module, optimizer) -> dict:
    """The DCP state of ``model`` and ``optimizer`` (names as keys; the
    tensors are the live shards, so ``dcp.load`` fills them in place).

    The optimizer state is taken first: ``get_optimizer_state_dict`` of an
    optimizer that has not stepped yet runs one step with zero gradients
    and lr 0 to create its state (torch's behaviour), which must not happen
    after the model's state was loaded in place.
    """
    state = {}
    if optimizer is not None:
        state['optimizer'] = get_optimizer_state_dict(model, optimizer)
    state['model'] = get_model_state_dict(model)
    return state


def sharded_model_shapes(path: str) -> Dict[str, torch.Size]:
    """The model tensors a sharded checkpoint directory holds, with their
    whole shapes, read from DCP's index (no tensor is read). Raises
    ``ValueError`` naming the directory when it has no readable index."""
    try:
        metadata = dcp.FileSystemReader(path).read_metadata()
    except Exception as error:  # a missing or foreign .metadata
        raise ValueError(f'{path!r} is not a readable sharded checkpoint '
                         f'({type(error).__name__}: {error})') from error
    prefix = 'model.'
    return {key[len(prefix):]: getattr(entry, 'size', None)
            for key, entry in metadata.state_dict_metadata.items()
            if key.startswith(prefix)}


def save_sharded_checkpoint(path: str, model: nn.Module,
                            optimizer: Optional[torch.optim.Optimizer] = None,
                            extra: Optional[dict] = None) -> None:
    """Write the sharded checkpoint directory ``path`` (collective: every
    rank of the default process group calls it with the same ``path``).

    ``extra`` (rank 0's, e.g. ``meta``, ``message_hub``,
    ``param_schedulers``) goes to ``meta.pth``. The directory is written as
    ``path + '.tmp'`` and renamed to ``path`` after all ranks finished, so
    ``path`` is absent or complete whatever moment the job is killed at.
    An existing ``path`` is replaced. ``path`` must be on a file system
    every rank sees (as for any DCP checkpoint).
    """
    path = osp.abspath(path)
    tmp = path + TMP_SUFFIX
    if _rank() == 0:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
    _barrier()
    dcp.save(_named_state(model, optimizer), checkpoint_id=tmp)
    if _rank() == 0:
        meta = dict(extra or {})
        meta.update(format=SHARDED_FORMAT, world_size=_world_size())
        meta_path = osp.join(tmp, META_FILE)
        with open(meta_path, 'wb') as f:
            torch.save(meta, f)
            f.flush()
            os.fsync(f.fileno())
        fsync_path(tmp)
        old = path + '.old'
        if osp.exists(path):
            if osp.isdir(old):
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_path(osp.dirname(path))
        if osp.isdir(old):
            shutil.rmtree(old)
        elif osp.isfile(old):
            os.remove(old)
    _barrier()


def read_sharded_meta(path: str) -> dict:
    """``meta.pth`` of the sharded checkpoint ``path`` (weights-only load).

    Raises ``FileNotFoundError`` / ``ValueError`` with what is wrong when
    ``path`` is not a complete checkpoint of this format.
    """
    if not osp.isdir(path):
        raise FileNotFoundError(f'No sharded checkpoint directory at '
                                f'{path!r}')
    if not is_complete_sharded_checkpoint(path):
        raise ValueError(f'{path!r} is not a complete sharded checkpoint '
                         f'(expected {DCP_METADATA_FILE}, {META_FILE} and '
                         f'*.distcp shards written by '
                         f'save_sharded_checkpoint); it may be from an '
                         f'interrupted save')
    meta = torch.load(osp.join(path, META_FILE), map_location='cpu',
                      weights_only=True)
    if meta.get('format') != SHARDED_FORMAT:
        raise ValueError(f'{path!r} has format {meta.get("format")!r}, '
                         f'expected {SHARDED_FORMAT!r}')
    return meta


def load_sharded_checkpoint(path: str, model: nn.Module,
                            optimizer: Optional[torch.optim.Optimizer] = None,
                            strict: bool = True) -> dict:
    """Load ``path`` into the (sharded) ``model`` and ``optimizer``
    (collective) and return its ``meta.pth`` content.

    Works on any world size: DCP reshards by global offsets. With
    ``optimizer`` given, the checkpoint must hold optimizer state for every
    parameter that has state after one step (e.g. AdamSPD's anchors);
    a checkpoint written without optimizer state raises ``ValueError``.
    """
    meta = read_sharded_meta(path)
    reader = dcp.FileSystemReader(path)
    saved_keys = set(reader.read_metadata().state_dict_metadata)
    if optimizer is not None and not any(
            k.startswith('optimizer.') for k in saved_keys):
        raise ValueError(f'{path!r} holds no optimizer state (saved with '
                         f'save_optimizer=False); resume needs one, or load '
                         f'it as weights only (load_from)')
    state = _named_state(model, optimizer)
    if not strict:
        state['model'] = {k: v for k, v in state['model'].items()
                          if f'model.{k}' in saved_keys}
    try:
        dcp.load(state, checkpoint_id=path)
    except Exception as error:  # DCP's CheckpointException lists per rank
        raise RuntimeError(
            f'Cannot load the sharded checkpoint {path!r} (written by '
            f'{meta.get("world_size")} processes) into this model and '
            f'optimizer on {_world_size()} processes: {error}. The model '
            f'and the optimizer\'s parameter groups must be the ones that '
            f'saved it; to start a different model from it, consolidate it '
            f'(mmspd.engine.sharded_checkpoint.consolidate_sharded_'
            f'checkpoint) and use the file as load_from') from error
    options = StateDictOptions(strict=strict)
    set_model_state_dict(model, state['model'], options=options)
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state['optimizer'],
                                 options=options)
    return meta


def named_to_indexed_optimizer_state(state: dict) -> dict:
    """An optimizer state dict keyed by parameter name (as
    ``get_optimizer_state_dict`` returns) in ``Optimizer.state_dict``'s own
    format: parameters numbered in the order of the groups' ``params``."""
    index: Dict[str, int] = {}
    groups = []
    for group in state['param_groups']:
        group = dict(group)
        ids = []
        for name in group['params']:
            index.setdefault(name, len(index))
            ids.append(index[name])
        group['params'] = ids
        groups.append(group)
    unknown = sorted(set(state['state']) - set(index))
    if unknown:
        raise ValueError(f'Optimizer state for parameters {unknown} that '
                         f'are in no parameter group')
    return dict(state={index[k]: v for k, v in state['state'].items()},
                param_groups=groups)


def full_to_named_optimizer_state(state: dict, model: nn.Module,
                                  optimizer: torch.optim.Optimizer) -> dict:
    """``Optimizer.state_dict()`` (parameters numbered) as a state dict
    keyed by the names of ``model``'s parameters in ``optimizer``'s
    groups, for ``set_optimizer_state_dict``.

    Raises ``ValueError`` when the groups do not match (another model or
    another parameter grouping).
    """
    names = {id(p): n for n, p in model.named_parameters()}
    saved_groups = state['param_groups']
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f'The checkpoint has {len(saved_groups)} optimizer '
                         f'parameter groups, this optimizer '
                         f'{len(optimizer.param_groups)}')
    id_to_name, groups = {}, []
    for i, (saved, group) in enumerate(zip(saved_groups,
                                           optimizer.param_groups)):
        if len(saved['params']) != len(group['params']):
            raise ValueError(f'Optimizer parameter group {i} has '
                             f'{len(saved["params"])} parameters in the '
                             f'checkpoint and {len(group["params"])} here')
        group_names = [names[id(p)] for p in group['params']]
        id_to_name.update(zip(saved['params'], group_names))
        groups.append(dict(saved, params=group_names))
    return dict(state={id_to_name[k]: v for k, v in state['state'].items()},
                param_groups=groups)


def load_full_state(model: nn.Module, model_state: dict,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    optimizer_state: Optional[dict] = None,
                    strict: bool = True,
                    broadcast_from_rank0: bool = False) -> None:
    """Load full (unsharded) state dicts into a sharded model and optimizer
    (each rank keeps its own shards). ``optimizer_state`` is in
    ``Optimizer.state_dict`` format.

    ``broadcast_from_rank0=False``: every rank holds the full state dicts.
    ``True``: only rank 0's values are read; the other ranks pass
    placeholders (e.g. the state dicts with meta tensors), ``None`` where
    rank 0 passes ``None``, and rank 0 sends every tensor in turn, each rank
    keeping its shard (the numbers of every rank holding them)."""
    options = StateDictOptions(full_state_dict=True, strict=strict,
                               broadcast_from_rank0=broadcast_from_rank0)
    sender = not broadcast_from_rank0 or _rank() == 0
    if optimizer is not None and optimizer_state is not None:
        named = full_to_named_optimizer_state(
            optimizer_state, model, optimizer) if sender else {}
        set_optimizer_state_dict(model, optimizer, named, options=options)
    set_model_state_dict(model, model_state if sender else {},
                         options=options)


def consolidate_sharded_checkpoint(path: str,
                                   out_file: Optional[str] = None) -> dict:
    """The sharded checkpoint ``path`` as one ordinary mmengine checkpoint
    (``state_dict`` with full tensors, ``optimizer`` in
    ``Optimizer.state_dict`` format when saved, and ``meta.pth``'s entries).

    Runs in one process without a process group. Writes it to ``out_file``
    with ``torch.save`` when given (resumable by mmengine's ``Runner`` in
    one process, or a release after removing ``optimizer``).
    """
    meta = read_sharded_meta(path)
    with tempfile.TemporaryDirectory() as tmp:
        flat_file = osp.join(tmp, 'state.pth')
        dcp_to_torch_save(path, flat_file)
        state = torch.load(flat_file, map_location='cpu', weights_only=True)
    checkpoint = {k: v for k, v in meta.items()
                  if k not in ('format', 'world_size')}
    checkpoint['state_dict'] = state['model']
    if 'optimizer' in state:
        checkpoint['optimizer'] = named_to_indexed_optimizer_state(
            state['optimizer'])
    if out_file is not None:
        tmp_file = out_file + TMP_SUFFIX
        torch.save(checkpoint, tmp_file)
        replace_durably(tmp_file, out_file)
    return checkpoint
