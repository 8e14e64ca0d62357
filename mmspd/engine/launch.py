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
import os
import os.path as osp
import subprocess
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .sharding_refusal import (refuse_flat_sharding,
                               refuse_fsdp2_unsupported_hooks)

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


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Read a config as the tools do: ``--cfg-options`` merged, and the work
    dir from ``work_dir``, else the config's, else
    ``./work_dirs/<config name>``."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def build_runner(cfg: Config):
    """The Runner of ``cfg`` (``runner_type`` honoured, as upstream).

    Raises ``ValueError`` first for a sharding strategy that would change
    AdamSPD's math, or hooks FSDP2 cannot serve
    (:mod:`mmspd.engine.sharding_refusal`)."""
    refuse_flat_sharding(cfg)
    refuse_fsdp2_unsupported_hooks(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


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


def finish_launch() -> None:
    """Leave the process group, if any, once every process is done.

    Without this, a gloo process group torn down at interpreter exit can
    abort a finished rank ("terminate called without an active
    exception"), turning a successful CPU run into a failed one. Call it
    after training/testing succeeded on every rank.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
