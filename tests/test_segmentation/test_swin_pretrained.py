"""The Swin-T backbone of the segmentation configs holds exactly the
OpenMMLab Swin-T file after ``init_cfg`` (full size, file in the release
layout: tests/test_segmentation/swin_release.py)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

import mmspd.segmentation  # noqa: F401
from mmspd.engine.strict_loading import (LoadMismatchError,
                                         build_pretrained_model)
from tests.test_segmentation.swin_release import write_swin_t_release
from tests.tool_modules import REPO

OUTPUT_NORMS = {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}


def _config(name, checkpoint):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize('name', ['pascal_ctx_spd', 'pascal_mt_spd'])
def test_loaded_backbone_equals_a_strict_load_of_the_file(name, tmp_path):
    path = str(tmp_path / 'swin_tiny_patch4_window7_224.pth')
    cfg = _config(name, path)
    state = write_swin_t_release(path, cfg.model.backbone)
    model = build_pretrained_model(cfg)  # init_cfg, then the strict check
    loaded = model.backbone.state_dict()

    # independently: the file's backbone tensors, strictly loaded into a
    # fresh backbone; the only tensors the file lacks are the 4 output norms
    fresh = MODELS.build(dict(cfg.model.backbone, init_cfg=None,
                              _scope_='mmseg'))
    from_file = {k[len('backbone.'):]: v for k, v in state.items()}
    used = {k: v for k, v in from_file.items() if k in loaded}
    assert set(loaded) - set(used) == OUTPUT_NORMS
    assert set(from_file) - set(used) == {
        'norm.weight', 'norm.bias', *(k for k in from_file
                                      if k.endswith('.attn_mask'))}
    fresh.load_state_dict(
        {**used, **{k: loaded[k] for k in OUTPUT_NORMS}}, strict=True)
    expected = fresh.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
    # the output norms are new: LayerNorm's initial ones and zeros
    for key in OUTPUT_NORMS:
        fill = 1.0 if key.endswith('weight') else 0.0
        assert torch.equal(loaded[key], torch.full_like(loaded[key], fill))


@pytest.mark.slow
def test_a_swin_file_missing_a_block_is_an_error_naming_it(tmp_path):
    path = str(tmp_path / 'swin.pth')
    cfg = _config('pascal_ctx_spd', path)
    state = write_swin_t_release(path, cfg.model.backbone)
    dropped = sorted(k for k in state
                     if k.startswith('backbone.stages.3.blocks.1.'))
    torch.save({k: v for k, v in state.items() if k not in dropped}, path)
    with pytest.raises(LoadMismatchError) as error:
        build_pretrained_model(cfg)
    message = str(error.value)
    assert f'{len(dropped)} missing from the checkpoint' in message
    for key in dropped:
        assert key in message
    assert 'norm0' not in message  # the declared, intentional differences
