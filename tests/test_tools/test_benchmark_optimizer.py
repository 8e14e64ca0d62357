"""tools/benchmark_optimizer.py: shapes are real ViT shapes, the report holds."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools',
                'benchmark_optimizer.py')


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('benchmark_optimizer', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    saved = json.loads(out.read_text())
    assert saved['models']['vit-tiny-test']['results'] == json.loads(
        json.dumps(results))


@pytest.mark.parametrize('argv', [['--rounds', '0'], ['--warmup', '0'],
                                  ['--models', 'resnet50']])
def test_bad_arguments_are_rejected(bench, argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert argv[1] in capsys.readouterr().err
