"""WiSE-FT (tools/analysis_tools/wise_ft.py, mmspd.robust_ft.wise_ft) on
real fine-tuned checkpoints of the demo configs, against tools/test.py."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmspd.robust_ft.pretrained import load_pretrained
from mmspd.robust_ft.wise_ft import (check_alphas, interpolate,
                                     run_wise_ft)
from tests.test_robust_ft.demo_runs import (demo_config, finetune,
                                            finetune_config, write_data,
                                            write_pretrained)
from tests.tool_modules import load_tool

SETS = ['clean', 'rotate', 'noise', 'blur', 'low_contrast', 'ood_avg']
METHODS = ['adamw', 'l2sp', 'spd']


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('wise_ft')
    return dict(root=root, data=write_data(root),
                pretrained=write_pretrained(root))


@pytest.fixture(scope='module')
def trained(files):
    """One epoch of each method's demo config, its dumped config."""
    out = {}
    for method in METHODS:
        work_dir = files['root'] / f'train_{method}'
        run = finetune(f'lenet5_digits59_{method}', work_dir, files['data'],
                       files['pretrained'])
        config_file = str(files['root'] / f'{method}.py')
        run['cfg'].dump(config_file)
        out[method] = dict(run, config_file=config_file)
    return out


def _test_tool(config_file, checkpoint, work_dir):
    metrics = load_tool('test.py').main([config_file, checkpoint,
                                         '--work-dir', str(work_dir)])
    return {k: float(v) for k, v in metrics.items()}


@pytest.mark.slow
@pytest.mark.parametrize('method', METHODS)
def test_alpha_one_gives_exactly_the_numbers_of_tools_test(
        trained, files, method, tmp_path):
    run = trained[method]
    expected = _test_tool(run['config_file'], run['checkpoint'],
                          tmp_path / 'test')
    results = load_tool('analysis_tools/wise_ft.py').main([
        run['config_file'], run['checkpoint'], '--alphas', '1', '0',
        '--work-dir', str(tmp_path / 'wise')])
    assert results['alphas'] == [0.0, 1.0]
    at_one = results['points'][-1]['metrics']
    assert at_one == expected  # exactly, every set and metric
    assert [k.split('/')[0] for k in at_one] == SETS
    # alpha 0 (pretrained backbone) is another model: other numbers
    assert results['points'][0]['metrics'] != expected
    with open(tmp_path / 'wise' / 'wise_ft.json') as f:
        assert json.load(f) == json.loads(json.dumps(results))
    with Image.open(tmp_path / 'wise' / 'wise_ft.png') as image:
        assert image.format == 'PNG'
    for point in results['points']:  # one RobustTestLoop run per alpha
        with open(point['robustness_json']) as f:
            saved = json.load(f)
        assert saved['metrics'] == pytest.approx(point['metrics'])
    assert results['head'] == 'fine-tuned head at every alpha'
    assert results['new_tensors'] == ['head.fc.bias', 'head.fc.weight']


def test_interpolated_weights_are_pretrained_and_fine_tuned_mixes(
        trained, files):
    run = trained['spd']
    cfg = Config.fromfile(run['config_file'])
    pretrained = load_pretrained(cfg)
    raw = torch.load(files['pretrained'], weights_only=True)['state_dict']
    backbone = sorted(k for k in raw if k.startswith('backbone.'))
    # the keys init_cfg provides, with the file's values
    assert sorted(pretrained.keys) == backbone
    for key in backbone:
        assert torch.equal(pretrained.state[key], raw[key])
    finetuned = torch.load(run['checkpoint'],
                           weights_only=True)['state_dict']
    keys = pretrained.keys
    for alpha in (0., 0.3, 1.):
        mixed = interpolate(pretrained.state, finetuned, alpha, keys)
        for key in backbone:
            expected = (1 - alpha) * raw[key] + alpha * finetuned[key]
            assert torch.allclose(mixed[key], expected, atol=1e-6)
        for key in ('head.fc.weight', 'head.fc.bias'):  # fine-tuned head
            assert torch.equal(mixed[key], finetuned[key])
    ends = (interpolate(pretrained.state, finetuned, 0., keys),
            interpolate(pretrained.state, finetuned, 1., keys))
    for key in backbone:  # both ends bit for bit
        assert torch.equal(ends[0][key], raw[key])
        assert torch.equal(ends[1][key], finetuned[key])
        assert not torch.equal(raw[key], finetuned[key])


def test_pretrained_weights_from_load_from(trained, files):
    cfg = Config.fromfile(trained['adamw']['config_file'])
    cfg.model.backbone.init_cfg = None
    cfg.load_from = files['pretrained']
    pretrained = load_pretrained(cfg)
    raw = torch.load(files['pretrained'], weights_only=True)['state_dict']
    # load_from reads the whole file: head included (same shapes here)
    assert pretrained.keys == set(raw)
    for key in raw:
        assert torch.equal(pretrained.state[key], raw[key])
    assert pretrained.sources == [f'load_from {files["pretrained"]}']


