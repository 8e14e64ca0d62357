"""The pretrained weights of a config, exactly as training loads them.

mmengine's Runner starts training from ``model.init_weights()`` (which
runs every ``init_cfg``, e.g. ``dict(type='Pretrained', checkpoint=...,
prefix='backbone')`` through mmengine's ``PretrainedInit``: the file's keys
under the prefix, ``module.`` stripped, loaded into that module with its
own load hooks) and then ``load_from`` (``load_checkpoint(...,
strict=False, revise_keys=[('^module\\.', '')])``). :func:`load_pretrained`
does the same on a freshly built model, so the weights it returns are the
ones the optimizer saw at its first step (SPD's and L2-SP's anchors), and
also says which state-dict keys those sources actually provided: the keys
WiSE-FT interpolates. A key of a pretrained module that its file does not
provide, or provides with another shape (mmengine would skip it with a
log line and leave the random init) is an error.
"""
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Set

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

#: What mmengine's ``load_checkpoint`` strips from every key by default.
_MODULE_PREFIX = re.compile(r'^module\.')


@dataclass
class PretrainedWeights:
    """The model's state after ``init_weights()`` and ``load_from``.

    Attributes:
        state: the full state dict (CPU tensors), pretrained keys and the
            rest (random init of new layers such as a head) alike.
        keys: the keys whose values came from a pretrained source.
        sources: one line per source (``'backbone <- FILE (prefix
            backbone.)'``, ``'load_from FILE'``), for reports.
    """
    state: Dict[str, torch.Tensor]
    keys: Set[str] = field(default_factory=set)
    sources: List[str] = field(default_factory=list)


def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The state dict of a loaded checkpoint (its ``state_dict`` entry, or
    the mapping itself), with ``module.`` stripped as mmengine does."""
    state = checkpoint.get('state_dict', checkpoint)
    return {_MODULE_PREFIX.sub('', k): v for k, v in state.items()}


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """:func:`state_dict_of` a checkpoint file, read on the CPU by
    mmengine's loader. Raises ``FileNotFoundError`` naming a missing local
    file."""
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist')
    return state_dict_of(_load_checkpoint(path, map_location='cpu'))


def build_model(cfg: Config) -> torch.nn.Module:
    """The model of ``cfg`` as the Runner builds it (the config's
    ``default_scope``, its ``data_preprocessor`` merged in), on the CPU."""
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def _pretrained_init_cfgs(module: torch.nn.Module) -> List[dict]:
    init_cfg = getattr(module, 'init_cfg', None)
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return [c for c in cfgs
            if isinstance(c, dict) and c.get('type') == 'Pretrained']


def _file_keys(init_cfg: dict) -> Dict[str, torch.Size]:
    """``{key: shape}`` that ``PretrainedInit`` would load into its module
    (the prefix filtered and stripped, as mmengine's
    ``_load_checkpoint_with_prefix``)."""
    state = read_state_dict(init_cfg['checkpoint'])
    prefix = init_cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
        if not state:
            raise ValueError(f'The pretrained checkpoint '
                             f'{init_cfg["checkpoint"]!r} has no key with '
                             f'the prefix {prefix!r} that the config\'s '
                             f'init_cfg asks for')
    return {k: v.shape for k, v in state.items()}


def describe_keys(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f' and {len(keys) - limit} more' if len(keys) > limit
                    else '')


def load_pretrained(cfg: Config) -> PretrainedWeights:
    """Build ``cfg``'s model, load its pretrained weights as training does
    (``init_weights()``, then ``load_from``) and return them.

    Raises ``ValueError`` when a module's ``Pretrained`` file lacks some of
    the module's keys or holds one with another shape (the run would have
    started those from random values), and ``FileNotFoundError`` for a
    missing file.
    """
    model = build_model(cfg)
    full_keys = set(model.state_dict())
    sources, keys = [], set()
    for name, module in model.named_modules():
        for init_cfg in _pretrained_init_cfgs(module):
            provided = _file_keys(init_cfg)
            own = {k: v.shape for k, v in module.state_dict().items()}
            prefix = f'{name}.' if name else ''
            # a wrapper (e.g. mmpretrain's LoRAModel) may keep the
            # module's weights out of the model's state dict: only keys
            # the model saves matter
            missing = [k for k in own if k not in provided
                       and prefix + k in full_keys]
            if missing:
                raise ValueError(
                    f'The pretrained checkpoint {init_cfg["checkpoint"]!r} '
                    f'(prefix {init_cfg.get("prefix")!r}) lacks '
                    f'{len(missing)} key(s) of module {name or "model"!r}: '
                    f'{describe_keys(missing)}; they would start from random '
                    f'values')
            wrong = [f'{k} {tuple(provided[k])} vs {tuple(own[k])}'
                     for k in own if k in provided
                     and provided[k] != own[k] and prefix + k in full_keys]
            if wrong:
                raise ValueError(
                    f'The pretrained checkpoint {init_cfg["checkpoint"]!r} '
                    f'has tensors of other shapes than module '
                    f'{name or "model"!r} (file vs model): '
                    f'{describe_keys(wrong)}')
            keys |= {prefix + k for k in own if prefix + k in full_keys}
            sources.append(f'{name or "model"} <- {init_cfg["checkpoint"]}'
                           + (f' (prefix {init_cfg["prefix"]!r})'
                              if init_cfg.get('prefix') else ''))
    model.init_weights()
    load_from = cfg.get('load_from')
    if load_from:
        provided = read_state_dict(load_from)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        wrong = [f'{k} {tuple(v.shape)} vs {tuple(shapes[k])}'
                 for k, v in provided.items()
                 if k in shapes and v.shape != shapes[k]]
        if wrong:
            raise ValueError(f'load_from {load_from!r} has tensors of other '
                             f'shapes than the model (file vs model): '
                             f'{describe_keys(wrong)}')
        load_checkpoint(model, load_from, map_location='cpu', strict=False,
                        revise_keys=[(r'^module\.', '')])
        keys |= {k for k in provided if k in full_keys}
        sources.append(f'load_from {load_from}')
    state = {k: v.detach().cpu().clone()
             for k, v in model.state_dict().items()}
    return PretrainedWeights(state=state, keys=keys, sources=sources)
