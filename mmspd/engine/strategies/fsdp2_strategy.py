"""``FSDP2Strategy``: mmengine's ``FlexibleRunner`` with FSDP2 (DTensor)
sharding, registered in mmengine's root ``STRATEGIES``.

mmengine 0.10.7 ships ``FSDPStrategy`` for FSDP1 only, whose flat
parameters hide tensor boundaries (AdamSPD's per-tensor decision would see
a shard, not the tensor). FSDP2 (``torch.distributed.fsdp.fully_shard``)
keeps every parameter a ``DTensor`` of its own shape, so per-tensor
optimizers stay exact.

Use it with ``runner_type = 'FlexibleRunner'``::

    runner_type = 'FlexibleRunner'
    strategy = dict(
        type='FSDP2Strategy',
        shard_modules=['TransformerEncoderLayer'],   # FSDP units
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
        activation_checkpointing=['TransformerEncoderLayer'])

and launch as any config (``tools/dist_train.sh CONFIG N``; on machines
without a GPU the processes run on the CPU with gloo).
"""
import contextlib
import copy
import functools
import os.path as osp
import time
from typing import Callable, Iterable, List, Optional, Sequence, Union

import mmengine
import torch
import torch.distributed as dist
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import STRATEGIES
from mmengine.utils import get_git_hash
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                     get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import (CPUOffloadPolicy, MixedPrecisionPolicy,
                                    OffloadPolicy, fully_shard)
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from mmengine._strategy import DDPStrategy

from mmspd.optim._dtensor import backend_device_types

from .. import sharded_checkpoint as sc
from ..durable_files import TMP_SUFFIX, replace_durably

#: ``state_dict_type`` values of :class:`FSDP2Strategy`.
STATE_DICT_TYPES = ('sharded', 'full')


def _dtype(name, key: str) -> Optional[torch.dtype]:
    """``'bfloat16'`` / ``torch.bfloat16`` / ``None`` as a dtype."""
    if name is None or isinstance(name, torch.dtype):
        return name
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f'mixed_precision.{key}={name!r} is not a floating '
                         f'torch dtype name (e.g. \'bfloat16\', '
                         f'\'float32\')')
    return dtype


def _type_names(value, key: str) -> List[str]:
    """A list of module type names from a name, a class or a sequence."""
    if value is None or value is False:
        return []
    if isinstance(value, (str, type)):
        value = [value]
    names = []
    for item in value:
        if isinstance(item, type):
            names.append(item.__name__)
        elif isinstance(item, str) and item:
            names.append(item.rsplit('.', 1)[-1])  # 'mmpretrain.X' -> 'X'
        else:
            raise TypeError(f'{key} expects module type names (str) or '
                            f'classes, got {item!r}')
    return names


def _matching_modules(model: nn.Module, names: Sequence[str],
                      key: str) -> List[nn.Module]:
    """Modules of ``model`` whose class (or a base class) is named in
    ``names``, children before parents. A name that matches nothing raises
    ``ValueError`` (a typo would otherwise silently shard nothing)."""
    found, used = [], set()
    for module in model.modules():
        bases = {cls.__name__ for cls in type(module).__mro__}
        hit = bases.intersection(names)
        if hit:
            found.append(module)
            used.update(hit)
    unused = [n for n in names if n not in used]
    if unused:
        types = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f'{key} names {unused}, but the model has no module '
                         f'of that type; its module types are {types}')
    return found[::-1]


#: Why a sharded model cannot be deep-copied, and what does it.
DEEPCOPY_REFUSAL = (
    'FSDP2Strategy: the sharded model cannot be deep-copied (FSDP2 '
    'modules do not allow it). A hook that copies the model, such as '
    "mmengine's EMAHook (its averaged model is a deep copy), cannot run "
    'under FSDP2Strategy: remove it from custom_hooks to shard the model, '
    'or train this config with data parallelism (no strategy) to keep it')


def _refuse_deepcopy(module, memo):
    raise ValueError(DEEPCOPY_REFUSAL)


