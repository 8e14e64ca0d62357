"""Prepare a config for the launcher it is started with (1..N GPUs or CPUs).

``tools/train.py`` and ``tools/test.py`` call :func:`configure_launch` before
building the Runner. With GPUs nothing changes: mmengine's own distributed
set-up (NCCL, DDP on the local device) runs. Without a GPU, a distributed
launch (``tools/dist_train.sh CONFIG N`` on a laptop or a CPU node) would
fail inside mmengine, which calls ``torch.cuda.set_device``; instead the
process group is started here with the gloo backend, and the model is
wrapped by :class:`~mmspd.engine.model_wrappers.CPUDistributedDataParallel`
(no device ids, SyncBN reverted to BN).

``tools/train.py`` also calls :func:`use_crash_safe_checkpoints` (periodic
checkpoints written so that a kill never leaves a partial or dangling file)
and :func:`resolve_auto_resume` (``--resume`` without a file picks the
latest *complete* checkpoint of the work dir).
"""
import logging
import os
import os.path as osp
import re
import subprocess
import zipfile
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

#: The ``--launcher`` choices the tools accept (as upstream's tools).
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _slurm_environment() -> None:
    """Fill torch.distributed's env:// variables from SLURM's (as mmengine).

    ``MASTER_ADDR`` and ``MASTER_PORT`` are kept when set; otherwise the
    first host of ``SLURM_NODELIST`` (expanded by ``scontrol``) and 29500.
    Raises ``RuntimeError`` when a SLURM variable is missing or the host
    cannot be found, instead of joining a bogus address.
    """
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS')
               if k not in os.environ]
    if 'MASTER_ADDR' not in os.environ and 'SLURM_NODELIST' not in os.environ:
        missing.append('SLURM_NODELIST')
    if missing:
        raise RuntimeError(f'--launcher slurm expects the environment '
                           f'variables {missing} (set by srun)')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        try:
            result = subprocess.run(
                ['scontrol', 'show', 'hostnames', nodes],
                capture_output=True, text=True)
            hosts = result.stdout.split() if result.returncode == 0 else []
            reason = result.stderr.strip()
        except OSError as error:  # no scontrol on this host
            hosts, reason = [], str(error)
        if not hosts:
            raise RuntimeError(f'Cannot find the master host of '
                               f'SLURM_NODELIST={nodes!r} with scontrol '
                               f'({reason!r}); set MASTER_ADDR')
        os.environ['MASTER_ADDR'] = hosts[0]
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def init_cpu_process_group(launcher: str) -> None:
    """Join the job's gloo process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        return
    if launcher == 'slurm':
        _slurm_environment()
    elif launcher == 'mpi':
        os.environ.setdefault('RANK', os.environ['OMPI_COMM_WORLD_RANK'])
        os.environ.setdefault('WORLD_SIZE',
                              os.environ['OMPI_COMM_WORLD_SIZE'])
        os.environ.setdefault('LOCAL_RANK',
                              os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher {launcher} expects the environment '
                           f'variables {missing} (set by torchrun, srun or '
                           f'mpirun)')
    dist.init_process_group(backend='gloo', init_method='env://')


def configure_launch(cfg: Config, launcher: str) -> Config:
    """Set ``cfg.launcher`` and make a GPU-less distributed launch work.

    Returns ``cfg`` (changed in place). Raises ``ValueError`` for an unknown
    launcher.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'Unknown launcher {launcher!r}: expected one of '
                         f'{", ".join(LAUNCHERS)}')
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    init_cpu_process_group(launcher)
    env_cfg = cfg.get('env_cfg') or {}
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.env_cfg = env_cfg
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper.get('type', 'MMDistributedDataParallel') == \
            'MMDistributedDataParallel':
        wrapper['type'] = 'CPUDistributedDataParallel'
        # explicit None: the Runner would otherwise pass [LOCAL_RANK]
        wrapper['device_ids'] = None
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return cfg


def enable_amp(cfg: Config) -> Config:
    """Switch the config's optimizer wrapper to ``AmpOptimWrapper``.

    Raises ``RuntimeError`` on a machine without a CUDA device (mmengine's
    AMP wrapper needs one), rather than failing later inside the Runner.
    """
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA device (mmengine\'s '
                           'AmpOptimWrapper); none is available here')
    optim_wrapper = cfg.optim_wrapper
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        return cfg
    if wrapper_type != 'OptimWrapper':
        raise ValueError(f'--amp replaces OptimWrapper by AmpOptimWrapper, '
                         f'but the config uses {wrapper_type!r}')
    optim_wrapper.type = 'AmpOptimWrapper'
    optim_wrapper.setdefault('loss_scale', 'dynamic')
    return cfg


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
    nothing. A legacy (non-zip) torch file counts as incomplete.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError):
        return False


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
