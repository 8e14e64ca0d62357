"""Pretrained weights read exactly: strict checks of ``init_cfg`` and
``load_from`` loads, before training or testing starts.

SPD and L2-SP pull every anchored tensor toward its value at the first step,
which must be the pretrained value. mmengine loads ``init_cfg=dict(type=
'Pretrained')`` and ``load_from`` with ``strict=False`` (one "missing keys"
log line), and mmseg's Swin loads its own checkpoint the same way; a
half-matching file then leaves tensors at their random initialisation and
anchors them there. This module checks the loaded model against the files
themselves:

* :func:`check_pretrained_loaded`: every module of the model whose
  ``init_cfg`` is ``Pretrained`` (e.g. the backbone) holds exactly the
  checkpoint's tensors: no module tensor missing from the file, no file
  tensor left unused, no shape mismatch, no value that differs from the
  file (a tensor loaded and then re-initialised).
* :func:`check_checkpoint_loaded`: the same for the whole model against a
  ``load_from`` / test checkpoint.
* :func:`build_pretrained_model`: the model of a config with its pretrained
  weights read exactly as the config loads them (``init_weights``), and
  checked. For tools that need the pretrained weights themselves
  (e.g. weight-space ensembling with the fine-tuned ones).
* :class:`StrictLoadingHook` runs the checks in a Runner (``before_train``:
  the ``init_cfg`` check, or the ``load_from``/resume check when a
  checkpoint replaced the weights; ``before_test``: the ``load_from``
  check); :func:`add_strict_loading_hook` adds it to a config that lacks it
  (``tools/train.py`` and ``tools/test.py`` do).

Every mismatch is collected into one :class:`LoadMismatchError` listing
them. Settings (the config's top-level ``strict_loading`` dict, all
optional)::

    strict_loading = dict(
        pretrained=True,          # False: no init_cfg check (opt-out)
        load_from=True,           # False: no load_from check (opt-out)
        # intentional partial loads, fnmatch patterns on model keys
        # (e.g. 'backbone.norm0.*'): tensors of the model that the file
        # need not have, and file tensors the model need not use
        pretrained_missing_ok=[], pretrained_unexpected_ok=[],
        load_from_missing_ok=[], load_from_unexpected_ok=[])

e.g. ``--cfg-options strict_loading.pretrained=False``.
"""
import fnmatch
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from .sharded_checkpoint import sharded_model_shapes

#: The settings of ``strict_loading`` and their defaults.
DEFAULT_SETTINGS = dict(
    pretrained=True, load_from=True,
    pretrained_missing_ok=(), pretrained_unexpected_ok=(),
    load_from_missing_ok=(), load_from_unexpected_ok=())
#: Names listed per kind of mismatch before "... and N more".
MAX_LISTED = 40


class LoadMismatchError(RuntimeError):
    """A loaded model does not hold exactly the tensors of its checkpoint."""


def read_state_dict(checkpoint: str) -> Dict[str, Tensor]:
    """The tensors of a checkpoint file or URL (as mmengine reads it),
    unwrapped from ``state_dict`` / ``model``, ``module.`` stripped."""
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    if isinstance(loaded, dict):
        for key in ('state_dict', 'model'):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise LoadMismatchError(
            f'Checkpoint {checkpoint!r} holds a {type(loaded).__name__}, '
            f'not a state dict')
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in loaded.items() if isinstance(v, Tensor)}


def _full(tensor: Tensor) -> Tensor:
    """A sharded (DTensor) parameter gathered; others as they are."""
    full = getattr(tensor, 'full_tensor', None)
    return full() if callable(full) else tensor


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _listed(names: Sequence[str]) -> str:
    shown = ', '.join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f' ... and {more} more' if more > 0 else '')


def compare_states(model_state: Dict[str, Tensor],
                   file_state: Dict[str, Tensor],
                   missing_ok: Iterable[str] = (),
                   unexpected_ok: Iterable[str] = ()
                   ) -> Dict[str, List[str]]:
    """How ``model_state`` differs from ``file_state`` (same key space).

    Returns ``{'missing': model keys absent from the file, 'unexpected':
    file keys absent from the model, 'shape': 'key (model shape vs file
    shape)', 'value': keys whose model tensor differs from the file's}``,
    patterns of ``missing_ok`` / ``unexpected_ok`` (fnmatch) left out.
    Values are compared exactly, the file's tensor cast to the model's
    dtype (the load does the same cast).
    """
    missing_ok, unexpected_ok = list(missing_ok), list(unexpected_ok)
    report = dict(missing=[], unexpected=[], shape=[], value=[])
    for key, tensor in model_state.items():
        if key not in file_state:
            if not _matches(key, missing_ok):
                report['missing'].append(key)
            continue
        tensor, stored = _full(tensor).detach(), file_state[key]
        if tuple(tensor.shape) != tuple(stored.shape):
            report['shape'].append(f'{key} (model {tuple(tensor.shape)} vs '
                                   f'file {tuple(stored.shape)})')
        elif not torch.equal(tensor.cpu(), stored.to(tensor.dtype)):
            report['value'].append(key)
    report['unexpected'] = [k for k in file_state if k not in model_state
                            and not _matches(k, unexpected_ok)]
    return report


