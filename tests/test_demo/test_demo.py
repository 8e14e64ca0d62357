"""A reduced demo (one seed, one epoch, two strengths per method), run for
real: data on disk, pretraining, fine-tuning through mmengine's Runner and
the configs/demo configs, ID + OOD tests, LP-FT, WiSE-FT sweeps,
publishing, report."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from mmspd.zoo.publish import sha256_of
from projects.spd_demo.pipeline import MODEL_PREFIX, Demo
from projects.spd_demo.protocol import (LINEAR_PROBE, LPFT, DemoProtocol,
                                        Method)
from projects.spd_demo.runs import epoch_options
from tests.test_robust_ft.demo_runs import write_data, write_pretrained
from tests.tool_modules import REPO, load_tool

SETS = ['clean', 'rotate', 'noise', 'blur', 'low_contrast', 'ood_avg']
REDUCED = DemoProtocol(
    methods=(Method('adamw', 'AdamW', 'weight decay', (0.01, 1.0)),
             Method('l2sp', 'L2-SP', 'L2-SP strength', (0.01, 1.0)),
             Method('spd', 'AdamSPD', 'lambda', (0.1, 1.0))),
    seeds=(0, ), reference=LINEAR_PROBE,
    lpft=Method(LPFT.key, LPFT.name, LPFT.strength, (0.01, 1.0)),
    wise_ft_methods=('adamw', 'spd'), wise_ft_alphas=(0., 0.5, 1.),
    pretrain_epochs=1, finetune_epochs=1)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('demo'))
    results = Demo(work_dir, REDUCED).run(
        figure=osp.join(work_dir, 'docs', 'demo.png'))
    return work_dir, results


def test_writes_the_table_json_and_figure(demo, capsys):
    work_dir, results = demo
    paths = results['paths']
    with open(paths['results']) as f:
        saved = json.load(f)
    assert saved['sets'] == SETS and saved['id'] == 'clean'
    assert [m['name'] for m in saved['methods']] == ['AdamW', 'L2-SP',
                                                     'AdamSPD']
    assert saved['reference']['name'] == LINEAR_PROBE.name
    table = open(paths['table']).read()
    lines = table.splitlines()
    assert lines[0].split()[:3] == ['method', 'setting', 'ID']
    assert 'OOD avg' in lines[0] and 'low_contrast' in lines[0]
    for method in saved['methods']:
        row = next(line for line in lines if line.startswith(
            method['name'] + ' '))
        # one seed: a number per set, no std
        accuracy = method['summary']['clean']['mean']
        assert f'{accuracy:.1f}' in row
    # LP-FT's row, then the WiSE-FT rows (alpha 0.5), then the reference
    names = [line.split('  ')[0] for line in lines[2:]]
    assert names == ['AdamW', 'L2-SP', 'AdamSPD', LPFT.name,
                     'AdamW + WiSE-FT', 'AdamSPD + WiSE-FT',
                     f'{LINEAR_PROBE.name} (reference)']
    assert saved['report']['wise_ft_rows'][0]['setting'].endswith('α=0.5')
    for key in ('figure', 'figure_copy'):
        with Image.open(paths[key]) as image:
            assert image.format == 'PNG' and image.width > 800
    for key in ('report_md', 'report_csv'):
        assert os.path.getsize(paths[key]) > 0


def test_every_run_is_tested_on_id_and_ood_sets(demo):
    _, results = demo
    for method in results['methods'] + [results['reference']]:
        [run] = method['runs']
        assert list(run['test']) == SETS
        assert all(0 <= v <= 100 for v in run['test'].values())
        ood = [run['test'][s] for s in SETS[1:-1]]
        assert run['test']['ood_avg'] == pytest.approx(sum(ood) / len(ood))
        with open(run['results_json']) as f:  # RobustTestLoop's own file
            assert json.load(f)['ood'] == SETS[1:-1]


def test_strength_is_selected_by_id_validation_accuracy(demo):
    _, results = demo
    for method, spec in zip(results['methods'], REDUCED.methods):
        grid = method['grid']
        assert [g['value'] for g in grid] == list(spec.grid)
        best = max(g['mean_val_accuracy'] for g in grid)
        first_best = next(g['value'] for g in grid
                          if g['mean_val_accuracy'] == best)
        assert method['selected'] == first_best
        assert method['runs'][0]['val_accuracy'] == best


def test_fine_tuning_starts_from_the_pretrained_backbone(demo):
    _, results = demo
    pretrained = torch.load(results['pretrain']['weights'],
                            weights_only=True)['state_dict']
    spd = results['methods'][2]['runs'][0]
    checkpoint = torch.load(spd['checkpoint'], weights_only=True)
    # LeNet-5 + linear head have no buffers, and the constructor groups the
    # backbone before the head: optimizer indices follow the state dict
    names = list(checkpoint['state_dict'])
    assert [i for g in checkpoint['optimizer']['param_groups']
            for i in g['params']] == list(range(len(names)))
    anchors = {names[i]: s['anchor']
               for i, s in checkpoint['optimizer']['state'].items()
               if s.get('anchor') is not None}
    backbone = [n for n in pretrained if n.startswith('backbone.')]
    assert backbone and set(backbone) <= set(anchors)
    for name in backbone:  # SPD's anchors are the pretrained weights
        assert torch.equal(anchors[name], pretrained[name])
    # the head is new: initialised afresh, not the pretraining head (0-4)
    assert not torch.equal(anchors['head.fc.weight'],
                           pretrained['head.fc.weight'])
    probe = results['reference']['runs'][0]
    frozen = torch.load(probe['checkpoint'],
                        weights_only=True)['state_dict']
    for name in backbone:  # the reference trains the head only
        assert torch.equal(frozen[name], pretrained[name])


def test_wise_ft_sweeps_the_selected_runs_alpha_one_exactly(demo):
    _, results = demo
    for method in results['methods']:
        [run] = method['runs']
        if method['key'] not in REDUCED.wise_ft_methods:
            assert 'wise_ft' not in run
            continue
        points = run['wise_ft']['points']
        assert [p['alpha'] for p in points] == [0., 0.5, 1.]
        # alpha 1 is the fine-tuned checkpoint: the test stage's numbers
        assert points[-1]['test'] == run['test']
        assert points[0]['test'] != run['test']
        curve = next(m for m in results['report']['methods']
                     if m['key'] == method['key'])['wise_ft']
        assert curve['alphas'] == [0., 0.5, 1.]


def test_lpft_starts_from_each_seeds_linear_probe(demo):
    _, results = demo
    lpft = results['lpft']
    assert lpft['name'] == LPFT.name
    assert [g['value'] for g in lpft['grid']] == [0.01, 1.0]
    [run] = lpft['runs']
    probe = results['reference']['runs'][0]
    pretrained = torch.load(results['pretrain']['weights'],
                            weights_only=True)['state_dict']
    probed = torch.load(probe['checkpoint'], weights_only=True)['state_dict']
    checkpoint = torch.load(run['checkpoint'], weights_only=True)
    # SPDMonitorHook keeps the weights at the start of training: the
    # pretrained backbone and the probe's head
    start = checkpoint['spd_monitor_reference']
    for key, value in start.items():
        source = probed if key.startswith('head.') else pretrained
        assert torch.equal(value, source[key]), key


def test_publishes_one_model_per_method_for_the_model_zoo(demo):
    work_dir, results = demo
    with open(results['paths']['model_zoo_records']) as f:
        records = json.load(f)
    assert [r['name'] for r in records] == [
        MODEL_PREFIX + k for k in ('adamw', 'l2sp', 'spd')]
    for record, method in zip(records, results['methods']):
        name = osp.basename(record['weights'])
        match = re.fullmatch(re.escape(record['name']) + r'-([0-9a-f]{8})'
                             r'\.pth', name)
        assert match and sha256_of(record['weights']).startswith(
            match.group(1))
        assert set(torch.load(record['weights'], weights_only=True)) == {
            'state_dict', 'meta'}
        assert record['cfg_options'][
            'optim_wrapper.optimizer.weight_decay'] == method['selected']
        assert record['results'] == method['runs'][0]['results_json']


def test_a_second_run_reuses_every_stage(demo):
    work_dir, first = demo
    second = Demo(work_dir, REDUCED).run()
    log = open(osp.join(work_dir, 'demo.log')).read()
    stages = re.findall(r'\[(\d+)/(\d+)\] .*\((cached|[\d.]+ s)\)', log)
    total = int(stages[0][1])
    assert [s[2] for s in stages[-total:]] == ['cached'] * total
    for a, b in zip(first['methods'], second['methods']):
        assert a['runs'][0]['test'] == b['runs'][0]['test']


@pytest.mark.slow
def test_tools_train_reads_a_demo_config_from_the_repository_root(
        tmp_path):
    """The demo configs custom-import projects.spd_demo, which is not in
    the mmspd package: ``python tools/train.py configs/demo/...`` works
    from a checkout, without PYTHONPATH."""
    data = write_data(tmp_path)
    pretrained = write_pretrained(tmp_path)
    options = {**{f'{split}_dataloader.dataset.data_root': data
                  for split in ('train', 'val', 'test')},
               'model.backbone.init_cfg.checkpoint': pretrained,
               'log_level': 'WARNING', **epoch_options(1)}
    work_dir = tmp_path / 'run'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [sys.executable, 'tools/train.py',
         'configs/demo/lenet5_digits59_spd.py', '--work-dir', str(work_dir),
         '--cfg-options'] + [f'{k}={v}' for k, v in options.items()],
        cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert osp.isfile(checkpoint)


def test_make_demo_runs_the_demo_tool():
    dry = subprocess.run(['make', '-n', 'demo'], cwd=REPO, text=True,
                         capture_output=True, check=True).stdout
    assert 'tools/demo.py' in dry and 'benchmark_optimizer' not in dry


def test_tool_passes_its_options_to_the_protocol(monkeypatch, tmp_path):
    tool = load_tool('demo.py')
    seen = {}
    monkeypatch.setattr(tool, 'run_demo', lambda work_dir, protocol, fig:
                        seen.update(work_dir=work_dir, protocol=protocol))
    tool.main(['--work-dir', str(tmp_path), '--seeds', '3', '4',
               '--finetune-epochs', '2', '--no-reference'])
    assert seen['work_dir'] == str(tmp_path)
    assert seen['protocol'].seeds == (3, 4)
    assert seen['protocol'].finetune_epochs == 2
    assert seen['protocol'].reference is None
    assert seen['protocol'].methods == DemoProtocol().methods
