"""tools/publish_model.py on a real AdamSPD checkpoint of the tiny LeNet."""
import hashlib
import os
import os.path as osp
import re

import pytest
import torch

from mmspd.zoo.publish import plain_data, publish_checkpoint
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import train
from tests.tool_modules import load_tool


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
    assert released['meta']['cfg'] == original['meta']['cfg']
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
    assert set(released) == {'state_dict'} and dropped == []
    assert torch.equal(released['state_dict']['w'], torch.ones(2))


def test_plain_data_names_what_it_leaves_out():
    kept, dropped = plain_data({
        'epoch': 3, 'classes': ('a', 'b'), 'time': None,
        'nested': {'ok': 1.5, 'tensor': torch.zeros(1)}, 7: 'int key'})
    assert kept == {'epoch': 3, 'classes': ['a', 'b'], 'time': None,
                    'nested': {'ok': 1.5}}
    assert dropped == ['meta.nested.tensor (Tensor)', 'meta[7]']
