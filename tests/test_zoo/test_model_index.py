"""The metafile generator (tools/misc/gen_model_index.py) on a real test
run's robustness.json and a real published checkpoint, and the generated
files committed at the repository root."""
import json
import os.path as osp
import shutil

import pytest
import yaml

from mmspd.zoo.model_index import (HEADER, ModelRecord, load_records,
                                   write_model_index)
from mmspd.zoo.publish import publish_checkpoint
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import CONFIG, build_runner, train
from tests.tool_modules import REPO, load_tool



@pytest.fixture(scope='module')
def tool():
    return load_tool('misc/gen_model_index.py')


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """(root, config, robustness.json, published weights) of a real run:
    the tiny LeNet trained with AdamSPD, tested by RobustTestLoop with one
    OOD set, published; root is a repository-like folder holding the config
    (configs/) and the weights (published/)."""
    root = tmp_path_factory.mktemp('zoo')
    (root / 'configs').mkdir()
    config = shutil.copy(CONFIG, str(root / 'configs'))
    data = write_custom_classification_set(str(root / 'data'))
    train(root / 'train', data)
    checkpoint = osp.join(str(root / 'train'), 'iter_6.pth')
    runner = build_runner(root / 'test', data, {
        'test_dataloader.dataset.data_root': data,
        'test_cfg': dict(type='RobustTestLoop', ood_sets=[dict(
            name='rot90', transforms=[dict(type='Rotate', angle=90.,
                                           prob=1.)])]),
        'load_from': checkpoint,
    })
    runner.test()
    results = osp.join(runner.log_dir, 'robustness.json')
    (root / 'published').mkdir()
    weights, _ = publish_checkpoint(checkpoint,
                                    str(root / 'published' / 'tiny_spd'))
    return str(root), config, results, weights


def _record(released, **changes):
    root, config, results, weights = released
    fields = dict(name='tiny_lenet_spd', config=config, results=results,
                  weights=weights, dataset='Bands')
    fields.update(changes)
    return ModelRecord(**fields)


def _load(path):
    with open(path) as f:
        text = f.read()
    assert text.startswith(HEADER)
    return yaml.safe_load(text)


def test_metafile_entry_comes_from_the_results_json(released, tmp_path):
    root, config, results, weights = released
    with open(results) as f:
        measured = json.load(f)['metrics']
    metafile = osp.join(root, 'configs', 'metafile.yml')
    index = osp.join(root, 'model-index.yml')
    write_model_index([_record(released)], metafile, index, root)

    content = _load(metafile)
    [collection] = content['Collections']
    assert collection['Name'] == 'SPD'
    assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2411.01713'
    [model] = content['Models']
    assert model['Name'] == 'tiny_lenet_spd'
    assert model['In Collection'] == 'SPD'
    assert model['Config'] == 'configs/tiny_lenet_spd.py'
    assert model['Weights'] == 'published/' + osp.basename(weights)
    assert model['Metadata']['Optimizer'] == 'AdamSPD'
    assert model['Metadata']['SPD Lambda'] == 1.0
    assert model['Metadata']['Iterations'] == 6
    assert model['Metadata']['Parameters'] > 1000
    by_dataset = {r['Dataset']: r for r in model['Results']}
    assert list(by_dataset) == ['Bands', 'Bands (rot90)',
                                'Bands (OOD average)']
    assert by_dataset['Bands (rot90)']['Task'] == 'Image Classification'
    assert by_dataset['Bands']['Metrics']['Top 1 Accuracy'] == round(
        measured['clean/accuracy/top1'], 2)
    assert by_dataset['Bands (rot90)']['Metrics']['Top 1 Accuracy'] == round(
        measured['rot90/accuracy/top1'], 2)
    assert _load(index) == {'Import': ['configs/metafile.yml']}


def test_regeneration_keeps_other_models_unless_replaced(released, tmp_path,
                                                         tool):
    root, config, results, weights = released
    metafile = osp.join(root, 'configs', 'meta2.yml')
    index = osp.join(root, 'mi.yml')
    write_model_index([_record(released)], metafile, index, root)
    # the tool, a second model, options it was trained with, a weights URL
    records = tmp_path / 'records.json'
    records.write_text(json.dumps([dict(
        name='tiny_lenet_adamw', config=config, results=results,
        weights=weights, dataset='Bands',
        cfg_options={'optim_wrapper.optimizer.type': 'AdamW'})]))
    tool.main([str(records), '--metafile', metafile, '--model-index', index,
               '--root', root, '--weights-url', 'https://example.org/zoo/'])
    content = _load(metafile)
    assert [m['Name'] for m in content['Models']] == [
        'tiny_lenet_spd', 'tiny_lenet_adamw']
    assert [c['Name'] for c in content['Collections']] == ['SPD', 'AdamW']
    adamw = content['Models'][1]
    assert adamw['In Collection'] == 'AdamW'
    assert adamw['Weights'] == ('https://example.org/zoo/'
                                + osp.basename(weights))
    assert adamw['Metadata']['Config Options'] == (
        'optim_wrapper.optimizer.type=AdamW')
    assert _load(index) == {'Import': ['configs/meta2.yml']}
    tool.main([str(records), '--metafile', metafile, '--model-index', index,
               '--root', root, '--replace'])
    assert [m['Name'] for m in _load(metafile)['Models']] == [
        'tiny_lenet_adamw']


def test_bad_records_are_named(released, tmp_path, tool):
    root = released[0]
    metafile, index = str(tmp_path / 'meta.yml'), str(tmp_path / 'mi.yml')
    missing = str(tmp_path / 'missing.json')
    with pytest.raises(FileNotFoundError, match="'tiny_lenet_spd'.*results"):
        write_model_index([_record(released, results=missing)], metafile,
                          index, root)
    with pytest.raises(ValueError, match=r"\['tiny_lenet_spd'\] more than"):
        write_model_index([_record(released), _record(released)], metafile,
                          index, root)
    # a path the metafile cannot express (outside the root)
    with pytest.raises(ValueError, match="weights .*outside the root"):
        write_model_index([_record(released)], metafile, index,
                          osp.join(root, 'configs'))
    records = tmp_path / 'records.json'
    records.write_text(json.dumps([dict(name='x', config='c.py')]))
    with pytest.raises(ValueError, match="missing fields.*'results'"):
        load_records(str(records))
    with pytest.raises(SystemExit, match='records.*does not exist'):
        tool.main([str(tmp_path / 'none.json'), '--metafile', metafile])
    assert not osp.exists(metafile)


def test_committed_model_index_points_at_real_configs():
    index = _load(osp.join(REPO, 'model-index.yml'))
    assert 'configs/metafile.yml' in index['Import']
    content = _load(osp.join(REPO, 'configs', 'metafile.yml'))
    names = [m['Name'] for m in content['Models']]
    assert len(names) == len(set(names)) and names
    collections = {c['Name'] for c in content['Collections']}
    for model in content['Models']:
        assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
        assert model['In Collection'] in collections
        assert model['Results'] and model['Weights'].endswith('.pth')
