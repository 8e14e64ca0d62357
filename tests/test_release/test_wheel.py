"""The release artefacts: ``python -m build`` gives an sdist and a wheel,
the wheel installs into a fresh virtual environment, and there ``import
mmspd``, the kernel's clear fallback, ``mmspd::`` configs and the shipped
tools work, with mmspd coming from the wheel alone. The demo (``make
demo``: ``projects/spd_demo``, ``configs/demo``, ``tools/demo.py``) is an
example of the source checkout and is not in either.

The wheel is built with ``MMSPD_WITH_OPS=0`` (no compiled kernel): compiling
the kernel once more would take about 2.5 CPU minutes of CI's time, and
``make install`` already compiles it from the same ``setup.py`` and checks
that it imports. So here the fallback is what is checked: AdamSPD's fused
step warns once, naming the missing kernel, and gives foreach's numbers.

The fresh environment reuses the pinned stack of the running interpreter
(torch, mmengine, mmpretrain, ... : building it again would take most of
CI's time) through a ``.pth`` file naming a folder of links to that stack's
packages, mmspd's own editable install left out. ``pip install`` runs with
``--no-index``, so the wheel's requirements are resolved against that stack
and nothing else. The build works on a copy of the checkout: building in
place would replace the editable install's ``mmspd/.mim`` links by copies.
About 1-2 minutes on 2 cores.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

import mmspd
from tests.dataset_files import write_custom_classification_set
from tests.tool_modules import REPO

pytestmark = pytest.mark.slow

#: What is not copied for the build (outputs, environments, caches).
NOT_COPIED = ('.git', '.venv', 'build', 'dist', 'work_dirs', '.mim',
              '__pycache__', '.pytest_cache', '*.egg-info', '*.so', '*.pyc')

CHECKS = r'''
import importlib.metadata as md
import json
import os.path as osp
import sys
import warnings

import torch

import mmspd
from mmengine.config import Config
from mmspd import config_lookup
from mmspd.optim import AdamSPD, _native

user_config = sys.argv[1]
out = dict(file=mmspd.__file__, version=mmspd.__version__)
meta = md.metadata('mmspd')
out['metadata'] = {key: meta.get_all(key) for key in (
    'Version', 'Summary', 'License', 'License-File', 'Classifier',
    'Requires-Python', 'Project-URL', 'Description-Content-Type',
    'Requires-Dist')}
out['description'] = meta.get_payload() or meta.get('Description') or ''
out['kernel'] = (_native.extension.__file__ if _native.extension is not None
                 else _native.LOAD_ERROR)
# fused steps (torch-op fallback without the kernel) against foreach
torch.manual_seed(0)
start, grad = torch.randn(64, 33), torch.randn(64, 33)
results, caught = [], []
for options in (dict(fused=True), dict(foreach=True)):
    p = torch.nn.Parameter(start.clone())
    opt = AdamSPD([p], lr=0.1, weight_decay=1.0, **options)
    for _ in range(3):
        p.grad = grad.clone()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter('always')
            opt.step()
        caught += [f'{w.category.__name__}: {w.message}' for w in seen]
    results.append(p.detach())
out['fused_matches_foreach'] = bool(torch.allclose(*results, atol=1e-6))
out['warnings'] = caught
root = config_lookup.configs_root()
out['configs_root'] = root
mim = osp.dirname(root)
out['mim'] = sorted(__import__('os').listdir(mim))
out['mim_links'] = [p for p in (mim, root, osp.join(mim, 'tools'))
                    if osp.islink(p)]
cfg = Config.fromfile(user_config)
out['optimizer'] = cfg.optim_wrapper.optimizer.type
out['data_root'] = cfg.train_dataloader.dataset.data_root
print('CHECKS ' + json.dumps(out))
'''

#: A user's config outside the repository that inherits a shipped config
#: (the DomainNet AdamSPD recipe) and sets its own data folder.
USER_CONFIG = '''\
_base_ = 'mmspd::domainnet_spd.py'
data_root = {data!r}
train_dataloader = dict(dataset=dict(data_root=data_root))
'''
#: A user's small config (LeNet-5 fine-tuned with AdamSPD) for the shipped
#: train and publish tools: the tests' tiny LeNet config, copied outside the
#: repository.
TRAIN_CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                        'tiny_lenet_spd.py')
#: The demo's files: none is in the sdist's or the wheel's package.
DEMO = ('mmspd/demo/', 'mmspd/.mim/configs/demo/', 'mmspd/.mim/tools/demo.py',
        'projects/')


#: The environment of commands run with the fresh venv's python: without
#: PYTHONPATH, which could lead it to the checkout.
VENV_ENV = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f'{cmd} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n'
                             f'{result.stderr[-3000:]}')
    return result.stdout


def _stack_folders():
    """Where this interpreter's installed packages are: the PYTHONPATH
    folders (but the checkout), then its site-packages."""
    folders = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
               if p and osp.isdir(p)
               and osp.realpath(p) != osp.realpath(REPO)]
    return folders + [sysconfig.get_paths()['purelib']]


def _stack_links(folder: str) -> str:
    """A folder of links to this interpreter's installed packages, minus
    mmspd (its editable install and its metadata); the first folder that
    has a name wins, as on ``sys.path``."""
    os.makedirs(folder)
    for site in _stack_folders():
        for name in sorted(os.listdir(site)):
            if (name.startswith(('mmspd', '__editable__', '_mmspd'))
                    or name.endswith('.pth')
                    or osp.lexists(osp.join(folder, name))):
                continue
            os.symlink(osp.join(site, name), osp.join(folder, name))
    return folder


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """(sdist, wheel) built from a copy of the checkout."""
    root = tmp_path_factory.mktemp('release')
    source = str(root / 'source')
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(*NOT_COPIED))
    dist = str(root / 'dist')
    _run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', dist,
          source], cwd=str(root), env=dict(os.environ, MMSPD_WITH_OPS='0'))
    names = sorted(os.listdir(dist))
    sdists = [n for n in names if n.endswith('.tar.gz')]
    wheels = [n for n in names if n.endswith('.whl')]
    assert len(sdists) == len(wheels) == 1, names
    return osp.join(dist, sdists[0]), osp.join(dist, wheels[0])


@pytest.fixture(scope='module')
def venv(built, tmp_path_factory):
    """A fresh venv with the stack linked in and the wheel installed:
    (its python, its site-packages, pip's output)."""
    root = tmp_path_factory.mktemp('venv')
    env_dir = str(root / 'env')
    # no pip of its own: ensurepip would bring an old setuptools that hides
    # the stack's (torch needs setuptools>=77); pip comes from the stack
    _run([sys.executable, '-m', 'venv', '--without-pip', env_dir])
    python = osp.join(env_dir, 'bin', 'python')
    site = _run([python, '-c', 'import sysconfig; '
                 'print(sysconfig.get_paths()["purelib"])'],
                env=VENV_ENV).strip()
    # before the stack is linked in: mmspd is not importable
    _run([python, '-c', 'import importlib.util as u; '
          'assert u.find_spec("mmspd") is None'], cwd=str(root),
         env=VENV_ENV)
    with open(osp.join(site, '_pinned_stack.pth'), 'w') as f:
        f.write(_stack_links(str(root / 'stack')) + '\n')
    probe = subprocess.run([python, '-c', 'import mmspd'], cwd=str(root),
                           capture_output=True, text=True, env=VENV_ENV)
    assert probe.returncode != 0, 'the linked stack must not provide mmspd'
    pip_log = _run([python, '-m', 'pip', 'install', '--no-index',
                    '--no-cache-dir', built[1]], cwd=str(root),
                   env=VENV_ENV)
    return python, site, pip_log


def test_sdist_holds_the_sources_and_the_shipped_configs(built):
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for name in ('setup.py', 'pyproject.toml', 'README.md', 'LICENSE',
                 'CHANGELOG.md', 'requirements/stack.txt',
                 'mmspd/optim/csrc/adam_spd_cpu.cpp',
                 'mmspd/.mim/configs/domainnet_spd.py',
                 'mmspd/.mim/tools/train.py', 'mmspd/.mim/model-index.yml'):
        assert name in names, name
    assert not [n for n in names if n.startswith(DEMO)]


def test_wheel_ships_configs_tools_and_licence(built):
    _, wheel = built
    assert osp.basename(wheel).startswith(f'mmspd-{mmspd.__version__}-')
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    configs = [n for n in names if n.startswith('mmspd/.mim/configs/')]
    shipped = [osp.relpath(osp.join(d, f), REPO).replace(os.sep, '/')
               for d, _, files in os.walk(osp.join(REPO, 'configs'))
               for f in files if f.endswith(('.py', '.yml'))]
    shipped = [s for s in shipped if not s.startswith('configs/demo/')]
    assert shipped and sorted(configs) == sorted('mmspd/.mim/' + s
                                                 for s in shipped)
    # the demo is not in the wheel: its package, configs and tool
    assert osp.isdir(osp.join(REPO, 'configs', 'demo'))
    assert not [n for n in names if n.startswith(DEMO)]
    for name in ('mmspd/.mim/tools/train.py', 'mmspd/.mim/tools/test.py',
                 'mmspd/.mim/tools/publish_model.py',
                 'mmspd/.mim/tools/misc/gen_model_index.py',
                 'mmspd/.mim/model-index.yml', 'mmspd/__main__.py',
                 'mmspd/config_lookup.py'):
        assert name in names, name
    # built without the kernel (MMSPD_WITH_OPS=0), its source in the sdist
    assert not [n for n in names if n.endswith(('.so', '.pyd'))]
    assert f'mmspd-{mmspd.__version__}.dist-info/licenses/LICENSE' in names


def test_the_wheel_works_in_a_fresh_venv(venv, tmp_path):
    python, site, pip_log = venv
    # the wheel's requirements are met by the pinned stack: pip (no index)
    # installed mmspd and nothing else
    assert pip_log.strip().splitlines()[-1] == \
        f'Successfully installed mmspd-{mmspd.__version__}'
    data = write_custom_classification_set(str(tmp_path / 'data'))
    user_config = tmp_path / 'my_domainnet_spd.py'
    user_config.write_text(USER_CONFIG.format(data=data))
    script = tmp_path / 'checks.py'
    script.write_text(CHECKS)
    out = _run([python, str(script), str(user_config)], cwd=str(tmp_path),
               env=VENV_ENV)
    checks = json.loads(out.split('CHECKS ', 1)[1])

    # mmspd comes from the wheel, nowhere else
    assert checks['file'] == osp.join(site, 'mmspd', '__init__.py')
    assert checks['version'] == mmspd.__version__
    # no compiled kernel in this wheel: the clear fallback, once
    assert checks['kernel'].startswith('ImportError')
    fallback = [w for w in checks['warnings']
                if 'mmspd.optim._adam_spd_cpu is not available' in w]
    assert len(fallback) == 1 and fallback[0].startswith('RuntimeWarning')
    assert 'falls back to torch ops' in fallback[0]
    assert '--no-build-isolation' in fallback[0]
    assert checks['fused_matches_foreach']
    # the registry metadata
    meta = checks['metadata']
    assert meta['Version'] == [mmspd.__version__]
    assert meta['License'] == ['Apache-2.0']
    assert meta['License-File'] == ['LICENSE']
    assert 'Programming Language :: Python :: 3.11' in meta['Classifier']
    assert meta['Requires-Python'] == ['>=3.8']
    assert meta['Description-Content-Type'] == ['text/markdown']
    assert any(url.startswith('Paper, https://arxiv.org/abs/2411.01713')
               for url in meta['Project-URL'])
    assert checks['description'].startswith('# mmspd')
    # shipped configs are copies inside the installed package
    assert checks['configs_root'] == osp.join(site, 'mmspd', '.mim',
                                              'configs')
    assert checks['mim'] == ['configs', 'model-index.yml', 'tools']
    assert checks['mim_links'] == []
    assert checks['optimizer'] == 'AdamSPD'
    assert checks['data_root'] == data

    # the shipped train tool trains a user's AdamSPD config
    tools = osp.join(site, 'mmspd', '.mim', 'tools')
    assert not osp.exists(osp.join(tools, 'demo.py'))
    train_config = tmp_path / 'my_lenet_spd.py'
    shutil.copyfile(TRAIN_CONFIG, train_config)
    work_dir = str(tmp_path / 'run')
    _run([python, osp.join(tools, 'train.py'), str(train_config),
          '--work-dir', work_dir, '--cfg-options', 'log_level=WARNING',
          f'train_dataloader.dataset.data_root={data}',
          f'val_dataloader.dataset.data_root={data}'],
         cwd=str(tmp_path), env=VENV_ENV)
    checkpoint = osp.join(work_dir, 'iter_6.pth')
    assert osp.isfile(checkpoint)
    # ... and the shipped publish tool makes a release of it
    out = _run([python, osp.join(tools, 'publish_model.py'), checkpoint,
                str(tmp_path / 'lenet'), '--root', str(tmp_path)],
               cwd=str(tmp_path), env=VENV_ENV)
    release = out.strip().splitlines()[-1]
    meta_out = _run([python, '-c', (
        'import sys, torch; m = torch.load(sys.argv[1], weights_only=True)'
        '["meta"]; print(m["mmspd_version"], "work_dir=\'run\'" in m["cfg"'
        '].replace(" ", ""), str(sys.argv[2]) in m["cfg"])'), release,
        str(tmp_path)], cwd=str(tmp_path), env=VENV_ENV)
    assert meta_out.split() == [mmspd.__version__, 'True', 'False']