def _checkpointed_forward(forward: Callable, *args, **kwargs):
    """``forward`` under non-reentrant activation checkpointing: its
    activations are recomputed in backward instead of kept."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def apply_activation_checkpointing(modules: Iterable[nn.Module]) -> None:
    """Recompute each module's activations in backward (its ``forward``
    runs under ``torch.utils.checkpoint``; parameter names are kept)."""
    for module in modules:
        module.forward = functools.partial(_checkpointed_forward,
                                           module.forward)


def _syncing_optim_context(wrapper: OptimWrapper) -> Callable:
    """``wrapper.optim_context`` for FSDP2 models under gradient
    accumulation: FSDP2 reads whether to reduce-scatter at the backward,
    which mmengine runs after the context (in ``update_params``), so the
    model's gradient sync is switched on or off for the whole iteration
    instead (off on accumulation steps, on at the step that updates)."""
    original = wrapper.optim_context

    @contextlib.contextmanager
    def optim_context(model: nn.Module):
        if hasattr(model, 'set_requires_gradient_sync'):
            model.set_requires_gradient_sync(wrapper.should_sync())
        with original(model):
            yield

    return optim_context


def _find_dtensors(value, prefix: str = '') -> List[str]:
    """Keys (dotted) of the DTensors in a nested dict/list."""
    if isinstance(value, DTensor):
        return [prefix or '<root>']
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _find_dtensors(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += _find_dtensors(v, f'{prefix}[{i}]')
    return found


@STRATEGIES.register_module()
class FSDP2Strategy(DDPStrategy):
    """Fully sharded data parallel training with FSDP2 for ``FlexibleRunner``.

    Every process holds one shard (dim 0) of each parameter, of its
    gradient and of its optimizer state; parameters are DTensors on a
    device mesh: 1-D over all processes by default, or 2-D for HSDP
    (``mesh``). Gradients are averaged over processes (as DDP), so a run
    equals a DDP run with the same global batch.

    Args:
        shard_modules (str | type | list): module types (class names as in
            the registries, e.g. ``'TransformerEncoderLayer'`` of mmpretrain,
            ``'SwinBlock'`` of mmseg, or classes) that become FSDP units:
            each unit's parameters are gathered for its forward/backward and
            freed after. The whole model is one more unit (the rest). A name
            that matches no module raises ``ValueError``. Default: none (one
            unit, the whole model).
        mixed_precision (dict, optional): ``param_dtype`` (compute and
            all-gather dtype, e.g. ``'bfloat16'``), ``reduce_dtype``
            (gradient reduce-scatter, e.g. ``'float32'``), ``output_dtype``,
            ``cast_forward_inputs``: torch's ``MixedPrecisionPolicy``. The
            sharded parameters, gradients and optimizer state stay in their
            own dtype (float32). Default: no mixed precision.
        activation_checkpointing (str | type | list): module types whose
            activations are recomputed in backward. Default: none.
        mesh (dict, optional): ``dict(replicate=R, shard=S)`` for hybrid
            sharding (HSDP): the processes form an R x S mesh, each
            parameter is sharded over the S processes of its row and
            replicated over the R rows (e.g. S = the GPUs of one node, R =
            the nodes, so all-gathers stay within a node). R x S must equal
            the number of processes. AdamSPD reduces its sums over the
            shard dimension only. Default: all processes shard (R = 1).
        offload (bool): keep the sharded parameters, their gradients and
            the optimizer state in CPU memory (torch's ``CPUOffloadPolicy``
            on every unit): each unit's parameters are copied to the device
            for its forward and backward, the gradients back, and the
            optimizer steps on the CPU. The process group must serve CPU
            tensors too (gradient clipping's norms and AdamSPD's sums are
            reduced there): on GPUs the strategy initialises it with the
            backend ``'cuda:nccl,cpu:gloo'``, and a group made beforehand
            by another component with a backend for the GPU only (e.g.
            ``'nccl'``) is refused. Pinned host memory is used when CUDA is
            available. Default False.
        meta_init (bool): build the model without memory on every process
            but rank 0: those build it on the meta device, rank 0 builds
            and initialises it on the CPU as without sharding
            (``init_weights``: the random initialisation and the
            ``Pretrained`` ``init_cfg`` loads, read by rank 0 alone); after
            ``fully_shard`` the others' shards are allocated on their device
            and every tensor (buffers included) comes from rank 0, one at a
            time. The values equal those of ``meta_init=False`` (mmengine
            broadcasts rank 0's initial weights there too), and the other
            ranks continue from rank 0's random state after the
            initialisation, as they do after initialising themselves. Refused
            (``ValueError``) with ``randomness.diff_rank_seed=True`` (the
            other ranks' random streams would differ from an ordinary run's)
            and with a ``Pretrained`` checkpoint given as a URL (mmengine's
            download waits for every rank); a model that cannot be built on
            the meta device (a constructor that reads a tensor's value) is
            reported on every rank. Default False: every process builds and
            initialises the whole model on the CPU.
        reshard_after_forward (bool): free each unit's gathered parameters
            after its forward (gather again in backward; less memory, more
            communication). Default True.
        state_dict_type (str): ``'sharded'`` (default): checkpoints are
            directories of per-rank shards
            (:mod:`mmspd.engine.sharded_checkpoint`), written by all ranks,
            loadable on any number of processes. ``'full'``: rank 0 writes
            an ordinary mmengine checkpoint file (every tensor gathered;
            loadable by a one-process ``Runner``).
        **kwargs: ``DDPStrategy``'s / ``BaseStrategy``'s arguments.

    Checkpoints of both kinds (and ordinary DDP / one-process checkpoint
    files) can be resumed from and loaded with ``load_from``. A checkpoint
    file is read by rank 0 alone, which sends the model and optimizer
    tensors to the others one at a time (:func:`read_file_on_rank0`).
    """

    def __init__(self,
                 *,
                 shard_modules=None,
                 mixed_precision: Optional[dict] = None,
                 activation_checkpointing=None,
                 reshard_after_forward: bool = True,
                 state_dict_type: str = 'sharded',
                 mesh: Optional[dict] = None,
                 offload: bool = False,
                 meta_init: bool = False,
                 **kwargs):
        self.mesh_shape = self._mesh_shape(mesh)
        if not isinstance(offload, bool):
            raise TypeError(f'offload must be a bool, got {offload!r}')
        self.offload = offload
        if not isinstance(meta_init, bool):
            raise TypeError(f'meta_init must be a bool, got {meta_init!r}')
        self.meta_init = meta_init
        self._meta_built = False
        self.shard_modules = _type_names(shard_modules, 'shard_modules')
        self.activation_checkpointing = _type_names(
            activation_checkpointing, 'activation_checkpointing')
        self.mp_policy = self._mixed_precision_policy(mixed_precision)
        if not isinstance(reshard_after_forward, bool):
            raise TypeError(f'reshard_after_forward must be a bool, got '
                            f'{reshard_after_forward!r}')
        self.reshard_after_forward = reshard_after_forward
        if state_dict_type not in STATE_DICT_TYPES:
            raise ValueError(f'state_dict_type={state_dict_type!r}: expected '
                             f'one of {STATE_DICT_TYPES}')
        self.state_dict_type = state_dict_type
        if kwargs.get('model_wrapper') is not None:
            raise ValueError(f'FSDP2Strategy wraps the model itself (no '
                             f'model_wrapper), got {kwargs["model_wrapper"]}')
        super().__init__(**kwargs)

    @staticmethod
    def _mesh_shape(cfg: Optional[dict]) -> Optional[tuple]:
        """``(replicate, shard)`` from the ``mesh`` option (``None``: 1-D)."""
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or set(cfg) != {'replicate', 'shard'}:
            raise ValueError(f'mesh={cfg!r}: expected dict(replicate=R, '
                             f'shard=S) with two positive ints')
        shape = (cfg['replicate'], cfg['shard'])
        for name, value in zip(('replicate', 'shard'), shape):
            if not isinstance(value, int) or isinstance(value, bool) or \
                    value < 1:
                raise ValueError(f'mesh.{name}={value!r}: expected a '
                                 f'positive int')
        return shape

    def _device_mesh(self, device: torch.device):
        """The mesh the model is sharded on (checked against the number of
        processes)."""
        world = dist.get_world_size()
        if self.mesh_shape is None:
            return init_device_mesh(device.type, (world, ))
        replicate, shard = self.mesh_shape
        if replicate * shard != world:
            raise ValueError(
                f'mesh=dict(replicate={replicate}, shard={shard}) needs '
                f'{replicate * shard} processes; this run has {world}')
        return init_device_mesh(device.type, (replicate, shard),
                                mesh_dim_names=('replicate', 'shard'))

    @staticmethod
    def _mixed_precision_policy(cfg: Optional[dict]) -> MixedPrecisionPolicy:
        if cfg is None:
            return MixedPrecisionPolicy()
        cfg = dict(cfg)
        known = ('param_dtype', 'reduce_dtype', 'output_dtype',
                 'cast_forward_inputs')
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f'mixed_precision has unknown keys {unknown}; '
                             f'expected some of {known}')
        for key in known[:3]:
            if key in cfg:
                cfg[key] = _dtype(cfg[key], key)
        if cfg.get('param_dtype') == torch.float16:
            raise ValueError(
                "mixed_precision.param_dtype='float16' is refused: float16 "
                'gradients need a loss scaler, which FSDP2Strategy does not '
                "run (small gradients would underflow to 0 silently); use "
                "param_dtype='bfloat16' (with reduce_dtype='float32')")
        return MixedPrecisionPolicy(**cfg)

    # -- processes and model --------------------------------------------
    def _setup_distributed(self, launcher: str = 'pytorch',
                           backend: str = 'nccl', **kwargs):
        """mmengine's set-up with GPUs; gloo CPU processes without (never
        calls ``torch.cuda``, unlike mmengine's ``init_dist``)."""
        if is_distributed():
            return
        if torch.cuda.is_available():
            return super()._setup_distributed(
                launcher, process_group_backend(backend, self.offload),
                **kwargs)
        from ..launch import init_cpu_process_group
        init_cpu_process_group(launcher)

    def _device(self) -> torch.device:
        device = get_device()
        if device == 'cuda':
            return torch.device('cuda', torch.cuda.current_device())
        return torch.device(device)

    def build_model(self, model):
        """As upstream; with ``meta_init`` a config dict is built on the
        meta device on every rank but 0 (collective: a build that fails on
        any rank raises on all)."""
        if not (self.meta_init and isinstance(model, dict)):
            return super().build_model(model)
        self._check_meta_init()
        built, error = None, None
        try:
            if dist.get_rank() == 0:
                built = super().build_model(model)
            else:
                with torch.device('meta'):
                    built = super().build_model(model)
        except Exception as exc:  # reported on every rank below
            error = f'{type(exc).__name__}: {exc}'
        _raise_if_any_rank_failed(
            error, 'FSDP2Strategy(meta_init=True) cannot build the model '
            '(ranks other than 0 build it on the meta device; set '
            'meta_init=False for a model whose constructor needs real '
            'tensors)')
        self._meta_built = True
        return built

    def _check_meta_init(self) -> None:
        if self._randomness.get('diff_rank_seed', False):
            raise ValueError(
                'FSDP2Strategy(meta_init=True) with randomness.'
                'diff_rank_seed=True is refused: only rank 0 initialises '
                'the model, so the other ranks\' random streams would not '
                'be those of a run without meta_init; set one of them to '
                'False')

    def _init_model_weights(self, model: nn.Module) -> nn.Module:
        """As upstream, or with ``meta_init``: ``init_weights`` on rank 0
        only, then every rank continues from rank 0's random state (the
        values reach the shards in :meth:`_wrap_model`)."""
        if not self._meta_built:
            return super()._init_model_weights(model)
        urls = _pretrained_urls(model)
        if urls:
            raise ValueError(
                f'FSDP2Strategy(meta_init=True) loads Pretrained init_cfg '
                f'checkpoints on rank 0 alone, but {urls} are URLs '
                f'(mmengine\'s download waits for every rank); download '
                f'them and give the local paths, or set meta_init=False')
        error = None
        if dist.get_rank() == 0 and hasattr(model, 'init_weights') and \
                self.dispatch_kwargs.get('init_weights_for_test_or_val',
                                         True):
            try:
                model.init_weights()
            except Exception as exc:  # reported on every rank below
                error = f'{type(exc).__name__}: {exc}'
        _raise_if_any_rank_failed(error, 'init_weights failed on rank 0')
        states = [_random_states() if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(states, src=0)
        _set_random_states(states[0])
        return model

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        """Activation checkpointing, then ``fully_shard`` on every module of
        the ``shard_modules`` types (innermost first) and on the model.

        The model is not moved to the device first: ``fully_shard`` moves
        each unit's parameters when it shards them, so a device holds the
        shards plus one unit's whole parameters at most, never the whole
        model. With ``meta_init``, the shards of ranks other than 0 are
        allocated here and rank 0's values sent into them."""
        if not dist.is_initialized():
            raise RuntimeError('FSDP2Strategy needs a distributed launch '
                               '(tools/dist_train.sh CONFIG N, or '
                               '--launcher pytorch/slurm/mpi); got a '
                               'single process without a process group')
        device = self._device()
        if device.type == 'cpu':
            model = revert_sync_batchnorm(model)  # SyncBN needs CUDA
        else:
            model = self.convert_model(model)
        source = None
        if self._meta_built and dist.get_rank() == 0:
            # rank 0's whole tensors, sent to every rank after sharding
            source = dict(model.state_dict())
        mesh = self._device_mesh(device)
        self.device_mesh = mesh
        if self.activation_checkpointing:
            apply_activation_checkpointing(
                _matching_modules(model, self.activation_checkpointing,
                                  'activation_checkpointing'))
        offload_policy = self._offload_policy()
        units = _matching_modules(model, self.shard_modules, 'shard_modules')
        for unit in units:
            if unit is not model:
                fully_shard(unit, mesh=mesh, mp_policy=self.mp_policy,
                            offload_policy=offload_policy,
                            reshard_after_forward=self.reshard_after_forward)
        # the root's parameters are needed again right at the backward
        fully_shard(model, mesh=mesh, mp_policy=self.mp_policy,
                    offload_policy=offload_policy,
                    reshard_after_forward=False)
        # FSDP2's own refusal names neither the strategy nor the hook; the
        # class is the one fully_shard made for this model's type
        type(model).__deepcopy__ = _refuse_deepcopy
        if self._meta_built:
            self._fill_from_rank0(model, source, device)
        _tell_data_preprocessors(model, device)
        self.logger.info(
            f'FSDP2: {len(units)} {"/".join(self.shard_modules) or ""} '
            f'units + the model sharded over {dist.get_world_size()} '
            f'processes ({device.type}, mesh {tuple(mesh.shape)}), mixed '
            f'precision {self.mp_policy}, activation checkpointing on '
            f'{self.activation_checkpointing or "nothing"}, '
            f'{"CPU offload" if self.offload else "no offload"}')
        return model

    def _fill_from_rank0(self, model: nn.Module, source: Optional[dict],
                         device: torch.device) -> None:
        """Allocate the meta shards and buffers of ranks other than 0 and
        give every rank rank 0's values (``source``: its whole state dict),
        tensor by tensor; buffers left out of the state dict (not
        persistent) are broadcast too."""
        if dist.get_rank() != 0:
            # offloaded shards live on the CPU; buffers go where FSDP2
            # would have moved them
            model.to_empty(device='cpu' if self.offload else device)
            for module in model.modules():
                for name, buf in module.named_buffers(recurse=False):
                    if buf.device != device:
                        setattr(module, name, buf.to(device))
        set_model_state_dict(
            model, source if dist.get_rank() == 0 else {},
            options=StateDictOptions(full_state_dict=True,
                                     broadcast_from_rank0=True))
        for module in model.modules():
            for name in sorted(module._non_persistent_buffers_set):
                buf = getattr(module, name, None)
                if isinstance(buf, torch.Tensor):
                    dist.broadcast(buf, src=0)
        self.logger.info(
            f'FSDP2 meta_init: ranks 1-{dist.get_world_size() - 1} built '
            f'the model on the meta device; rank 0 initialised it and sent '
            f'every tensor to their shards')

    def _offload_policy(self) -> OffloadPolicy:
        """``CPUOffloadPolicy`` with ``offload``, else no offload; refuses
        a process group that cannot reduce CPU tensors."""
        if not self.offload:
            return OffloadPolicy()
        backend = dist.get_backend()
        if 'cpu' not in (backend_device_types(backend) or ()):
            raise ValueError(
                f'FSDP2Strategy(offload=True) steps the optimizer on CPU '
                f'shards, but the process group\'s backend {backend!r} '
                f'does not serve CPU tensors (gradient norms and AdamSPD\'s '
                f'sums are reduced there); initialise it with '
                f'backend=\'cuda:nccl,cpu:gloo\' (as the strategy does when '
                f'it starts the processes itself)')
        return CPUOffloadPolicy(pin_memory=torch.cuda.is_available())

    def build_optim_wrapper(self, optim_wrapper, model=None):
        """As upstream; refuses ``AmpOptimWrapper`` (its loss scaler does
        not know sharded gradients: use ``mixed_precision`` here)."""
        if isinstance(optim_wrapper, dict):
            kind = optim_wrapper.get('type', 'OptimWrapper')
            if kind in ('AmpOptimWrapper', AmpOptimWrapper):
                raise ValueError(
                    'FSDP2Strategy does not take AmpOptimWrapper: set the '
                    'strategy\'s mixed_precision=dict(param_dtype='
                    '\'bfloat16\', reduce_dtype=\'float32\') and use '
                    'OptimWrapper')
        built = super().build_optim_wrapper(optim_wrapper, model)
        if isinstance(built, AmpOptimWrapper):
            raise ValueError('FSDP2Strategy does not take AmpOptimWrapper: '
                             'use the strategy\'s mixed_precision')
        if not isinstance(built, OptimWrapper):
            raise TypeError(f'FSDP2Strategy supports one OptimWrapper, got '
                            f'{type(built).__name__}')
        # accumulative_counts > 1: one gradient reduce-scatter per step
        built.optim_context = _syncing_optim_context(built)
        return built

    # -- checkpoints ------------------------------------------------------
    @property
    def saves_atomically(self) -> bool:
        """Checkpoints appear under their final name only when complete
        (read by :class:`~mmspd.engine.hooks.CrashSafeCheckpointHook`)."""
        return True

    def _optimizer(self) -> Optional[torch.optim.Optimizer]:
        wrapper = getattr(self, 'optim_wrapper', None)
        return None if wrapper is None else wrapper.optimizer

    def save_checkpoint(self,
                        filename: str,
                        *,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None,
                        callback: Optional[Callable] = None) -> None:
        """Save a checkpoint (collective: every rank calls it).

        ``'sharded'``: the directory ``filename`` (see
        :func:`~mmspd.engine.sharded_checkpoint.save_sharded_checkpoint`).
        ``'full'``: the file ``filename``, written by rank 0 through a
        temporary file and a rename. Either appears under ``filename``
        only once complete.

        ``callback`` (the ``before_save_checkpoint`` hooks) sees the
        checkpoint without ``state_dict``/``optimizer``; an entry it adds
        that holds DTensors raises ``ValueError`` (rank 0 alone would save
        its shard of them).
        """
        extra = dict(extra_ckpt or {})
        extra.setdefault('meta', {})
        extra['meta'].update(
            seed=self.seed,
            time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
            mmengine=mmengine.__version__ + get_git_hash())
        if save_param_scheduler and hasattr(self, 'param_schedulers'):
            extra['param_schedulers'] = self.scheduler_state_dict()
        if callback is not None:
            callback(extra)
        sharded = _find_dtensors(extra)
        if sharded:
            raise ValueError(f'Checkpoint entries {sharded} hold DTensors '
                             f'(added by a before_save_checkpoint hook); '
                             f'FSDP2Strategy saves the model and optimizer '
                             f'itself and cannot save other sharded state')
        optimizer = self._optimizer() if save_optimizer else None
        if self.state_dict_type == 'sharded':
            sc.save_sharded_checkpoint(filename, self.model, optimizer, extra)
            return
        # collective; with cpu_offload only rank 0 receives the tensors
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(self.model, options=options)
        optim_state = None if optimizer is None else \
            get_optimizer_state_dict(self.model, optimizer, options=options)
        if dist.get_rank() == 0:
            from mmengine.runner.checkpoint import save_checkpoint
            checkpoint = dict(extra, state_dict=model_state)
            if optim_state is not None:
                checkpoint['optimizer'] = \
                    sc.named_to_indexed_optimizer_state(optim_state)
            tmp = filename + TMP_SUFFIX
            save_checkpoint(checkpoint, tmp)
            replace_durably(tmp, filename)
        dist.barrier()

    def _read_checkpoint(self, filename: str, callback):
        """``(checkpoint, sharded)``: the meta of a sharded directory, or
        the content of a checkpoint file as :func:`read_file_on_rank0`
        gives it, after ``callback``."""
        if osp.isdir(filename):
            checkpoint = sc.read_sharded_meta(filename)
            sharded = True
        else:
            checkpoint = read_file_on_rank0(filename)
            sharded = False
        if callback is not None:
            callback(checkpoint)
        return checkpoint, sharded

    def load_checkpoint(self,
                        filename: str,
                        *,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """Load the model weights of ``filename`` (``load_from``): a sharded
        checkpoint directory or an ordinary checkpoint file (DDP,
        one-process, ``'full'``); each rank keeps its shards."""
        self.logger.info(f'Load checkpoint from {filename}')
        checkpoint, sharded = self._read_checkpoint(filename, callback)
        if sharded:
            sc.load_sharded_checkpoint(filename, self.model, None,
                                       strict=strict)
        else:
            state = checkpoint.pop('state_dict', checkpoint)
            state = _revise_keys(state, revise_keys)
            sc.load_full_state(self.model, state, strict=strict,
                               broadcast_from_rank0=True)
        return checkpoint

    def resume(self,
               filename: str,
               *,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default',
               callback: Optional[Callable] = None) -> dict:
        """Resume model, optimizer (anchors included), schedulers and seed
        from a sharded directory (any world size) or a checkpoint file."""
        self.logger.info(f'Resume checkpoint from {filename}')
        checkpoint, sharded = self._read_checkpoint(filename, callback)
        optimizer = self._optimizer() if resume_optimizer else None
        if sharded:
            sc.load_sharded_checkpoint(filename, self.model, optimizer)
            saved_world = checkpoint.get('world_size')
            if saved_world != dist.get_world_size():
                self.logger.warning(
                    f'Resuming on {dist.get_world_size()} processes from a '
                    f'checkpoint written by {saved_world}: model and '
                    f'optimizer state are resharded exactly; the global '
                    f'batch is now {dist.get_world_size()} x the batch per '
                    f'process (adapt it, or the lr, if it should not '
                    f'change)')
        else:
            if resume_optimizer and 'optimizer' not in checkpoint:
                raise ValueError(f'{filename!r} holds no optimizer state; '
                                 f'resume needs one (or use load_from)')
            sc.load_full_state(self.model, checkpoint.pop('state_dict'),
                               optimizer, checkpoint.pop('optimizer', None),
                               broadcast_from_rank0=True)
        if resume_param_scheduler and hasattr(self, 'param_schedulers'):
            self.load_scheduler_state_dict(checkpoint.pop('param_schedulers'))

        resumed_seed = checkpoint['meta'].get('seed', None)
        current_seed = self._randomness.get('seed')
        if resumed_seed is not None and resumed_seed != current_seed:
            if current_seed is not None:
                self.logger.warning(f'The random seed in the checkpoint, '
                                    f'{resumed_seed}, differs from the '
                                    f'config\'s, {current_seed}')
            self._randomness.update(seed=resumed_seed)
            self._set_randomness(**self._randomness)

        wrapper = getattr(self, 'optim_wrapper', None)
        counts = getattr(wrapper, '_accumulative_counts', 1)
        if counts > 1:
            if 'max_iters' not in self.dispatch_kwargs:
                raise ValueError(f'"max_iters" must be in dispatch_kwargs '
                                 f'for accumulative_counts={counts}')
            wrapper.initialize_count_status(self.model,
                                            checkpoint['meta']['iter'],
                                            self.dispatch_kwargs['max_iters'])
        return checkpoint

    def model_state_dict(self) -> dict:
        """The full model state (gathered, on the CPU, rank 0 only)."""
        return get_model_state_dict(
            self.model,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def process_group_backend(backend: str, offload: bool) -> str:
    """The backend FSDP2Strategy starts GPU processes with: ``backend``,
    or with ``offload`` and a backend that serves no CPU tensors (e.g.
    ``'nccl'``) ``'cuda:<backend>,cpu:gloo'``: collectives on CUDA tensors
    go through ``backend``, those on the offloaded CPU shards (gradient
    norms, AdamSPD's sums) through gloo."""
    if offload and 'cpu' not in (backend_device_types(backend) or ()):
        return f'cuda:{backend},cpu:gloo'
    return backend


def _raise_if_any_rank_failed(error: Optional[str], what: str) -> None:
    """Collective: raise ``RuntimeError`` on every rank when ``error`` (a
    message, ``None`` for success) is set on any, naming the ranks."""
    errors = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    failed = {rank: e for rank, e in enumerate(errors) if e is not None}
    if failed:
        raise RuntimeError(f'{what}: {failed}')


def _pretrained_urls(model: nn.Module) -> List[str]:
    """The ``Pretrained`` ``init_cfg`` checkpoints of ``model``'s modules
    that are URLs (``scheme://``)."""
    urls = []
    for module in model.modules():
        cfgs = getattr(module, 'init_cfg', None) or []
        for cfg in cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' \
                    and '://' in str(cfg.get('checkpoint', '')):
                urls.append(str(cfg['checkpoint']))
    return sorted(set(urls))


def _random_states() -> dict:
    """The CPU random generators' states (torch, numpy, random)."""
    import random

    import numpy as np
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                random=random.getstate())


def _set_random_states(states: dict) -> None:
    import random

    import numpy as np
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['random'])


def _tell_data_preprocessors(model: nn.Module, device: torch.device) -> None:
    """mmengine's data preprocessors send batches to the device they were
    last moved to with ``.to``; ``fully_shard`` moves the model's tensors
    without calling it, so it is called here on the preprocessors (their
    buffers are already there)."""
    from mmengine.model import BaseDataPreprocessor
    for module in model.modules():
        if isinstance(module, BaseDataPreprocessor):
            module.to(device)


#: entries of a checkpoint file whose tensors only rank 0 reads (their
#: values reach the other ranks through ``set_*_state_dict``'s broadcast)
BROADCAST_ENTRIES = ('state_dict', 'optimizer')


def _as_meta(value):
    """``value`` with every tensor of one or more dims replaced by a meta
    tensor of its shape and dtype (nested dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return value if value.dim() == 0 else torch.empty_like(
            value, device='meta')
    if isinstance(value, dict):
        return type(value)((k, _as_meta(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_as_meta(v) for v in value)
    return value


def _placeholder(checkpoint):
    """What the ranks other than 0 receive of a checkpoint file: the
    entries in :data:`BROADCAST_ENTRIES` (and the tensors of a bare state
    dict) as meta tensors, everything else whole."""
    if not isinstance(checkpoint, dict):
        return checkpoint
    return type(checkpoint)(
        (k, _as_meta(v) if k in BROADCAST_ENTRIES or torch.is_tensor(v)
         else v) for k, v in checkpoint.items())


def read_file_on_rank0(filename: str):
    """A checkpoint file read by rank 0 alone (collective).

    Rank 0 loads it (mmengine's ``_load_checkpoint``, on the CPU) and
    keeps it whole; the other ranks receive, in one object broadcast, the
    file's entries with the tensors of ``state_dict`` and ``optimizer`` (or
    of a bare state dict) as meta tensors of the same shapes and dtypes
    (0-d tensors such as Adam's ``step`` whole), and every other entry
    (``meta``, ``message_hub``, ``param_schedulers``, what hooks saved)
    whole. The model and optimizer values then come from rank 0 through
    :func:`~mmspd.engine.sharded_checkpoint.load_full_state`'s broadcast.
    A file rank 0 cannot read raises the same error on every rank.
    """
    from mmengine.runner.checkpoint import _load_checkpoint
    message = [None]
    checkpoint = None
    if dist.get_rank() == 0:
        try:
            checkpoint = _load_checkpoint(filename, map_location='cpu')
            message = [('ok', _placeholder(checkpoint))]
        except Exception as error:  # raised on every rank below
            message = [('error', f'{type(error).__name__}: {error}')]
    dist.broadcast_object_list(message, src=0)
    kind, content = message[0]
    if kind == 'error':
        raise RuntimeError(f'Rank 0 cannot read the checkpoint '
                           f'{filename!r}: {content}')
    return checkpoint if dist.get_rank() == 0 else content


def _revise_keys(state: dict, revise_keys: list) -> dict:
    """``state`` with each key rewritten by ``revise_keys``' regexes (as
    mmengine's ``_load_checkpoint_to_model``)."""
    import re
    state = copy.copy(state)
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return state
