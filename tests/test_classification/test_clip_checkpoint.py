"""OpenAI CLIP image encoder -> mmpretrain ViT: same outputs, real loading
path (TorchScript archive, the converter tool, init_cfg Pretrained)."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from mmspd.classification.clip_checkpoint import (backbone_config,
                                                  convert_visual,
                                                  load_clip_state_dict)
from tests.test_classification.clip_runs import load_tool
from tests.test_classification.tiny_clip import TinyCLIP


def _tool():
    return load_tool('model_converters/openai_clip_to_mmpretrain.py')


def write_tiny_clip_archive(path, seed=0, **kwargs):
    """A TorchScript archive of :class:`TinyCLIP`, like OpenAI's files."""
    torch.manual_seed(seed)
    model = TinyCLIP(**kwargs).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 32, 32))
    torch.jit.save(traced, str(path))
    return model


def _vit(checkpoint, heads=2):
    cfg = dict(type='VisionTransformer',
               arch=dict(embed_dims=16, num_layers=2, num_heads=heads,
                         feedforward_channels=32),
               img_size=32, patch_size=8, pre_norm=True, drop_rate=0.,
               layer_cfgs=dict(act_cfg=dict(type='QuickGELU')),
               norm_cfg=dict(type='LN', eps=1e-5),  # CLIP's LayerNorm
               init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint),
                             prefix='backbone'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        vit = MODELS.build(cfg)
    vit.init_weights()
    vit.eval()  # mmpretrain's ViT.train() returns None, not self
    return vit


def test_converted_vit_computes_what_clip_computes(tmp_path):
    clip = write_tiny_clip_archive(tmp_path / 'ViT-T-8.pt')
    dst = tmp_path / 'out' / 'clip_mmpretrain.pth'
    cfg = _tool().main([str(tmp_path / 'ViT-T-8.pt'), str(dst)])
    assert cfg['arch']['embed_dims'] == 16 and cfg['arch']['num_layers'] == 2
    assert (cfg['img_size'], cfg['patch_size']) == (32, 8)
    vit = _vit(dst)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = clip(images)
        got = vit(images)[-1]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # and a head count other than CLIP's computes something else: the
    # comparison above does test the attention layout
    with torch.no_grad():
        other = _vit(dst, heads=1)(images)[-1]
    assert not torch.allclose(other, expected, atol=1e-3)


def test_plain_half_precision_state_dict_becomes_float32(tmp_path):
    torch.manual_seed(1)
    state = {k: v.half() for k, v in TinyCLIP().state_dict().items()}
    torch.save(state, tmp_path / 'clip.pt')
    weights, dropped = convert_visual(load_clip_state_dict(
        str(tmp_path / 'clip.pt')))
    assert dropped == ['visual.proj']
    assert all(v.dtype == torch.float32 for v in weights.values())
    assert torch.equal(weights['backbone.cls_token'].reshape(-1),
                       state['visual.class_embedding'].float())
    assert weights['backbone.pos_embed'].shape == (1, 17, 16)
    assert not any('token_embedding' in k or 'ln_final' in k
                   for k in weights)  # the text tower is left out
    assert backbone_config(weights)['arch']['feedforward_channels'] == 32


def test_conversion_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"No \"visual\.\*\" keys.*'conv'"):
        convert_visual({'conv.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='visual.attnpool.weight'):
        convert_visual({'visual.attnpool.weight': torch.zeros(1)})
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        _tool().main([str(tmp_path / 'missing.pt'), str(tmp_path / 'x')])
