"""``SPDOptimWrapperConstructor``: mmengine's default constructor, SPD-aware.

It keeps every ``paramwise_cfg`` rule of
:class:`mmengine.optim.DefaultOptimWrapperConstructor` (``custom_keys`` with
``lr_mult``/``decay_mult``, ``norm_decay_mult``, ``bias_decay_mult``,
``flat_decay_mult``, ``bypass_duplicate``, ...) and adds three things:

* any other key of a ``custom_keys`` entry that is a parameter-group option
  of the optimizer (for AdamSPD: ``anchor``, ``betas``, ``eps``, ``amsgrad``)
  is copied into the groups it matches, e.g.
  ``custom_keys={'lora_': dict(anchor='zero')}``; an unknown key is a
  ``ValueError`` that names it (upstream would pass it on silently);
* the per-parameter groups upstream builds are merged into one group per
  distinct set of options (same maths, far fewer groups: the multi-tensor
  step works on whole groups);
* one compact table of the groups it built is logged.

Parameters reachable twice (a module shared by two parents, tied weights)
are treated as upstream treats them: a ``ValueError`` naming them unless
``paramwise_cfg.bypass_duplicate=True``, in which case the first occurrence
(in ``add_params`` order) decides the parameter's options and later ones are
skipped. Merging never hides a duplicate.

Since ``weight_decay`` is SPD's lambda, ``decay_mult`` scales lambda:
``custom_keys={'head': dict(decay_mult=0.)}`` means no SPD on the head.
It serves ``AdamL2SP`` and plain torch optimizers the same way.
"""
import inspect
from typing import Any, Dict, List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)

from .text_table import format_columns

#: Keys of a ``custom_keys`` entry that mmengine itself interprets.
MULTIPLIER_KEYS = ('lr_mult', 'decay_mult')


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def merge_param_groups(groups: List[dict],
                       defaults: Dict[str, Any]) -> List[dict]:
    """Merge groups whose effective options are equal.

    A group's effective options are ``defaults`` (what the optimizer would
    fill in) updated with its own keys, ``params`` excluded. Order is kept: a
    merged group sits where its first member was, and its parameters keep
    their relative order.
    """
    merged: Dict[Any, dict] = {}
    for group in groups:
        options = {k: v for k, v in group.items() if k != 'params'}
        key = _hashable(dict(defaults, **options))
        if key in merged:
            merged[key]['params'].extend(group['params'])
        else:
            merged[key] = dict(options, params=list(group['params']))
    return list(merged.values())


def format_group_table(optimizer) -> str:
    """One line per parameter group: count, numel, lr, lambda, anchor, and
    ``decoupled_decay`` when a group sets one (AdamSPD / AdamL2SP)."""
    groups = optimizer.param_groups
    decoupled = any(g.get('decoupled_decay') for g in groups)
    header = ('group', 'tensors', 'numel', 'lr', 'weight_decay', 'anchor')
    rows = [header + (('decoupled_decay', ) if decoupled else ())]
    for i, group in enumerate(groups):
        row = (str(i), str(len(group['params'])),
               str(sum(p.numel() for p in group['params'])),
               f'{group["lr"]:.4g}',
               f'{group.get("weight_decay", 0):.4g}',
               str(group.get('anchor', '-')))
        if decoupled:
            row += (f'{group.get("decoupled_decay", 0):.4g}', )
        rows.append(row)
    return format_columns(rows)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SPDOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Build an optimizer wrapper with per-group SPD options.

    Config example::

        optim_wrapper = dict(
            constructor='SPDOptimWrapperConstructor',
            optimizer=dict(type='AdamSPD', lr=2e-5, weight_decay=1.0),
            paramwise_cfg=dict(custom_keys={
                'head': dict(decay_mult=0.),        # no SPD on the new head
                'lora_': dict(anchor='zero'),       # PEFT: decay |dW|
            }))
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        optimizer_cls = self._optimizer_class()
        first_arg, group_defaults = self._group_defaults(optimizer_cls)
        self._check_custom_keys(set(group_defaults))

        params: List[dict] = []
        if self.paramwise_cfg:
            self.add_params(params, model)
            self._check_duplicates(params, model)
            for group in params:
                for key in MULTIPLIER_KEYS:
                    group.pop(key, None)
            params = merge_param_groups(params, group_defaults)
        else:
            params = list(model.parameters())  # upstream: one group
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg[first_arg] = params
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        print_log(
            f'{type(self).__name__} built {len(optimizer.param_groups)} '
            f'parameter group(s) for {type(optimizer).__name__}:\n'
            f'{format_group_table(optimizer)}',
            logger='current')
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))

    def _check_duplicates(self, groups: List[dict], model: nn.Module) -> None:
        """Raise, as torch does for upstream's per-parameter groups, when a
        parameter is in more than one group (only possible without
        ``bypass_duplicate``: then ``add_params`` skips repeats)."""
        seen, repeated = set(), {}
        for group in groups:
            for param in group['params']:
                if id(param) in seen:
                    repeated[id(param)] = param
                seen.add(id(param))
        if not repeated:
            return
        names: Dict[int, List[str]] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(param), []).append(name)
        shared = ', '.join(' = '.join(names.get(key, ['<unnamed>']))
                           for key in repeated)
        raise ValueError(
            f'some parameters appear in more than one parameter group: '
            f'{shared} (shared modules or tied weights); set '
            f'paramwise_cfg.bypass_duplicate=True to give each the options '
            f'of its first occurrence, as mmengine does')

    def _optimizer_class(self) -> type:
        optimizer_type = self.optimizer_cfg['type']
        if not isinstance(optimizer_type, str):
            return optimizer_type
        with OPTIMIZERS.switch_scope_and_registry(None) as registry:
            optimizer_cls = registry.get(optimizer_type)
        if optimizer_cls is None:
            raise ValueError(f'Unknown optimizer type {optimizer_type!r}: '
                             f'not found in the OPTIMIZERS registry (did '
                             f'the config import the module defining it?)')
        return optimizer_cls

    def _group_defaults(self, optimizer_cls: type):
        """(name of the params argument, {group option: configured value}).

        Options are the optimizer's constructor arguments after the first;
        values come from the optimizer config, else the signature default.
        """
        parameters = list(inspect.signature(optimizer_cls).parameters.values())
        defaults = {
            p.name: self.optimizer_cfg.get(p.name, p.default)
            for p in parameters[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        self._accepts_any_option = any(p.kind == p.VAR_KEYWORD
                                       for p in parameters)
        return parameters[0].name, defaults

    def _check_custom_keys(self, group_options: set) -> None:
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        if self._accepts_any_option:  # **kwargs: options cannot be known
            return
        allowed = set(MULTIPLIER_KEYS) | group_options
        for pattern, options in custom_keys.items():
            if not isinstance(options, dict):
                raise TypeError(f'custom_keys[{pattern!r}] must be a dict, '
                                f'got {options!r}')
            for key in options:
                if key not in allowed:
                    raise ValueError(
                        f'Unknown option {key!r} in custom_keys[{pattern!r}]:'
                        f' expected one of {sorted(allowed)}')