def compare_shapes(model_state: Dict[str, Tensor],
                   file_shapes: Dict[str, Sequence[int]],
                   missing_ok: Iterable[str] = (),
                   unexpected_ok: Iterable[str] = ()
                   ) -> Dict[str, List[str]]:
    """:func:`compare_states` on keys and whole shapes only (``'value'``
    stays empty), for checkpoints whose index gives the shapes."""
    missing_ok, unexpected_ok = list(missing_ok), list(unexpected_ok)
    report = dict(missing=[], unexpected=[], shape=[], value=[])
    for key, tensor in model_state.items():
        if key not in file_shapes:
            if not _matches(key, missing_ok):
                report['missing'].append(key)
        elif file_shapes[key] is not None and \
                tuple(tensor.shape) != tuple(file_shapes[key]):
            report['shape'].append(f'{key} (model {tuple(tensor.shape)} vs '
                                   f'file {tuple(file_shapes[key])})')
    report['unexpected'] = [k for k in file_shapes if k not in model_state
                            and not _matches(k, unexpected_ok)]
    return report


def _raise_if_mismatched(report: Dict[str, List[str]], what: str,
                         option: str) -> None:
    kinds = [('missing from the checkpoint', report['missing']),
             ('in the checkpoint but not in the model', report['unexpected']),
             ('of another shape', report['shape']),
             ('not holding the checkpoint\'s values (not loaded, or '
              'overwritten after loading)', report['value'])]
    problems = [f'{len(names)} {label}: {_listed(names)}'
                for label, names in kinds if names]
    if problems:
        raise LoadMismatchError(
            f'{what} does not match the model exactly; '
            + '; '.join(problems)
            + f'. For an intentional partial load list the keys in '
            f'strict_loading.{option}_missing_ok / {option}_unexpected_ok '
            f'(fnmatch patterns), or turn the check off with '
            f'strict_loading.{option}=False.')


def pretrained_modules(model: nn.Module
                       ) -> List[Tuple[str, nn.Module, dict]]:
    """``(name, module, init_cfg)`` of each module whose ``init_cfg`` (a
    dict, or an entry of a list) is ``Pretrained`` with a checkpoint."""
    found = []
    for name, module in model.named_modules():
        init_cfg = getattr(module, 'init_cfg', None)
        entries = init_cfg if isinstance(init_cfg, (list, tuple)) \
            else [init_cfg]
        for entry in entries:
            if isinstance(entry, dict) and entry.get('type') == 'Pretrained' \
                    and entry.get('checkpoint'):
                found.append((name, module, dict(entry)))
    return found


def _module_view(file_state: Dict[str, Tensor], module_keys: Iterable[str],
                 prefix: Optional[str]) -> Dict[str, Tensor]:
    """The file's tensors under the module's own key names.

    With ``prefix`` (mmengine's ``Pretrained`` ``prefix``): the keys under
    ``prefix.``, stripped. Without: the keys as they are when any of them
    is a module key, else with a leading ``backbone.`` stripped (how mmseg's
    Swin reads its checkpoints).
    """
    if prefix:
        head = prefix if prefix.endswith('.') else prefix + '.'
        return {k[len(head):]: v for k, v in file_state.items()
                if k.startswith(head)}
    if set(module_keys) & set(file_state):
        return dict(file_state)
    head = 'backbone.'
    return {(k[len(head):] if k.startswith(head) else k): v
            for k, v in file_state.items()}


def _prefixed(names: Iterable[str], prefix: str) -> List[str]:
    return [f'{prefix}.{n}' if prefix else n for n in names]


def check_pretrained_loaded(model: nn.Module, missing_ok: Iterable[str] = (),
                            unexpected_ok: Iterable[str] = ()) -> int:
    """Check, after ``model.init_weights()``, that every module with a
    ``Pretrained`` ``init_cfg`` holds exactly its checkpoint's tensors.

    Keys and patterns are model keys (``backbone.layers.0.ln1.weight``).
    Raises :class:`LoadMismatchError` listing missing, unexpected,
    mis-shaped and not-loaded tensors; returns the number of tensors
    checked.
    """
    if is_model_wrapper(model):
        model = model.module
    checked = 0
    for name, module, init_cfg in pretrained_modules(model):
        module_state = module.state_dict()
        file_state = _module_view(read_state_dict(init_cfg['checkpoint']),
                                  module_state, init_cfg.get('prefix'))
        report = compare_states(
            dict(zip(_prefixed(module_state, name), module_state.values())),
            dict(zip(_prefixed(file_state, name), file_state.values())),
            missing_ok, unexpected_ok)
        where = f' (prefix {init_cfg["prefix"]!r})' \
            if init_cfg.get('prefix') else ''
        _raise_if_mismatched(
            report, f'Pretrained checkpoint {init_cfg["checkpoint"]!r}'
            f'{where} of module {name or "model"!r}', 'pretrained')
        checked += len(module_state)
    return checked


