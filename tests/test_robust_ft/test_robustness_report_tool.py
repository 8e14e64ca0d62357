"""tools/analysis_tools/robustness_report.py on real work dirs: the demo
configs trained with tools/train.py, tested with tools/test.py in the same
work dir, one of them swept with tools/analysis_tools/wise_ft.py."""
import csv
import json
import os.path as osp

import pytest
from PIL import Image

from tests.test_robust_ft.demo_runs import (demo_config, write_data,
                                            write_pretrained)
from tests.tool_modules import load_tool

#: (config, weight_decay, seed)
RUNS = [('spd', 0.1, 0), ('spd', 0.1, 1), ('spd', 1.0, 0), ('spd', 1.0, 1),
        ('adamw', 0.01, 0)]


def _options(data, pretrained, value, seed, name):
    return [f'{split}_dataloader.dataset.data_root={data}'
            for split in ('train', 'val', 'test')] + [
        f'model.backbone.init_cfg.checkpoint={pretrained}',
        f'optim_wrapper.optimizer.weight_decay={value}',
        f'randomness.seed={seed}', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1', 'param_scheduler.0.end=1',
        f'experiment_name={name}', 'log_level=WARNING']


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp('sweep')
    data, pretrained = write_data(root), write_pretrained(root)
    train, test = load_tool('train.py'), load_tool('test.py')
    for method, value, seed in RUNS:
        name = f'{method}_{value:g}_s{seed}'
        work_dir = str(root / 'runs' / name)
        config = demo_config(f'lenet5_digits59_{method}')
        options = _options(data, pretrained, value, seed, name)
        train.main([config, '--work-dir', work_dir, '--cfg-options',
                    *options])
        test.main([config, osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
                   work_dir, '--cfg-options', *options[:-2],
                   f'experiment_name={name}_test', 'log_level=WARNING'])
    return root, data, pretrained


@pytest.mark.slow
def test_report_over_work_dirs(sweep, tmp_path):
    root, data, pretrained = sweep
    # WiSE-FT of every SPD run, written where the report looks for it
    for method, value, seed in RUNS[:4]:
        run = root / 'runs' / f'{method}_{value:g}_s{seed}'
        load_tool('analysis_tools/wise_ft.py').main([
            str(run / 'lenet5_digits59_spd.py'), str(run / 'epoch_1.pth'),
            '--alphas', '0.5', '1'])
        assert osp.isfile(run / 'wise_ft' / 'wise_ft.json')
    out = tmp_path / 'report'
    report = load_tool('analysis_tools/robustness_report.py').main([
        str(root / 'runs'), '--out-dir', str(out),
        '--names', 'lenet5_digits59_spd=AdamSPD'])
    adamw_row, spd_row = report['methods']  # sorted run folders
    assert spd_row['name'] == 'AdamSPD' and adamw_row['key'] == \
        'lenet5_digits59_adamw'
    assert adamw_row['strength'] == 0.01 and len(adamw_row['runs']) == 1
    # selection on the mean ID validation accuracy, from the training logs
    vals = {}
    for method, value, seed in RUNS[:4]:
        folder = root / 'runs' / f'{method}_{value:g}_s{seed}'
        [log] = folder.glob('*/vis_data/scalars.json')
        rows = [json.loads(line) for line in open(log)]
        [val] = [r['accuracy/top1'] for r in rows if 'accuracy/top1' in r]
        vals.setdefault(value, []).append(val)
    means = {v: sum(x) / 2 for v, x in vals.items()}
    assert [g['mean_val'] for g in spd_row['grid']] == pytest.approx(
        [means[0.1], means[1.0]])
    best = 0.1 if means[0.1] >= means[1.0] else 1.0
    assert spd_row['strength'] == best
    assert [r['seed'] for r in spd_row['runs']] == [0, 1]
    # the test numbers are those of the runs' robustness.json
    for r in spd_row['runs']:
        [path] = (root / 'runs' / f'spd_{best:g}_s{r["seed"]}').glob(
            '*/robustness.json')
        saved = json.load(open(path))['metrics']
        assert r['test']['ood_avg'] == saved['ood_avg/accuracy/top1']
    # WiSE-FT: alpha 1 is the fine-tuned model, so the tested numbers
    curve = spd_row['wise_ft']
    assert curve['alphas'] == [0.5, 1.]
    assert curve['points'][1]['ood']['mean'] == pytest.approx(
        spd_row['summary']['ood_avg']['mean'], abs=1e-9)
    [wise_row] = report['wise_ft_rows']
    assert wise_row['name'] == 'AdamSPD + WiSE-FT'
    for ext in ('md', 'csv', 'json'):
        assert osp.getsize(out / f'robustness_report.{ext}') > 0
    rows = list(csv.DictReader(open(out / 'robustness_report.csv')))
    assert [r['method'] for r in rows] == ['lenet5_digits59_adamw',
                                           'AdamSPD', 'AdamSPD + WiSE-FT']
    assert float(rows[1]['clean_mean']) == pytest.approx(
        spd_row['summary']['clean']['mean'], abs=1e-4)
    with Image.open(out / 'robustness_report.png') as image:
        assert image.format == 'PNG'


def test_work_dir_without_robustness_json_is_named(tmp_path):
    (tmp_path / 'empty_run' / '20260101_000000').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"Work dir '.*empty_run' "
                       r"holds no robustness\.json"):
        load_tool('analysis_tools/robustness_report.py').main([
            str(tmp_path / 'empty_run'), '--out-dir', str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=r"Work dir '.*nowhere' "
                       r"does not exist"):
        load_tool('analysis_tools/robustness_report.py').main([
            str(tmp_path / 'nowhere')])
