"""The model zoo's committed releases (``checkpoints/demo``): named after
their content, free of machine paths, carrying the mmspd version, and
exactly what publishing them again gives."""
import ast
import glob
import os.path as osp
import re

import pytest
import torch
import yaml

from mmspd.zoo.publish import publish_checkpoint, sha256_of
from tests.tool_modules import REPO

RELEASES = sorted(glob.glob(osp.join(REPO, 'checkpoints', 'demo', '*.pth')))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def test_the_metafile_names_exactly_the_committed_releases():
    with open(osp.join(REPO, 'configs', 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    local = sorted(m['Weights'] for m in models if '://' not in m['Weights'])
    assert local == sorted(osp.relpath(p, REPO) for p in RELEASES)
    assert RELEASES


@pytest.mark.parametrize('path', RELEASES, ids=osp.basename)
def test_release_is_path_free_versioned_and_reproducible(path, tmp_path):
    stem, digest = re.fullmatch(r'(.+)-([0-9a-f]{8})\.pth',
                                osp.basename(path)).groups()
    assert sha256_of(path).startswith(digest)
    release = torch.load(path, weights_only=True)
    assert set(release) == {'state_dict', 'meta'}
    meta = release['meta']
    assert re.fullmatch(r'\d+\.\d+\.\d+', meta['mmspd_version'])
    assert re.fullmatch(r'[0-9a-f]{40}|unknown', meta['commit'])
    assert re.fullmatch(r'\d+\.\d+\.\d+', meta['mmengine_version'])
    assert not {'time', 'experiment_name'} & set(meta)
    # no machine path: not in any meta string, not in any config literal
    assert not [s for s in _strings(meta) if osp.isabs(s)]
    literals = [n.value for n in ast.walk(ast.parse(meta['cfg']))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert literals and not [s for s in literals if osp.isabs(s)]
    with open(path, 'rb') as f:
        data = f.read()
    for machine in (REPO, '/home/', '/tmp/', '/root/', '/work/'):
        assert machine.encode() not in data, machine
    # publishing the release again changes nothing: it is in release form
    again, dropped = publish_checkpoint(path, str(tmp_path / stem), REPO)
    assert dropped == []
    assert osp.basename(again) == osp.basename(path)
    with open(again, 'rb') as f:
        assert f.read() == data
