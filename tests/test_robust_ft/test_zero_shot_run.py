"""``tools/test.py CONFIG --zero-shot``: CLIP's backbone and zero-shot head
as the config loads them, no checkpoint, tested by the config's
RobustTestLoop; on a tiny random CLIP and tiny DomainNet data, through the
real tools. Its predictions and numbers are those of the head tool's
zero-shot model file tested as a checkpoint and of WiSE-FT at alpha 0, and
the cross-run report shows it as the zero-shot row and as the start of the
WiSE-FT curve of the zero-shot-head config."""
import csv
import glob
import json
import os
import os.path as osp
import pickle

import pytest
import torch
from PIL import Image

from mmspd.robust_ft.report import build_report
from mmspd.robust_ft.results import read_runs
from mmspd.robust_ft.zero_shot import ZERO_SHOT_FILE
from tests.test_robust_ft.zero_shot_runs import (dump_config, write_clip,
                                                 write_data,
                                                 zero_shot_config)
from tests.tool_modules import load_tool

CONFIG = 'domainnet_spd_zeroshot-head'
SETS = ['real', 'sketch', 'painting', 'infograph', 'clipart', 'ood_avg']


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('zero_shot_run')
    clip = write_clip(root)
    data = write_data(root)
    # the config's test evaluator, and mmengine's DumpResults: the scores
    # of every image (of the last set tested: every set's evaluator is
    # built from this one)
    evaluator = [dict(type='Accuracy', topk=(1, 5)),
                 dict(type='DumpResults',
                      out_file_path=str(root / 'scores.pkl'))]
    cfg = zero_shot_config(CONFIG, root / 'work', clip, data,
                           options={'test_evaluator': evaluator})
    return dict(root=root, clip=clip, data=data,
                config=dump_config(cfg, root, CONFIG))


def _scores(path):
    with open(path, 'rb') as f:
        samples = pickle.load(f)
    return torch.stack([s['pred_score'] for s in samples])


def _dump_option(path):
    return ['--cfg-options', f'test_evaluator.1.out_file_path={path}']


@pytest.mark.slow
def test_zero_shot_test_is_the_zero_shot_model(files, tmp_path):
    config, clip = files['config'], files['clip']
    test = load_tool('test.py')
    # no --work-dir: the run goes to <config's work dir>/zero_shot
    zero_shot = test.main([config, '--zero-shot', '--cfg-options',
                           f'work_dir={tmp_path / "zs"}',
                           f'test_evaluator.1.out_file_path='
                           f'{tmp_path / "zs.pkl"}'])
    [results] = glob.glob(str(tmp_path / 'zs' / 'zero_shot' / '*' /
                              'robustness.json'))
    saved = json.load(open(results))
    assert saved['id'] == 'real' and saved['ood'] == SETS[1:-1]
    for name in SETS:
        assert f'{name}/accuracy/top1' in saved['metrics'], name
    assert saved['metrics'] == {k: float(v) for k, v in zero_shot.items()}
    meta = json.load(open(osp.join(osp.dirname(results), ZERO_SHOT_FILE)))
    assert meta['model'] == 'zero-shot' and meta['results'] == \
        'robustness.json'
    assert meta['pretrained'] == [
        f"backbone <- {clip['backbone']} (prefix 'backbone')",
        f"head <- {clip['head']} (prefix 'head')"]
    assert meta['metrics'] == saved['metrics']
    # the head tool's zero-shot model file, tested as a checkpoint
    as_file = test.main([config, clip['model'], '--work-dir',
                         str(tmp_path / 'file'),
                         *_dump_option(tmp_path / 'file.pkl')])
    assert as_file == zero_shot
    assert not glob.glob(str(tmp_path / 'file' / '*' / ZERO_SHOT_FILE))
    # WiSE-FT at alpha 0 from any fine-tuned checkpoint of the model
    model = torch.load(clip['model'], weights_only=True)['state_dict']
    tuned = str(tmp_path / 'tuned.pth')
    torch.save({'state_dict': {k: v + 1. for k, v in model.items()}}, tuned)
    wise = load_tool('analysis_tools/wise_ft.py').main(
        [config, tuned, '--alphas', '0', '--work-dir',
         str(tmp_path / 'wise'), *_dump_option(tmp_path / 'wise.pkl')])
    assert wise['head'] == 'head interpolated from the config\'s ' \
        'pretrained head' and wise['new_tensors'] == []
    assert wise['points'][0]['metrics'] == {
        k: float(v) for k, v in zero_shot.items()}
    # the scores of every image, bit for bit; not a degenerate head
    scores = _scores(tmp_path / 'zs.pkl')
    assert scores.shape == (4, 345)
    assert torch.equal(scores, _scores(tmp_path / 'file.pkl'))
    assert torch.equal(scores, _scores(tmp_path / 'wise.pkl'))
    assert scores.std(dim=1).min() > 0


def test_zero_shot_refuses_a_head_without_pretrained_value(files,
                                                           tmp_path):
    cfg = zero_shot_config('domainnet_spd', tmp_path / 'work',
                           files['clip'], files['data'])
    config = dump_config(cfg, tmp_path, 'domainnet_spd')
    with pytest.raises(ValueError, match=r"--zero-shot tests the model as "
                       r"the config '.*domainnet_spd\.py' initialises it, "
                       r"but 2 of its tensors get no value from its "
                       r"pretrained sources \(backbone <- .*\): "
                       r"head\.layers\.head\.bias, head\.layers\.head\."
                       r"weight; .*zeroshot-head"):
        load_tool('test.py').main([config, '--zero-shot', '--work-dir',
                                   str(tmp_path / 'out')])
    assert not osp.exists(tmp_path / 'out')


