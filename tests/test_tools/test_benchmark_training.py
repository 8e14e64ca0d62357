"""tools/analysis_tools/benchmark_training.py: a real config trained with
AdamW and mmspd's optimizers in one process; the JSON's ratios are its own
medians over AdamW's."""
import json
import math
import os.path as osp

import pytest

from tests.tool_modules import REPO, load_tool

CONFIG = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_lenet_spd.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools/benchmark_training.py')


def test_json_holds_medians_and_ratios_to_adamw(
        tool, tiny_classification_data, tmp_path, capsys):
    data = tiny_classification_data
    out = tmp_path / 'training.json'
    report = tool.main([CONFIG, '--optimizers', 'AdamSPD', 'AdamW',
                        '--iters', '8', '--repeats', '1', '--cfg-options',
                        f'train_dataloader.dataset.data_root={data}',
                        '--json', str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    assert (saved['config'], saved['iters'], saved['repeats'],
            saved['baseline']) == (CONFIG, 8, 1, 'AdamW')
    results = saved['optimizers']
    assert list(results) == ['AdamW', 'AdamSPD']  # AdamW once, first
    adamw = results['AdamW']['median_s']
    assert results['AdamW'] == dict(median_s=adamw, ratio=1.0)
    assert math.isfinite(adamw) and adamw > 0
    r = results['AdamSPD']
    assert math.isfinite(r['median_s']) and r['median_s'] > 0
    assert r['ratio'] == pytest.approx(r['median_s'] / adamw, rel=1e-12)
    # one repeat: its own ratio is the pooled one
    assert r['repeat_ratio_min'] == r['repeat_ratio_max'] == \
        pytest.approx(r['ratio'])
    printed = capsys.readouterr().out
    assert f'AdamSPD: {results["AdamSPD"]["median_s"] * 1e3:.2f} ms, ' \
        f'{results["AdamSPD"]["ratio"]:.3f}x AdamW' in printed


def test_switching_optimizer_keeps_only_shared_settings(tool):
    # the config's optimizer: AdamSPD(lr=1e-2, weight_decay=1.0)
    cfg = tool.training_config(CONFIG, {}, 'AdamW', iters=12)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-2,
                                               weight_decay=0.05)
    assert cfg.train_cfg == dict(by_epoch=False, max_iters=12,
                                 val_interval=13)
    assert cfg.train_dataloader.sampler == dict(type='InfiniteSampler',
                                                shuffle=True)
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    same = tool.training_config(
        CONFIG, {'optim_wrapper.optimizer.anchor': 'zero'}, 'AdamSPD', 12)
    assert same.optim_wrapper.optimizer == dict(
        type='AdamSPD', lr=1e-2, weight_decay=1.0, anchor='zero')
    l2sp = tool.training_config(CONFIG, {}, 'AdamL2SP', 12)
    assert l2sp.optim_wrapper.optimizer.weight_decay == 1e-2


@pytest.mark.parametrize('argv', [['--iters', '4'], ['--repeats', '0'],
                                  ['--optimizers', 'SGD'],
                                  ['--cfg-options', 'batch_size']])
def test_bad_arguments_are_rejected(tool, argv, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args([CONFIG] + argv)
    assert argv[1] in capsys.readouterr().err


def test_cfg_options_are_typed_as_in_the_tools(tool):
    args = tool.parse_args([CONFIG, '--cfg-options', 'a.b=8', 'c=0.5',
                            'd=x'])
    assert args.cfg_options == {'a.b': 8, 'c': 0.5, 'd': 'x'}