def check_checkpoint_loaded(model: nn.Module, checkpoint: str,
                            missing_ok: Iterable[str] = (),
                            unexpected_ok: Iterable[str] = ()) -> int:
    """Check that ``model`` holds exactly the tensors of ``checkpoint``
    (a ``load_from`` / resume / test checkpoint, loaded into it).

    A sharded checkpoint directory (FSDP2Strategy) is checked on its
    index: the same keys and whole shapes (its values are loaded in place
    by DCP, shard by shard, and not read a second time here).

    Raises :class:`LoadMismatchError` as :func:`check_pretrained_loaded`;
    returns the number of tensors checked.
    """
    if is_model_wrapper(model):
        model = model.module
    model_state = model.state_dict()
    if osp.isdir(checkpoint):
        report = compare_shapes(model_state, sharded_model_shapes(checkpoint),
                                missing_ok, unexpected_ok)
    else:
        report = compare_states(model_state, read_state_dict(checkpoint),
                                missing_ok, unexpected_ok)
    _raise_if_mismatched(report, f'Checkpoint {checkpoint!r}', 'load_from')
    return len(model_state)


def strict_loading_settings(cfg) -> dict:
    """``DEFAULT_SETTINGS`` updated with the config's ``strict_loading``;
    raises ``ValueError`` naming an unknown setting."""
    given = dict(cfg.get('strict_loading') or {}) if cfg is not None else {}
    unknown = sorted(set(given) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f'Unknown strict_loading settings {unknown}: '
                         f'expected some of {sorted(DEFAULT_SETTINGS)}')
    return {**DEFAULT_SETTINGS, **given}


def build_pretrained_model(cfg: Config, registry=None) -> nn.Module:
    """The model of ``cfg`` with its pretrained weights, read exactly as
    the config loads them: built from ``cfg.model`` in the config's
    default scope, ``init_weights()`` run (the ``init_cfg`` loads), then
    :func:`check_pretrained_loaded` with the config's ``strict_loading``
    patterns (skipped only when ``strict_loading.pretrained`` is False).
    ``registry`` defaults to mmengine's ``MODELS`` (children of the scope's
    registry are searched through the default scope). Returned in eval
    mode, on the CPU.
    """
    from mmengine.registry import MODELS, DefaultScope
    settings = strict_loading_settings(cfg)
    scope = cfg.get('default_scope')
    registry = registry or MODELS
    if scope:
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(cfg.model)
    else:
        model = registry.build(cfg.model)
    model.init_weights()
    if settings['pretrained']:
        check_pretrained_loaded(model, settings['pretrained_missing_ok'],
                                settings['pretrained_unexpected_ok'])
    return model.eval()


@HOOKS.register_module()
class StrictLoadingHook(Hook):
    """Stop a run whose model does not hold exactly its checkpoints.

    ``before_train``: if the run starts from a checkpoint (``load_from``,
    resume), :func:`check_checkpoint_loaded` on it; otherwise
    :func:`check_pretrained_loaded` (the ``init_cfg`` loads, already done by
    the Runner). ``before_test``: :func:`check_checkpoint_loaded` on
    ``load_from`` when set. Settings come from the config's
    ``strict_loading`` (see the module docstring); an automatic resume whose
    file the Runner picks itself is only logged. A sharded checkpoint
    directory is checked on its index (keys and shapes).
    """

    priority = 'VERY_HIGH'

    def _check_checkpoint(self, runner, settings) -> bool:
        load_from = getattr(runner, '_load_from', None)
        if not load_from:
            return False
        if settings['load_from']:
            count = check_checkpoint_loaded(
                runner.model, load_from, settings['load_from_missing_ok'],
                settings['load_from_unexpected_ok'])
            what = ('keys and shapes of the' if osp.isdir(load_from)
                    else 'exactly the')
            print_log(f'StrictLoadingHook: the model holds {what} '
                      f'{count} tensors of {load_from!r}', logger='current')
        return True

    def before_train(self, runner) -> None:
        settings = strict_loading_settings(runner.cfg)
        if self._check_checkpoint(runner, settings):
            return
        if getattr(runner, '_resume', False):
            print_log('StrictLoadingHook: automatic resume, checkpoint not '
                      'checked', logger='current')
            return
        if settings['pretrained']:
            count = check_pretrained_loaded(
                runner.model, settings['pretrained_missing_ok'],
                settings['pretrained_unexpected_ok'])
            print_log(f'StrictLoadingHook: {count} tensors hold exactly '
                      f'their pretrained checkpoints\' values',
                      logger='current')

    def before_test(self, runner) -> None:
        self._check_checkpoint(runner, strict_loading_settings(runner.cfg))


def add_strict_loading_hook(cfg: Config) -> Config:
    """Append ``StrictLoadingHook`` to ``cfg.custom_hooks`` unless it is
    there already; returns ``cfg`` (changed in place). Validates the
    config's ``strict_loading`` settings."""
    strict_loading_settings(cfg)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('StrictLoadingHook', StrictLoadingHook)
               for h in hooks):
        hooks.append(dict(type='StrictLoadingHook'))
    cfg.custom_hooks = hooks
    return cfg
