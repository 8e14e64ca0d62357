"""tools/publish_model.py on a real AdamSPD checkpoint of the tiny LeNet."""
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys

import mmengine
import pytest
import torch
from mmengine.utils import get_git_hash

import mmspd
from mmspd.zoo.publish import path_free, plain_data, publish_checkpoint
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import train
from tests.tool_modules import REPO, load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('publish_model.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A 6-iteration AdamSPD run's checkpoint: optimizer state with anchors,
    message hub, schedulers."""
    root = tmp_path_factory.mktemp('publish')
    data = write_custom_classification_set(str(root / 'data'))
    train(root / 'run', data)
    return osp.join(str(root / 'run'), 'iter_6.pth')


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_keeps_weights_and_plain_meta_only(tool, checkpoint, tmp_path):
    original = torch.load(checkpoint, weights_only=True)
    anchors = [s for s in original['optimizer']['state'].values()
               if 'anchor' in s]
    assert anchors, 'the training checkpoint should hold SPD anchors'
    path = tool.main([checkpoint, str(tmp_path / 'lenet_spd')])

    released = torch.load(path, weights_only=True)
    assert set(released) == {'state_dict', 'meta'}
    assert list(released['state_dict']) == list(original['state_dict'])
    for key, value in original['state_dict'].items():
        assert torch.equal(released['state_dict'][key], value)
    assert released['meta']['iter'] == original['meta']['iter'] == 6
    # the config, with the run's absolute paths (outside the current
    # folder, the root) cut to their last component
    run_dir = osp.dirname(checkpoint)
    data_dir = osp.join(osp.dirname(run_dir), 'data')
    expected_cfg = original['meta']['cfg'].replace(
        repr(data_dir), repr('data')).replace(repr(run_dir), repr('run'))
    assert expected_cfg != original['meta']['cfg']
    assert released['meta']['cfg'] == expected_cfg
    # nothing but the weights and meta: anchors, moments, hub are gone
    assert osp.getsize(path) < osp.getsize(checkpoint) / 2


def test_name_is_the_first_8_hex_digits_of_the_sha256(tool, checkpoint,
                                                      tmp_path):
    path = tool.main([checkpoint, str(tmp_path / 'model')])
    match = re.fullmatch(r'model-([0-9a-f]{8})\.pth', osp.basename(path))
    assert match and _sha256(path).startswith(match.group(1))
    assert osp.dirname(path) == str(tmp_path)
    # OUT with .pth: the same file name, content unchanged
    again = tool.main([checkpoint, str(tmp_path / 'model.pth')])
    assert again == path
    assert sorted(os.listdir(tmp_path)) == [osp.basename(path)]


def test_bad_paths_give_a_clear_error(tool, checkpoint, tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(SystemExit, match=re.escape(missing)):
        tool.main([missing, str(tmp_path / 'out')])
    with pytest.raises(SystemExit, match='folder .*no_such_dir.* does not '
                       'exist'):
        tool.main([checkpoint, str(tmp_path / 'no_such_dir' / 'out')])
    with pytest.raises(SystemExit, match='names a folder'):
        tool.main([checkpoint, str(tmp_path)])
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
        publish_checkpoint(str(tmp_path), str(tmp_path / 'out'))


def test_non_checkpoints_are_refused_by_name(tmp_path):
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='notes.pth.*not a readable'):
        publish_checkpoint(str(text), str(tmp_path / 'out'))
    no_weights = str(tmp_path / 'no_weights.pth')
    torch.save({'meta': {}, 'optimizer': {}}, no_weights)
    with pytest.raises(ValueError, match="no state_dict.*'optimizer'"):
        publish_checkpoint(no_weights, str(tmp_path / 'out'))
    # a pickle that would call code is refused, never loaded unsafely
    code = str(tmp_path / 'code.pth')
    torch.save({'state_dict': {}, 'hook': os.system}, code)
    with pytest.raises(ValueError, match='code.pth.*weights_only=True'):
        publish_checkpoint(code, str(tmp_path / 'out'))
    assert sorted(os.listdir(tmp_path)) == ['code.pth', 'no_weights.pth',
                                            'notes.pth']


def test_a_bare_state_dict_is_published_as_weights(tmp_path):
    bare = str(tmp_path / 'bare.pth')
    torch.save({'w': torch.ones(2)}, bare)
    path, dropped = publish_checkpoint(bare, str(tmp_path / 'w'))
    released = torch.load(path, weights_only=True)
    assert set(released) == {'state_dict', 'meta'} and dropped == []
    assert released['meta'] == {'mmspd_version': mmspd.__version__}
    assert torch.equal(released['state_dict']['w'], torch.ones(2))


def test_plain_data_names_what_it_leaves_out():
    kept, dropped = plain_data({
        'epoch': 3, 'classes': ('a', 'b'), 'time': None,
        'nested': {'ok': 1.5, 'tensor': torch.zeros(1)}, 7: 'int key'})
    assert kept == {'epoch': 3, 'classes': ['a', 'b'], 'time': None,
                    'nested': {'ok': 1.5}}
    assert dropped == ['meta.nested.tensor (Tensor)', 'meta[7]']


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def test_meta_records_versions_commit_and_metrics(tool, checkpoint,
                                                  tmp_path):
    results = tmp_path / 'robustness.json'
    results.write_text(json.dumps({
        'id': 'clean', 'ood': ['fog'],
        'metrics': {'clean/accuracy/top1': 91.5, 'fog/accuracy/top1': 80}}))
    path = tool.main([checkpoint, str(tmp_path / 'm'), '--results',
                      str(results)])
    original = torch.load(checkpoint, weights_only=True)['meta']
    meta = torch.load(path, weights_only=True)['meta']
    assert meta['mmspd_version'] == mmspd.__version__
    assert meta['mmengine_version'] == mmengine.__version__
    # mmengine appends the git commit of the folder training ran from
    assert original['mmengine_version'] == (mmengine.__version__ +
                                            get_git_hash())
    assert meta['commit'] == get_git_hash()
    assert meta['metrics'] == {'clean/accuracy/top1': 91.5,
                               'fog/accuracy/top1': 80.0}
    assert meta['seed'] == original['seed']
    # the run's time stamps are what made two publications differ
    assert {'time', 'experiment_name'} <= set(original)
    assert not {'time', 'experiment_name'} & set(meta)


def test_bad_results_file_is_named(tool, checkpoint, tmp_path):
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(SystemExit, match=re.escape(missing)):
        tool.main([checkpoint, str(tmp_path / 'm'), '--results', missing])
    empty = tmp_path / 'empty.json'
    empty.write_text('{"metrics": {}}')
    with pytest.raises(SystemExit, match='empty.json.*no metrics'):
        tool.main([checkpoint, str(tmp_path / 'm'), '--results',
                   str(empty)])
    assert sorted(os.listdir(tmp_path)) == ['empty.json']


def test_publishing_again_in_other_processes_gives_the_same_bytes(
        checkpoint, tmp_path):
    """Two runs of the tool (two processes, so two temporary names) and a
    release published again: one file content, one name."""
    paths = []
    for folder in ('a', 'b'):
        os.makedirs(tmp_path / folder)
        out = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'publish_model.py'),
             checkpoint, str(tmp_path / folder / 'lenet')],
            cwd=REPO, capture_output=True, text=True, check=True)
        paths.append(out.stdout.strip().splitlines()[-1])
    assert osp.basename(paths[0]) == osp.basename(paths[1])
    with open(paths[0], 'rb') as f, open(paths[1], 'rb') as g:
        assert f.read() == g.read()
    again, dropped = publish_checkpoint(paths[0], str(tmp_path / 'again'))
    assert dropped == []
    assert _sha256(again) == _sha256(paths[0])


def test_no_absolute_path_in_the_release(tool, checkpoint, tmp_path):
    original = torch.load(checkpoint, weights_only=True)['meta']
    assert re.findall(r"'(/[^']*)'", original['cfg'])  # it has some
    path = tool.main([checkpoint, str(tmp_path / 'm')])
    with open(path, 'rb') as f:
        data = f.read()  # torch.save stores records uncompressed
    for machine_path in (osp.dirname(checkpoint), REPO, os.getcwd(),
                         osp.expanduser('~')):
        assert machine_path.encode() not in data, machine_path
    meta = torch.load(path, weights_only=True)['meta']
    assert not [s for s in _strings(meta) if osp.isabs(s)]
    assert not re.findall(r"'(/[^']*)'", meta['cfg'])


def test_path_free_rules(tmp_path):
    root = str(tmp_path / 'repo')
    assert path_free(osp.join(root, 'work_dirs', 'x'), root) == \
        'work_dirs/x'
    assert path_free(root, root) == '.'
    assert path_free(str(tmp_path / 'data' / 'imagenet'), root) == \
        'imagenet'
    # not a machine path: relative, or no such top folder here
    assert path_free('data/ade', root) == 'data/ade'
    assert path_free('/m/01g317', root) == '/m/01g317'
    # a root that is only a prefix of the name is not the root
    assert path_free(root + '2/x', root) == 'x'


def _train_run(root):
    """tools/train.py on the tiny LeNet, data and work dir under ``root``:
    a separate process per run, as on two machines."""
    data = write_custom_classification_set(osp.join(root, 'data'))
    subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         osp.join(REPO, 'tests', 'data', 'configs', 'tiny_lenet_spd.py'),
         '--work-dir', osp.join(root, 'run'), '--cfg-options',
         f'train_dataloader.dataset.data_root={data}',
         f'val_dataloader.dataset.data_root={data}', 'log_level=WARNING'],
        cwd=REPO, capture_output=True, text=True, check=True)
    return osp.join(root, 'run', 'iter_6.pth')


@pytest.mark.slow
def test_the_same_run_in_two_places_publishes_to_the_same_file(tmp_path):
    """Same config, seed and data, trained in two folders at two times:
    the training checkpoints differ (paths, time stamps), the releases made
    from each folder do not."""
    roots = [str(tmp_path / 'machine_a'), str(tmp_path / 'machine_b')]
    checkpoints = [_train_run(r) for r in roots]
    metas = [torch.load(c, weights_only=True)['meta'] for c in checkpoints]
    assert metas[0]['cfg'] != metas[1]['cfg']  # their absolute paths
    releases = []
    for root, ckpt in zip(roots, checkpoints):
        path, _ = publish_checkpoint(ckpt, osp.join(root, 'lenet'), root)
        releases.append(path)
    assert osp.basename(releases[0]) == osp.basename(releases[1])
    with open(releases[0], 'rb') as f, open(releases[1], 'rb') as g:
        assert f.read() == g.read()
    cfg = re.sub(r'\s', '', torch.load(releases[0],
                                       weights_only=True)['meta']['cfg'])
    assert "data_root='data'" in cfg and "work_dir='run'" in cfg
