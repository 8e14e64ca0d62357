"""mmspd's optimizers in mmengine's registries, under downstream scopes."""
import contextlib
import importlib
import json
import subprocess
import sys
import uuid

import pytest
import torch.nn as nn
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import OPTIMIZERS, DefaultScope

import mmspd
from mmspd.optim import AdamL2SP, AdamSPD

DOWNSTREAM = ('mmseg', 'mmpretrain', 'mmdet')

_SUBPROCESS_SCRIPT = r'''
import json, sys
from mmengine.registry import OPTIMIZERS
before = sorted(n for n in ('AdamSPD', 'AdamL2SP') if n in OPTIMIZERS.module_dict)
import mmspd
import mmspd.optim
prefixes = %(prefixes)r
def downstream():
    return sorted(m for m in sys.modules if m.split('.')[0] in prefixes)
after_import = downstream()
registered = {
    name: OPTIMIZERS.module_dict.get(name) is getattr(mmspd.optim, name)
    for name in ('AdamSPD', 'AdamL2SP')
}
looked_up = {
    name: OPTIMIZERS.get(name) is getattr(mmspd.optim, name)
    for name in ('AdamSPD', 'AdamL2SP')
}
print(json.dumps(dict(before=before, after_import=after_import,
                      registered=registered, looked_up=looked_up,
                      after_lookup=downstream())))
''' % dict(prefixes=DOWNSTREAM)


def test_import_registers_without_importing_downstream_codebases():
    proc = subprocess.run([sys.executable, '-c', _SUBPROCESS_SCRIPT],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Registration is a side effect of ``import mmspd``, not pre-existing.
    assert result['before'] == []
    assert result['after_import'] == [], (
        f'import mmspd imported downstream codebases: '
        f'{result["after_import"]}')
    assert result['registered'] == {'AdamSPD': True, 'AdamL2SP': True}
    assert result['looked_up'] == {'AdamSPD': True, 'AdamL2SP': True}
    assert result['after_lookup'] == []


def test_registered_in_root_registry_of_this_process():
    assert OPTIMIZERS.module_dict['AdamSPD'] is AdamSPD
    assert OPTIMIZERS.module_dict['AdamL2SP'] is AdamL2SP
    assert mmspd.AdamSPD is AdamSPD and mmspd.AdamL2SP is AdamL2SP


@contextlib.contextmanager
def _default_scope(scope_name):
    """Make ``scope_name`` the current default scope, then restore."""
    saved = DefaultScope._instance_dict.copy()
    name = f'mmspd-test-{scope_name}-{uuid.uuid4().hex}'
    try:
        scope = DefaultScope.get_instance(name, scope_name=scope_name)
        assert DefaultScope.get_current_instance() is scope
        yield scope
    finally:
        DefaultScope._instance_dict.clear()
        DefaultScope._instance_dict.update(saved)


@pytest.fixture(scope='module', params=DOWNSTREAM)
def downstream_scope(request):
    """A downstream codebase's scope name, with its registries populated."""
    scope_name = request.param
    utils = importlib.import_module(f'{scope_name}.utils')
    utils.register_all_modules(init_default_scope=False)
    return scope_name


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP], ids=lambda c: c.__name__)
@pytest.mark.parametrize('lr,weight_decay', [(1e-3, 1.0), (2.5e-4, 0.375)])
def test_build_optim_wrapper_under_downstream_scope(downstream_scope, cls, lr,
                                                    weight_decay):
    model = _model()
    cfg = dict(optimizer=dict(type=cls.__name__, lr=lr,
                              weight_decay=weight_decay))
    with _default_scope(downstream_scope):
        assert DefaultScope.get_current_instance().scope_name == \
            downstream_scope
        wrapper = build_optim_wrapper(model, cfg)
    assert isinstance(wrapper, OptimWrapper)
    assert type(wrapper.optimizer) is cls
    optimizer = wrapper.optimizer
    assert optimizer.defaults['lr'] == lr
    assert optimizer.defaults['weight_decay'] == weight_decay
    assert optimizer.param_groups, 'no parameter groups'
    for group in optimizer.param_groups:
        assert group['lr'] == lr
        assert group['weight_decay'] == weight_decay
    built = [p for g in optimizer.param_groups for p in g['params']]
    assert len(built) == len(list(model.parameters()))
    assert {id(p) for p in built} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize('cls', [AdamSPD, AdamL2SP], ids=lambda c: c.__name__)
def test_downstream_child_registry_falls_back_to_mmspd(downstream_scope, cls):
    registry = importlib.import_module(f'{downstream_scope}.registry')
    child = registry.OPTIMIZERS
    assert child.scope == downstream_scope
    assert cls.__name__ not in child.module_dict  # only in the root
    assert child.get(cls.__name__) is cls


def test_scope_is_restored_after_build(downstream_scope):
    before = DefaultScope.get_current_instance()
    with _default_scope(downstream_scope):
        pass
    assert DefaultScope.get_current_instance() is before
