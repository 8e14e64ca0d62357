"""tools/analysis_tools/plot_spd.py on real short runs of the tiny LeNet."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import only_scalars_log, read_scalars, train
from tests.tool_modules import load_tool

ROOT = osp.join(osp.dirname(__file__), '..', '..')
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'plot_spd.py')
MAX_ITERS = 6
#: run name -> --cfg-options of the run (the config's optimizer is AdamSPD)
RUNS = {
    'AdamW': {'optim_wrapper.optimizer.type': 'AdamW',
              'optim_wrapper.optimizer.weight_decay': 0.01},
    'L2-SP': {'optim_wrapper.optimizer.type': 'AdamL2SP',
              'optim_wrapper.optimizer.weight_decay': 0.01},
    'SPD': {},
}


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools/plot_spd.py')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """name -> work dir of a real 6-iteration run (SPDMonitorHook every
    iteration, module deviations every 2, as the tiny config sets)."""
    base = tmp_path_factory.mktemp('runs')
    data_root = write_custom_classification_set(str(base / 'data'))
    work_dirs = {}
    for name, options in RUNS.items():
        work_dirs[name] = str(base / name)
        train(work_dirs[name], data_root,
              {'train_cfg.max_iters': MAX_ITERS, **options})
    return work_dirs


def check_png(path):
    assert osp.getsize(path) > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == 'PNG'
        width, height = image.size
        assert width > 100 and height > 100
        # lines, text and axes were drawn: not a blank canvas
        assert len(image.convert('RGB').getcolors(maxcolors=1 << 20)) > 20


def copy_without_spd_keys(scalars, work_dir):
    """A real scalars log with its spd/ keys removed, in a work-dir layout."""
    target = osp.join(work_dir, '20000101_000000', 'vis_data',
                      'scalars.json')
    os.makedirs(osp.dirname(target))
    with open(target, 'w') as f:
        for record in read_scalars(scalars):
            kept = {k: v for k, v in record.items()
                    if not k.startswith('spd/')}
            f.write(json.dumps(kept) + '\n')
    return target


def fail_with(tool, argv, capsys):
    """Run the tool's main, expect exit status 2; return its stderr."""
    with pytest.raises(SystemExit) as info:
        tool.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------- parsing
def test_load_scalars_and_series(tool, runs):
    path = only_scalars_log(runs['SPD'])
    records = tool.load_scalars(path)
    assert records == read_scalars(path)
    train_rows = [r for r in records if 'iter' in r]
    iters, values = tool.series(records, 'spd/relative_deviation')
    assert iters == list(range(1, MAX_ITERS + 1))
    assert values == [r['spd/relative_deviation'] for r in train_rows]
    # module deviations only where the hook computed them
    assert tool.series(records, 'spd/deviation/backbone')[0] == [2, 4, 6]
    fractions = tool.series(records, 'spd/projected_fraction')[1]
    assert len(fractions) == MAX_ITERS
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert tool.series(records, 'spd/absent') == ([], [])
    assert tool.find_scalars(runs['SPD']) == path
    assert tool.default_label(path) == 'SPD'
    assert tool.default_label(runs['SPD']) == 'SPD'


def test_newest_scalars_log_of_a_work_dir(tool, runs, tmp_path):
    old = copy_without_spd_keys(only_scalars_log(runs['SPD']), tmp_path)
    new = osp.join(tmp_path, '20000102_000000', 'vis_data', 'scalars.json')
    os.makedirs(osp.dirname(new))
    shutil.copy(only_scalars_log(runs['SPD']), new)
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    assert tool.find_scalars(str(tmp_path)) == new
    os.utime(old, (3000, 3000))
    assert tool.find_scalars(str(tmp_path)) == old


# ---------------------------------------------------------------- plots
def test_command_line_plots_every_run_and_the_comparison(runs, tmp_path):
    out_dir = tmp_path / 'plots'
    done = subprocess.run(
        [sys.executable, TOOL, runs['AdamW'], runs['L2-SP'], runs['SPD'],
         '--out-dir', str(out_dir)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = {'AdamW_deviation.png', 'L2-SP_deviation.png',
                'SPD_deviation.png', 'SPD_projected.png',
                'compare_deviation.png'}
    printed = done.stdout.split()
    assert {osp.basename(p) for p in printed} == expected
    # only AdamSPD has projection statistics to plot
    assert sorted(os.listdir(out_dir)) == sorted(expected)
    for path in printed:
        assert osp.dirname(path) == str(out_dir)
        check_png(path)


def test_scalars_file_and_labels(tool, runs, tmp_path, capsys):
    out_dir = str(tmp_path / 'plots')
    written = tool.main([only_scalars_log(runs['SPD']), runs['AdamW'],
                         '--out-dir', out_dir,
                         '--labels', 'Adam SPD', 'AdamW'])
    assert capsys.readouterr().out.split() == written
    assert sorted(osp.basename(p) for p in written) == [
        'AdamW_deviation.png', 'Adam_SPD_deviation.png',
        'Adam_SPD_projected.png', 'compare_deviation.png']
    for path in written:
        check_png(path)


def test_one_run_has_no_comparison(tool, runs, tmp_path):
    written = tool.plot_runs([runs['L2-SP']], str(tmp_path))
    assert [osp.basename(p) for p in written] == ['L2-SP_deviation.png']
    check_png(written[0])


# --------------------------------------------------------------- errors
def test_run_without_scalars_log(tool, tmp_path, capsys):
    empty = tmp_path / 'empty_run'
    empty.mkdir()
    err = fail_with(tool, [str(empty), '--out-dir', str(tmp_path / 'o')],
                    capsys)
    assert 'No scalars log' in err and str(empty) in err
    err = fail_with(tool, [str(tmp_path / 'missing'), '--out-dir',
                           str(tmp_path / 'o')], capsys)
    assert 'neither a work dir nor a scalars.json' in err
    assert not (tmp_path / 'o').exists()


def test_log_without_spd_keys(tool, runs, tmp_path, capsys):
    bare = copy_without_spd_keys(only_scalars_log(runs['SPD']),
                                 tmp_path / 'bare')
    out_dir = tmp_path / 'o'
    err = fail_with(tool, [runs['SPD'], str(tmp_path / 'bare'),
                           '--out-dir', str(out_dir)], capsys)
    assert bare in err
    assert 'SPDMonitorHook' in err and 'custom_hooks' in err
    assert not out_dir.exists()  # all runs are checked before writing


def test_label_count_must_match(tool, runs, tmp_path, capsys):
    err = fail_with(tool, [runs['SPD'], runs['AdamW'], '--out-dir',
                           str(tmp_path), '--labels', 'SPD'], capsys)
    assert '1 labels' in err and '2 runs' in err
    err = fail_with(tool, [runs['SPD'], runs['AdamW'], '--out-dir',
                           str(tmp_path), '--labels', 'a b', 'a/b'], capsys)
    assert 'distinct --labels' in err


def test_malformed_record_names_file_and_line(tool, tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text('{"iter": 1, "spd/mean_ratio": 0.5}\n{"iter": 2,\n')
    with pytest.raises(ValueError, match=r'scalars\.json, line 2 '):
        tool.load_scalars(str(path))
