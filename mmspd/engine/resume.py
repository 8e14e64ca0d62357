"""Checkpoints for resuming: crash-safe saving and picking a complete file.

``tools/train.py`` switches the config's checkpoint hook to
:class:`~mmspd.engine.hooks.CrashSafeCheckpointHook` and, for ``--resume``
without a file, picks the latest *complete* checkpoint itself (mmengine
would follow ``last_checkpoint`` even to a deleted or truncated file).
"""
import logging
import os
import os.path as osp
import re
from typing import Optional

from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from .durable_files import is_complete_torch_file
from .sharded_checkpoint import is_complete_sharded_checkpoint


#: ``default_hooks.checkpoint`` types that become ``CrashSafeCheckpointHook``.
_UPSTREAM_CHECKPOINT_TYPES = ('CheckpointHook', 'mmengine.CheckpointHook',
                              CheckpointHook)


def use_crash_safe_checkpoints(cfg: Config) -> Config:
    """Make the config's checkpoint hook
    :class:`~mmspd.engine.hooks.CrashSafeCheckpointHook`.

    ``default_hooks.checkpoint`` of type ``CheckpointHook`` (or without a
    type) keeps its arguments and gets the crash-safe type; a missing entry
    becomes the Runner's default (``interval=1``) with that type. A
    checkpoint hook of another type, or one disabled with ``None``, is left
    alone. Returns ``cfg`` (changed in place).
    """
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = dict()
    default_hooks = cfg.default_hooks
    if 'checkpoint' not in default_hooks:
        default_hooks['checkpoint'] = dict(type='CheckpointHook', interval=1)
    hook = default_hooks['checkpoint']
    if isinstance(hook, dict) and \
            hook.get('type', 'CheckpointHook') in _UPSTREAM_CHECKPOINT_TYPES:
        hook['type'] = 'CrashSafeCheckpointHook'
    return cfg


#: Names of periodic checkpoints (CheckpointHook's default templates).
_CHECKPOINT_NAME = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete ``torch.save`` file.

    ``torch.save`` (the zip format, torch >= 1.6, which mmengine writes) ends
    a file with the zip directory and stores a CRC per record, so a file cut
    short by a kill fails this check. Reads the whole file; unpickles
    nothing. A legacy (non-zip) torch file counts as incomplete. A
    directory is a sharded checkpoint (FSDP2Strategy): complete when
    :func:`~mmspd.engine.sharded_checkpoint.is_complete_sharded_checkpoint`.
    """
    if osp.isdir(path):
        return is_complete_sharded_checkpoint(path)
    return is_complete_torch_file(path)


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a file) should resume from.

    The file named by ``work_dir/last_checkpoint`` if it is complete (see
    :func:`is_complete_checkpoint`), else the complete ``iter_N.pth`` or
    ``epoch_N.pth`` in ``work_dir`` with the largest ``N``; ``None`` if
    there is none. Skipped files are reported as warnings.
    """
    candidates = []
    save_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(save_file):
        with open(save_file) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    if osp.isdir(work_dir):
        numbered = []
        for name in os.listdir(work_dir):
            match = _CHECKPOINT_NAME.fullmatch(name)
            if match:
                numbered.append((int(match.group(1)), name))
        candidates += [osp.join(work_dir, name)
                       for _, name in sorted(numbered, reverse=True)]
    for path in dict.fromkeys(candidates):  # ordered, without repeats
        if is_complete_checkpoint(path):
            return path
        state = 'incomplete' if osp.exists(path) else 'missing'
        print_log(f'Not resuming from {path}: the file is {state}',
                  logger='current', level=logging.WARNING)
    return None


def resolve_auto_resume(cfg: Config) -> Config:
    """Pick the checkpoint of an automatic resume before mmengine does.

    For ``cfg.resume`` true with ``cfg.load_from`` None (``--resume`` without
    a file), mmengine resumes from whatever ``work_dir/last_checkpoint``
    names and crashes if that file is gone or truncated. Here
    ``cfg.load_from`` is set to :func:`find_resume_checkpoint`'s choice; if
    there is no complete checkpoint, ``cfg.resume`` becomes False and
    training starts from scratch (as mmengine does without
    ``last_checkpoint``). Other configs are not changed. Returns ``cfg``.
    """
    if not cfg.get('resume') or cfg.get('load_from') is not None:
        return cfg
    checkpoint = find_resume_checkpoint(cfg.work_dir)
    if checkpoint is None:
        print_log(f'No complete checkpoint in {cfg.work_dir} to resume '
                  f'from; training starts from scratch',
                  logger='current', level=logging.WARNING)
        cfg.resume = False
    else:
        cfg.load_from = checkpoint
    return cfg
