"""The CLIP configs compute CLIP's image encoder, at full size.

Random weights in OpenAI's ViT-B/16 layout (text tower included) are
written to a file, converted by tools/model_converters/
openai_clip_to_mmpretrain.py and loaded through the shipped config's
``init_cfg``; the class-token feature of the built classifier is compared
with :func:`clip_image_features`, our own forward of OpenAI's
``VisionTransformer`` from the same state dict (not mmpretrain's code).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmspd.classification  # noqa: F401
from tests.test_classification.openai_clip_reference import (
    clip_image_features, random_openai_clip_state_dict)
from tests.tool_modules import REPO, load_tool

#: max |feature difference| / max |reference feature| allowed (float32
#: rounding through 12 blocks is ~1e-6)
RELATIVE_TOLERANCE = 1e-5
CLIP_CONFIGS = [f'{data}_{method}' for data in ('domainnet', 'imagenet')
                for method in ('spd', 'adamw', 'l2sp')]


@pytest.fixture(scope='module')
def clip_files(tmp_path_factory):
    """(OpenAI-layout state dict, its file converted by the real tool)."""
    folder = tmp_path_factory.mktemp('clip_b16')
    state = random_openai_clip_state_dict(seed=0)
    src = osp.join(str(folder), 'ViT-B-16.pt')
    torch.save(state, src)
    dst = osp.join(str(folder), 'clip-vit-base-p16_openai.pth')
    load_tool('model_converters/openai_clip_to_mmpretrain.py').main(
        [src, dst])
    return state, dst


def _config_backbone_features(name, checkpoint, images, eps=None):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    if eps is not None:
        cfg.model.backbone.norm_cfg.eps = eps
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        return model.extract_feat(images)[-1]


def _relative_difference(got, expected):
    return ((got.double() - expected).abs().max()
            / expected.abs().max()).item()


@pytest.mark.slow
def test_config_model_computes_clips_image_features(clip_files):
    name = 'domainnet_spd'  # every CLIP config builds the same backbone
    state, converted = clip_files
    torch.manual_seed(1)
    images = torch.randn(2, 3, 224, 224)
    expected = clip_image_features(state, images)
    got = _config_backbone_features(name, converted, images)
    assert got.shape == expected.shape == (2, 768)
    relative = _relative_difference(got, expected)
    print(f'{name}: max |diff| {(got.double() - expected).abs().max():.3g}'
          f' on features of max |x| {expected.abs().max():.3g}: '
          f'{relative:.3g} relative')
    assert relative <= RELATIVE_TOLERANCE
    # mmpretrain's default eps 1e-6 (the bug) fails the same check: the
    # comparison is sensitive to the norms' eps
    wrong = _config_backbone_features(name, converted, images, eps=1e-6)
    wrong_relative = _relative_difference(wrong, expected)
    print(f'{name} with LayerNorm eps 1e-6: {wrong_relative:.3g} relative')
    assert wrong_relative > 10 * RELATIVE_TOLERANCE


def test_every_clip_config_builds_that_backbone_with_clips_eps():
    configs = {name: Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
               for name in CLIP_CONFIGS}
    backbones = {name: cfg.model.backbone.to_dict()
                 for name, cfg in configs.items()}
    for name, backbone in backbones.items():
        assert backbone == backbones['domainnet_spd'], name
    assert backbones['domainnet_spd']['norm_cfg'] == dict(type='LN',
                                                          eps=1e-5)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        built = MODELS.build(dict(configs['domainnet_spd'].model.backbone,
                                  init_cfg=None))
    norms = [m for m in built.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 + 2 * 12  # ln_pre, 2 per block, ln_post
    assert {m.eps for m in norms} == {1e-5}
