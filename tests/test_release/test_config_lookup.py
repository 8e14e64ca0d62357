"""``mmspd::`` configs: a user's config outside the repository inherits
mmspd's shipped configs once mmspd is imported."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

import mmspd  # noqa: F401  (enables mmspd:: configs)
from mmspd import config_lookup
from tests.tool_modules import REPO

USER_CONFIG = '''\
_base_ = 'mmspd::domainnet_spd.py'
data_root = '/datasets/domainnet'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
'''
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _scopes(value, found):
    if isinstance(value, dict):
        if '_scope_' in value:
            found.add(value['_scope_'])
        for v in value.values():
            _scopes(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _scopes(v, found)
    return found


def test_a_user_config_inherits_an_mmspd_config_and_overrides_data(
        tmp_path):
    user = tmp_path / 'my_project' / 'my_domainnet_spd.py'
    user.parent.mkdir()
    user.write_text(USER_CONFIG)
    cfg = Config.fromfile(str(user))
    shipped = Config.fromfile(osp.join(REPO, 'configs', 'domainnet_spd.py'))
    for loader in LOADERS:
        assert cfg[loader]['dataset']['data_root'] == '/datasets/domainnet'
        assert shipped[loader]['dataset']['data_root'] == 'data/domainnet'
    # everything else is the shipped config, as if it were a local base:
    # mmspd has no registry scope, so no _scope_='mmspd' is added
    mine, theirs = cfg.to_dict(), shipped.to_dict()
    for loader in LOADERS:
        mine[loader]['dataset'].pop('data_root')
        theirs[loader]['dataset'].pop('data_root')
    mine.pop('data_root'), theirs.pop('data_root')
    assert mine == theirs
    assert 'mmspd' not in _scopes(mine, set())
    assert cfg.optim_wrapper.optimizer.type == 'AdamSPD'


def test_paths_resolve_under_the_shipped_configs():
    path = config_lookup.resolve('mmspd::demo/lenet5_digits59_spd.py')
    root = config_lookup.configs_root()
    assert path == osp.join(root, 'demo', 'lenet5_digits59_spd.py')
    assert osp.isfile(path)
    # in this checkout (pip install -e .) .mim/configs is the repository's
    assert osp.realpath(root) == osp.realpath(osp.join(REPO, 'configs'))


def test_bad_mmspd_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match="'mmspd::no_such.py' does not exist"):
        config_lookup.resolve('mmspd::no_such.py')
    with pytest.raises(ValueError, match='under mmspd.s configs folder'):
        config_lookup.resolve('mmspd::../setup.py')
    with pytest.raises(ValueError, match='under mmspd.s configs folder'):
        config_lookup.resolve('mmspd::')
    with pytest.raises(ValueError, match="'mmseg::x.py' is not an mmspd"):
        config_lookup.resolve('mmseg::x.py')
    user = tmp_path / 'cfg.py'
    user.write_text("_base_ = 'mmspd::domainnet_spd_typo.py'\n")
    with pytest.raises(FileNotFoundError, match='domainnet_spd_typo.py'):
        Config.fromfile(str(user))


def test_enable_is_idempotent(tmp_path):
    config_lookup.enable()
    config_lookup.enable()
    wrapped = Config.__dict__['_get_cfg_path'].__func__
    assert getattr(wrapped, config_lookup._WRAPPED)
    user = tmp_path / 'cfg.py'
    user.write_text("_base_ = 'mmspd::demo/lenet5_digits59_spd.py'\n")
    cfg = Config.fromfile(str(user), import_custom_modules=False)
    assert cfg.optim_wrapper.optimizer.type == 'AdamSPD'


SCRIPT = '''\
import sys
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1], import_custom_modules=False)
print('optimizer:', cfg.optim_wrapper.optimizer.type)
'''


def test_other_tools_run_through_python_m_mmspd(tmp_path):
    """A tool that does not import mmspd cannot read the user config; run
    through ``python -m mmspd`` it can (as documented)."""
    script = tmp_path / 'their_tool.py'
    script.write_text(SCRIPT)
    user = tmp_path / 'cfg.py'
    user.write_text("_base_ = 'mmspd::demo/lenet5_digits59_spd.py'\n")
    plain = subprocess.run([sys.executable, str(script), str(user)],
                           cwd=str(tmp_path), capture_output=True, text=True)
    assert plain.returncode != 0
    assert 'mmspd' in plain.stderr
    wrapped = subprocess.run(
        [sys.executable, '-m', 'mmspd', str(script), str(user)],
        cwd=str(tmp_path), capture_output=True, text=True)
    assert wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout.strip() == 'optimizer: AdamSPD'
    missing = subprocess.run(
        [sys.executable, '-m', 'mmspd', str(tmp_path / 'nope.py')],
        cwd=str(tmp_path), capture_output=True, text=True)
    assert missing.returncode != 0
    assert "script '" in missing.stderr and 'nope.py' in missing.stderr


def test_example_projects_are_found_from_a_source_checkout(tmp_path,
                                                           monkeypatch):
    from mmspd.config_lookup import add_example_projects
    checkout = tmp_path / 'checkout'
    (checkout / 'tools' / 'analysis_tools').mkdir(parents=True)
    tool = checkout / 'tools' / 'analysis_tools' / 'x.py'
    tool.write_text('')
    monkeypatch.setattr(sys, 'path', list(sys.path))
    assert add_example_projects(str(tool)) is None  # no projects/ folder
    (checkout / 'projects').mkdir()
    assert add_example_projects(str(tool)) == osp.realpath(checkout)
    assert sys.path.count(osp.realpath(checkout)) == 1
    assert add_example_projects(str(tool)) == osp.realpath(checkout)
    assert sys.path.count(osp.realpath(checkout)) == 1
    assert add_example_projects(str(tmp_path / 'elsewhere.py')) is None