def test_checkpoint_xor_zero_shot(files):
    test = load_tool('test.py')
    with pytest.raises(ValueError, match=r"--zero-shot tests the model "
                       r"without a checkpoint, but '.*\.pth' was given"):
        test.main([files['config'], files['clip']['model'], '--zero-shot'])
    with pytest.raises(ValueError, match=r'No checkpoint given: expected '
                       r'CONFIG CHECKPOINT, or CONFIG --zero-shot'):
        test.main([files['config']])


@pytest.mark.slow
def test_report_has_the_zero_shot_row_and_the_curve_from_it(files,
                                                           tmp_path):
    """tools/train.py, tools/test.py, tools/test.py --zero-shot and
    tools/analysis_tools/wise_ft.py (alpha 0 not tested) in one work dir,
    then the report over it."""
    config, run = files['config'], tmp_path / 'runs' / 'spd_s0'
    load_tool('train.py').main([config, '--work-dir', str(run)])
    checkpoint = str(run / 'epoch_2.pth')
    test = load_tool('test.py')
    tested = test.main([config, checkpoint, '--work-dir', str(run)])
    zero_shot = test.main([config, '--zero-shot', '--cfg-options',
                           f'work_dir={run}'])
    wise = load_tool('analysis_tools/wise_ft.py').main(
        [config, checkpoint, '--alphas', '0.5', '1'])
    assert osp.isfile(run / 'wise_ft' / 'wise_ft.json')
    out = tmp_path / 'report'
    report = load_tool('analysis_tools/robustness_report.py').main(
        [str(tmp_path / 'runs'), '--out-dir', str(out)])
    row, spd = report['methods']
    assert row['key'] == 'zero-shot' and row['setting'] == 'no training'
    assert [r['source'] for r in row['runs']] == [str(run / 'zero_shot')]
    assert spd['key'] == CONFIG and spd['runs'][0]['source'] == str(run)
    metric = 'accuracy/top1'
    for name in SETS:  # each row: its run's numbers
        assert row['summary'][name]['mean'] == zero_shot[f'{name}/{metric}']
        assert spd['summary'][name]['mean'] == tested[f'{name}/{metric}']
    # the curve: alpha 0 is the zero-shot run, the others the sweep's
    curve = spd['wise_ft']
    assert curve['alphas'] == [0., 0.5, 1.]
    assert curve['start'] == 'zero-shot'
    assert curve['zero_shot_run'] == 'zero-shot'
    expected = [zero_shot] + [p['metrics'] for p in wise['points']]
    for point, numbers in zip(curve['points'], expected):
        assert point['id']['mean'] == numbers[f'real/{metric}']
        assert point['ood']['mean'] == numbers[f'ood_avg/{metric}']
        for name in SETS:
            assert point['sets'][name]['mean'] == numbers[f'{name}/{metric}']
    assert wise['points'][1]['metrics'] == {k: float(v)
                                            for k, v in tested.items()}
    lines = open(out / 'robustness_report.md').read().splitlines()
    assert lines[2].startswith('| zero-shot | no training |')
    assert lines[3].startswith(f'| {CONFIG} |')
    assert [r['method'] for r in csv.DictReader(
        open(out / 'robustness_report.csv'))][0] == 'zero-shot'
    with Image.open(out / 'robustness_report.png') as image:
        assert image.format == 'PNG'


def _write_test(run_dir, stamp, numbers, meta=None):
    """``run_dir/<stamp>/robustness.json`` as RobustTestLoop writes it
    (plus summary keys of other kinds, which the report ignores), and
    ``zero_shot.json`` as a zero-shot test writes it."""
    folder = osp.join(str(run_dir), stamp)
    os.makedirs(folder)
    metrics = {f'{name}/accuracy/top1': value
               for name, value in zip(SETS, numbers)}
    metrics.update({'mPC': 1.0, 'rPC/accuracy/top1': 2.0})
    with open(osp.join(folder, 'robustness.json'), 'w') as f:
        json.dump(dict(id='real', ood=SETS[1:-1], metrics=metrics,
                       summary=dict(P=3.0)), f)
    if meta is not None:
        with open(osp.join(folder, ZERO_SHOT_FILE), 'w') as f:
            json.dump(meta, f)


def test_a_work_dir_tested_both_ways_gives_both_runs(files, tmp_path):
    """A training work dir also used as the zero-shot test's --work-dir:
    the newest test of each kind is a run of its own."""
    run = tmp_path / 'spd_s0'
    cfg = zero_shot_config(CONFIG, run, files['clip'], files['data'])
    dump_config(cfg, run, CONFIG)
    sources = ['backbone <- a.pth', 'head <- b.pth']
    meta = dict(model='zero-shot', pretrained=sources)
    _write_test(run, '20260101_000000', [1, 2, 3, 4, 5, 3.5])
    _write_test(run, '20260101_000001', [10, 20, 30, 40, 50, 35])
    _write_test(run, '20260101_000002', [6, 7, 8, 9, 10, 8.5], meta)
    runs = read_runs([str(tmp_path)])
    trained, zero_shot = runs
    assert trained['method'] == CONFIG and trained['zero_shot'] is None
    assert trained['test']['real'] == 10 and trained['seed'] == 0
    assert trained['metric'] == 'accuracy/top1'
    assert zero_shot['method'] == 'zero-shot'
    assert zero_shot['zero_shot'] == sources
    assert zero_shot['test'] == dict(zip(SETS, [6, 7, 8, 9, 10, 8.5]))
    assert zero_shot['strength'] is zero_shot['seed'] is zero_shot['val'] \
        is None
    report = build_report(runs, 'real', SETS[1:-1], 'accuracy/top1')
    assert [m['key'] for m in report['methods']] == ['zero-shot', CONFIG]