def test_zero_shot_head_is_interpolated_too(trained, files, tmp_path):
    run = trained['spd']
    cfg = Config.fromfile(run['config_file'])
    finetuned = torch.load(run['checkpoint'],
                           weights_only=True)['state_dict']
    head = {k: torch.randn_like(v) for k, v in finetuned.items()
            if k.startswith('head.')}
    path = str(tmp_path / 'zero_shot_head.pth')
    torch.save({'state_dict': head}, path)
    results = run_wise_ft(cfg, run['checkpoint'], [0., 1.],
                          str(tmp_path / 'wise'), zero_shot_head=path,
                          figure=False)
    assert results['head'] == f'zero-shot head {path}'
    assert results['interpolated_tensors'] == len(finetuned)
    # alpha 0 is the pretrained backbone under the zero-shot head: test it
    # directly as a model
    torch.save({'state_dict': {**torch.load(
        files['pretrained'], weights_only=True)['state_dict'], **head}},
        str(tmp_path / 'alpha0.pth'))
    expected = _test_tool(run['config_file'], str(tmp_path / 'alpha0.pth'),
                          tmp_path / 'test0')
    assert results['points'][0]['metrics'] == expected
    del head['head.fc.bias']
    torch.save({'state_dict': head}, path)
    with pytest.raises(ValueError, match=r"zero-shot head .*missing: "
                       r"head\.fc\.bias"):
        run_wise_ft(cfg, run['checkpoint'], [0.5], str(tmp_path / 'bad'),
                    zero_shot_head=path, figure=False)


@pytest.mark.parametrize('alphas, message', [
    ([1.5], r'Invalid WiSE-FT alpha 1\.5: expected a number in \[0, 1\]'),
    ([-0.1, 0.5], r'Invalid WiSE-FT alpha -0\.1'),
    ([float('nan')], r'Invalid WiSE-FT alpha nan'),
    ([0.5, 0.5], r'Repeated WiSE-FT alphas'),
    ([], r'at least one alpha'),
])
def test_bad_alphas_are_named(alphas, message):
    with pytest.raises(ValueError, match=message):
        check_alphas(alphas)


def test_tool_refuses_bad_alphas_before_loading_anything(tmp_path):
    with pytest.raises(ValueError, match=r'alpha 2\.0'):
        load_tool('analysis_tools/wise_ft.py').main([
            'missing_config.py', 'missing.pth', '--alphas', '0', '2'])


def _save_variant(checkpoint, path, change):
    data = torch.load(checkpoint, weights_only=False)
    change(data['state_dict'])
    torch.save(data, path)
    return str(path)


@pytest.mark.parametrize('change, message', [
    (lambda sd: sd.pop('backbone.features.0.weight'),
     r"missing key\(s\) \(backbone\.features\.0\.weight\)"),
    (lambda sd: sd.__setitem__('backbone.features.0.weight',
                               torch.zeros(3, 1, 5, 5)),
     r"backbone\.features\.0\.weight \(3, 1, 5, 5\) vs \(6, 1, 5, 5\)"),
    (lambda sd: sd.__setitem__('neck.extra', torch.zeros(1)),
     r"unexpected key\(s\) \(neck\.extra\)"),
])
def test_checkpoint_that_does_not_match_the_config_is_named(
        trained, tmp_path, change, message):
    run = trained['spd']
    bad = _save_variant(run['checkpoint'], tmp_path / 'bad.pth', change)
    with pytest.raises(ValueError, match=r"fine-tuned checkpoint '.*bad\.pth"
                       r"' does not match the model of the config: .*"
                       + message):
        run_wise_ft(Config.fromfile(run['config_file']), bad, [1.],
                    str(tmp_path / 'out'), figure=False)


def test_pretrained_file_lacking_backbone_keys_is_an_error(
        trained, files, tmp_path):
    raw = torch.load(files['pretrained'], weights_only=True)
    del raw['state_dict']['backbone.features.3.bias']
    partial = str(tmp_path / 'partial.pth')
    torch.save(raw, partial)
    cfg = Config.fromfile(trained['spd']['config_file'])
    cfg.model.backbone.init_cfg.checkpoint = partial
    with pytest.raises(ValueError, match=r"partial\.pth' \(prefix "
                       r"'backbone\.'\) lacks 1 key\(s\) of module "
                       r"'backbone': features\.3\.bias"):
        load_pretrained(cfg)


def test_config_without_robust_test_loop_is_refused(trained, tmp_path):
    cfg = Config.fromfile(trained['spd']['config_file'])
    cfg.test_cfg = dict()
    with pytest.raises(ValueError, match=r"test_cfg must be a "
                       r"RobustTestLoop, got None"):
        run_wise_ft(cfg, trained['spd']['checkpoint'], [1.],
                    str(tmp_path), figure=False)
