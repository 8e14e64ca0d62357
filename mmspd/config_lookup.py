"""``mmspd::`` configs: ``_base_ = 'mmspd::domainnet_spd.py'`` in any config.

mmengine resolves ``pkg::path`` bases only for a fixed list of OpenMMLab
packages. Importing this module (``import mmspd`` does; ``custom_imports``
would be too late: bases are read before it) calls :func:`enable`, after
which mmengine's
``Config`` also resolves ``mmspd::REL`` to ``REL`` under mmspd's shipped
configs (:func:`configs_root`). mmspd's own tools import mmspd before they
read a config; with another tool, run it through ``python -m mmspd TOOL
ARGS`` (see ``mmspd/__main__.py``).

Unlike ``mmseg::`` / ``mmpretrain::`` bases, an ``mmspd::`` base does not
get ``_scope_='mmspd'`` on its objects: mmspd has no registry scope of its
own (it registers into mmengine's root registries), so its configs keep
their own ``default_scope`` (``mmpretrain`` or ``mmseg``), exactly as if the
file were a local base.
"""
import os.path as osp
import sys
from typing import Optional, Tuple

from mmengine.config import Config

#: The prefix of an mmspd config path.
PREFIX = 'mmspd::'
#: Marks mmengine's ``Config._get_cfg_path`` once wrapped by :func:`enable`.
_WRAPPED = '_mmspd_wrapped'

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def configs_root() -> str:
    """The folder ``mmspd::`` paths are relative to.

    ``mmspd/.mim/configs`` of the installed package (copies in a wheel,
    a symlink to the repository's ``configs/`` in an editable install), or
    the ``configs/`` beside the package in a source checkout that was never
    installed. Raises ``FileNotFoundError`` when neither exists.
    """
    shipped = osp.join(_PACKAGE_DIR, '.mim', 'configs')
    if osp.isdir(shipped):
        return shipped
    checkout = osp.join(osp.dirname(_PACKAGE_DIR), 'configs')
    if osp.isdir(checkout) and osp.isfile(
            osp.join(osp.dirname(_PACKAGE_DIR), 'setup.py')):
        return checkout
    raise FileNotFoundError(
        f'mmspd has no configs at {shipped!r}: reinstall it (pip install '
        f'mmspd, or pip install -e . in a checkout) so that its configs are '
        f'shipped')


def resolve(cfg_path: str) -> str:
    """The file that ``mmspd::REL`` names: ``configs_root()/REL``.

    Raises ``ValueError`` when ``cfg_path`` does not start with
    ``mmspd::`` or ``REL`` leaves the configs folder, and
    ``FileNotFoundError`` naming the folder when the file does not exist.
    """
    if not cfg_path.startswith(PREFIX):
        raise ValueError(f'{cfg_path!r} is not an mmspd config: expected '
                         f'{PREFIX}<path under configs/>, e.g. '
                         f'{PREFIX}domainnet_spd.py')
    relative = cfg_path[len(PREFIX):]
    root = configs_root()
    path = osp.normpath(osp.join(root, relative))
    if not relative or osp.isabs(relative) or not path.startswith(
            osp.normpath(root) + osp.sep):
        raise ValueError(f'{cfg_path!r} must name a file under mmspd\'s '
                         f'configs folder, e.g. {PREFIX}domainnet_spd.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmspd config {cfg_path!r} does not exist: '
                                f'no file {relative!r} in {root!r}')
    return path


def enable() -> None:
    """Make mmengine's ``Config`` resolve ``mmspd::`` bases (idempotent).

    Wraps ``Config._get_cfg_path``, the one place where mmengine 0.10 turns
    a ``_base_`` entry into a file; every other base goes to mmengine's own
    code unchanged. Raises ``RuntimeError`` when this mmengine has no such
    method (a version whose config loading mmspd does not know).
    """
    original = Config.__dict__.get('_get_cfg_path')
    if original is None:
        raise RuntimeError('This mmengine has no Config._get_cfg_path, so '
                           'mmspd:: configs cannot be enabled; use mmengine '
                           '0.10.x or a path to the config file instead')
    original = original.__func__ if isinstance(original,
                                               staticmethod) else original
    if getattr(original, _WRAPPED, False):
        return

    def _get_cfg_path(cfg_path: str,
                      filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return resolve(cfg_path), None
        return original(cfg_path, filename)

    _get_cfg_path.__doc__ = original.__doc__
    setattr(_get_cfg_path, _WRAPPED, True)
    Config._get_cfg_path = staticmethod(_get_cfg_path)


enable()  # on import, so ``import mmspd`` is all a tool needs


def add_example_projects(tool_file: str) -> Optional[str]:
    """Put the source checkout holding ``tool_file`` (a script under its
    ``tools/``) on ``sys.path`` when it has a ``projects/`` folder, so that
    configs can custom-import the repository's example projects (e.g.
    ``configs/demo``: ``projects.spd_demo``, not part of the package).
    ``python tools/X.py`` puts only ``tools/`` there. Returns the root
    added, or ``None`` (an installed package has no ``projects/``)."""
    folder = osp.dirname(osp.realpath(tool_file))
    while osp.basename(folder) != 'tools':
        parent = osp.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    root = osp.dirname(folder)
    if not osp.isdir(osp.join(root, 'projects')):
        return None
    if root not in sys.path:
        sys.path.append(root)
    return root
