"""tools/benchmark_optimizer.py: real ViT shapes; one run's JSON holds
every optimizer's median, its ratios to AdamW from the same run, its state
and traffic per parameter."""
import contextlib
import io
import json
import math

import pytest
import torch

from tests.tool_modules import load_tool


#: a ViT small enough to step in milliseconds (16 patches of 56 pixels)
SMALL = 'vit-32x2'


@pytest.fixture(scope='module')
def bench():
    tool = load_tool('benchmark_optimizer.py')
    tool.VIT_CONFIGS[SMALL] = (32, 2, 56)  # this module's copy only
    return tool


@pytest.fixture(scope='module')
def run(bench, tmp_path_factory):
    """One CPU run on small ViT shapes: (returned report, JSON file's
    report, printed text)."""
    out = tmp_path_factory.mktemp('bench') / 'step.json'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = bench.main(['--models', SMALL, '--rounds', '3',
                             '--warmup', '1', '--json', str(out)])
    return report, json.loads(out.read_text()), printed.getvalue()


def _numel(shapes):
    return sum(torch.Size(s).numel() for s in shapes)


def test_vit_shapes_match_the_real_models(bench):
    from mmpretrain.models.backbones import VisionTransformer

    # ViT-S/16 with its 1000-class head has 22,050,664 parameters (timm).
    assert _numel(bench.vit_param_shapes(384, 12)) == 22_050_664
    # ViT-B/16: mmpretrain's backbone plus a 1000-class linear head.
    backbone = VisionTransformer(arch='base', img_size=224, patch_size=16)
    head = 1000 * 768 + 1000
    assert _numel(bench.vit_param_shapes(768, 12)) == \
        sum(p.numel() for p in backbone.parameters()) + head


def test_json_is_the_report_with_its_run_settings(bench, run):
    report, saved, _ = run
    assert saved == json.loads(json.dumps(report))
    assert saved['device'] == 'cpu'
    assert saved['torch'] == torch.__version__
    assert (saved['rounds'], saved['warmup']) == (3, 1)
    assert 'gpu' not in saved  # named on CUDA only
    assert saved['baselines'] == ['AdamW(foreach)', 'AdamW(fused)']
    assert list(saved['models']) == [SMALL]
    model = saved['models'][SMALL]
    assert model['numel'] == _numel(bench.vit_param_shapes(32, 2, 56))


def test_every_optimizer_has_a_positive_finite_median(bench, run):
    optimizers = run[1]['models'][SMALL]['optimizers']
    expected = {'AdamW(foreach)', 'AdamSPD(default)', 'AdamSPD(loop)',
                'AdamSPD(foreach)', "AdamSPD(anchor_dtype='bfloat16')",
                "AdamSPD(anchor='zero')", 'AdamL2SP(default)'}
    assert expected <= set(optimizers)
    assert 'AdamSPD(fused=True)' not in optimizers  # CUDA only
    for name, r in optimizers.items():
        assert set(r) == {'median_s', 'ratios', 'state_per_param',
                          'bytes_per_param'}, name
        assert math.isfinite(r['median_s']) and r['median_s'] > 0, name


def test_ratios_are_medians_over_adamw_medians_of_the_same_run(run):
    optimizers = run[1]['models'][SMALL]['optimizers']
    baselines = [b for b in run[1]['baselines'] if b in optimizers]
    assert 'AdamW(foreach)' in baselines
    for name, r in optimizers.items():
        assert set(r['ratios']) == set(baselines), name
        for base in baselines:
            assert r['ratios'][base] == pytest.approx(
                r['median_s'] / optimizers[base]['median_s'], rel=1e-12)
    for base in baselines:
        assert optimizers[base]['ratios'][base] == 1.0


def test_state_and_traffic_per_parameter(run):
    optimizers = run[1]['models'][SMALL]['optimizers']
    # m, v (+ anchor): the parameter-sized buffers each one keeps
    state = {name: r['state_per_param'] for name, r in optimizers.items()}
    assert state['AdamW(foreach)'] == 2.0
    assert state['AdamSPD(default)'] == 3.0
    assert state["AdamSPD(anchor_dtype='bfloat16')"] == 2.5
    assert state["AdamSPD(anchor='zero')"] == 2.0
    assert state['AdamL2SP(default)'] == 3.0
    # read p, g, m, v (and the anchor), write p, m, v, in float32 bytes
    moved = {name: r['bytes_per_param'] for name, r in optimizers.items()}
    assert moved['AdamW(foreach)'] == 28
    assert moved['AdamSPD(default)'] == 32
    assert moved["AdamSPD(anchor_dtype='bfloat16')"] == 30
    assert moved["AdamSPD(anchor='zero')"] == 28


def test_projection_ran_in_the_timed_steps(run):
    # fresh gradients each round: SPD's projection is part of the time
    assert run[1]['models'][SMALL]['projected_fraction'] > 0


def test_table_prints_every_optimizer_with_its_ratio(run):
    optimizers = run[1]['models'][SMALL]['optimizers']
    printed = run[2]
    for name, r in optimizers.items():
        row = next(line for line in printed.splitlines()
                   if line.startswith(f'| {name} |'))
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert float(cells[1]) == pytest.approx(r['median_s'] * 1e3,
                                                abs=0.006)
        assert cells[2] == f'{r["ratios"]["AdamW(foreach)"]:.2f}x'


def test_optimizers_option_keeps_the_baselines_and_default(bench):
    measured = bench.benchmark_model(bench.vit_param_shapes(16, 1),
                                     torch.device('cpu'), rounds=1,
                                     warmup=1, names=['AdamSPD(loop)'])
    expected = {'AdamSPD(loop)', 'AdamSPD(default)', 'AdamW(foreach)'}
    assert expected <= set(measured['optimizers'])
    assert set(measured['optimizers']) <= expected | {'AdamW(fused)'}


def test_unknown_optimizer_is_named(bench):
    with pytest.raises(ValueError, match=r"unknown optimizers "
                       r"\['AdamSPD\(fused=True\)'\] on cpu"):
        bench.benchmark_model(bench.vit_param_shapes(16, 1),
                              torch.device('cpu'), rounds=1, warmup=1,
                              names=['AdamSPD(fused=True)'])


@pytest.mark.parametrize('argv', [['--rounds', '0'], ['--warmup', '0'],
                                  ['--models', 'resnet50'],
                                  ['--device', 'nonsense']])
def test_bad_arguments_are_rejected(bench, argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert argv[1] in capsys.readouterr().err
