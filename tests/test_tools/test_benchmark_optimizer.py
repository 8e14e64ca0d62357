"""tools/benchmark_optimizer.py: shapes are real ViT shapes, the report holds."""
import json
import os.path as osp

import pytest
import torch

from tests.tool_modules import REPO, load_tool


@pytest.fixture(scope='module')
def bench():
    return load_tool('benchmark_optimizer.py')


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


def test_report_has_every_contender_with_ratios_and_memory(
        bench, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    report = bench.main(['--models', 'vit-tiny-test', '--rounds', '3',
                         '--json', str(out)])
    printed = capsys.readouterr().out
    results = report['vit-tiny-test']['results']
    expected = {bench.BASELINE_FOREACH, bench.DEFAULT_PATH, 'AdamSPD(loop)',
                'AdamSPD(foreach)',
                "AdamSPD(anchor='zero')", 'AdamL2SP(default)'}
    assert expected <= set(results)
    for name in results:
        assert f'| {name} |' in printed
        assert results[name]['median_s'] > 0
    # m, v (+ anchor): exactly the parameter-sized buffers each one keeps
    assert results[bench.BASELINE_FOREACH]['state_per_param'] == 2.0
    assert results[bench.DEFAULT_PATH]['state_per_param'] == 3.0
    assert results["AdamSPD(anchor='zero')"]['state_per_param'] == 2.0
    assert '| AdamW(foreach) |' in printed and '1.00x' in printed
    # bytes a step must move per parameter: AdamW 28, SPD 32 (anchor read),
    # bfloat16 anchors 30, zero anchors 28; the floor is that at the
    # bandwidth measured in the same run
    numel = report['vit-tiny-test']['numel']
    per_param = {name: r['traffic_bytes'] / numel
                 for name, r in results.items()}
    assert per_param[bench.BASELINE_FOREACH] == 28
    assert per_param[bench.DEFAULT_PATH] == 32
    assert per_param["AdamSPD(anchor_dtype='bfloat16')"] == 30
    assert per_param["AdamSPD(anchor='zero')"] == 28
    bandwidth = report['vit-tiny-test']['bandwidth']
    assert bandwidth > 0 and f'{bandwidth / 1e9:.1f} GB/s' in printed
    for r in results.values():
        assert r['floor_s'] == pytest.approx(r['traffic_bytes'] / bandwidth)
    assert 'vs its traffic floor' in printed
    # fresh gradients each round: SPD's projection pass is part of the time
    assert report['vit-tiny-test']['projected_fraction'] > 0
    saved = json.loads(out.read_text())
    assert saved['models']['vit-tiny-test']['results'] == json.loads(
        json.dumps(results))


@pytest.mark.parametrize('argv', [['--rounds', '0'], ['--warmup', '0'],
                                  ['--e2e-repeats', '0'],
                                  ['--models', 'resnet50'],
                                  ['--cfg-options', 'batch_size']])
def test_bad_arguments_are_rejected(bench, argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert argv[1] in capsys.readouterr().err


def test_readme_section_is_regenerated_between_the_markers(bench, tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(f'# Title\n\n{bench.README_START}\nold table\n'
                      f'{bench.README_END}\n\nafter\n')
    bench.main(['--models', 'vit-tiny-test', '--rounds', '2',
                '--update-readme', str(readme)])
    text = readme.read_text()
    assert 'old table' not in text
    assert text.startswith('# Title\n\n')
    assert text.rstrip().endswith('after')
    section = text.split(bench.README_START)[1].split(bench.README_END)[0]
    assert 'Machine:' in section and '| AdamW(foreach) |' in section


def test_readme_without_markers_is_a_clear_error(bench, tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('# no markers\n')
    with pytest.raises(ValueError, match='benchmark'):
        bench.update_readme(str(readme), 'x')


def test_anchor_dtype_effect_reports_both_measures(bench):
    effect = bench.anchor_dtype_effect(bench.vit_param_shapes(16, 1), steps=3)
    # rounding the anchors to bfloat16 does change SPD's steps
    assert effect['relative_weight_gap'] > 0.0
    assert 0.0 < effect['projection_disagreement'] <= 1.0


def test_end_to_end_times_both_optimizers_on_a_real_config(bench, tmp_path):
    from tests.dataset_files import write_custom_classification_set
    data = write_custom_classification_set(str(tmp_path / 'data'))
    config = osp.join(REPO, 'tests', 'data', 'configs',
                      'tiny_lenet_spd.py')
    e2e = bench.end_to_end(config,
                           {'train_dataloader.dataset.data_root': data},
                           iters=8, repeats=1)
    assert e2e['adamspd_s'] > 0 and e2e['adamw_s'] > 0
    assert e2e['throughput_ratio'] == pytest.approx(
        e2e['adamw_s'] / e2e['adamspd_s'])
    # one repeat: its own ratio is the pooled one
    assert e2e['repeat_ratio_min'] == e2e['repeat_ratio_max'] == \
        pytest.approx(e2e['throughput_ratio'])


def test_cfg_options_are_typed_as_in_the_tools(bench):
    args = bench.parse_args(['--cfg-options', 'a.b=8', 'c=0.5', 'd=x'])
    assert args.cfg_options == {'a.b': 8, 'c': 0.5, 'd': 'x'}


def _report(bench, model, default_s, foreach_s, fused_s=None, state=3.0):
    results = {bench.DEFAULT_PATH: dict(median_s=default_s,
                                        state_per_param=state),
               bench.BASELINE_FOREACH: dict(median_s=foreach_s,
                                            state_per_param=2.0)}
    if fused_s is not None:
        results[bench.BASELINE_FUSED] = dict(median_s=fused_s,
                                             state_per_param=2.0)
    return {model: dict(numel=1, results=results)}


def test_targets_name_ratio_and_verdict_per_device(bench):
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    lines = bench.check_targets(
        _report(bench, 'vit-b16', 1.4, 10.0, fused_s=1.0), cpu)
    assert lines == [
        'Target AdamSPD(default) <= 1.5x AdamW(fused) on vit-b16: 1.40x, '
        'met.',
        'Target AdamSPD(default) state <= 3.0x parameter bytes on vit-b16: '
        '3.00x, met.'
    ]
    lines = bench.check_targets(
        _report(bench, 'vit-b16', 1.3, 10.0, fused_s=1.0, state=3.5), cuda)
    assert lines[0].endswith('1.30x, NOT met.')  # GPU target is 1.2x
    assert lines[1].endswith('3.50x, NOT met.')
    lines = bench.check_targets(_report(bench, 'vit-s16', 1.0, 10.0), cpu)
    assert 'AdamW(fused) unavailable, not measured' in lines[1]
    assert lines[0].endswith('0.10x, met.')


def test_bandwidth_is_measured_not_assumed(bench):
    probe = bench.BandwidthProbe(torch.device('cpu'), numel=1 << 16)
    for _ in range(3):
        probe()
    assert len(probe.times) == 3
    assert probe.bytes_per_s() == pytest.approx(
        12 * (1 << 16) / sorted(probe.times)[1])
