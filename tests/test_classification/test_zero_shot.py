"""CLIP's zero-shot head against open_clip, on a tiny random CLIP in
OpenAI's layout (text tower included), through the real tool and config."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmspd.classification  # noqa: F401
from mmspd.classification.zero_shot import (HEAD_BIAS, HEAD_WEIGHT,
                                            class_names, get_templates,
                                            tokenize, zero_shot_head)
from mmspd.engine.strict_loading import check_pretrained_loaded
from tests.test_classification.openai_clip_reference import \
    random_openai_clip_state_dict
from tests.test_robust_ft.zero_shot_runs import TINY, TINY_VIT
from tests.tool_modules import REPO, load_tool

open_clip = pytest.importorskip('open_clip')

NAMES = ['cat', 'crème brûlée', "jack-o'-lantern", 'The Eiffel Tower']
#: |difference| / max |reference| allowed (float32 rounding is ~1e-7)
RELATIVE = 1e-5


def _relative(got, expected):
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope='module')
def clip_files(tmp_path_factory):
    """(state dict, OpenAI file, class-name file, head file, model file,
    converted image encoder) of a tiny random CLIP (float16 as OpenAI)."""
    folder = tmp_path_factory.mktemp('zero_shot')
    state = random_openai_clip_state_dict(seed=0, arch=TINY)
    state['logit_scale'] = torch.tensor(4.6052).half()
    src = osp.join(str(folder), 'ViT-T-8.pt')
    torch.save(state, src)
    names = osp.join(str(folder), 'names.txt')
    with open(names, 'w', encoding='utf-8') as f:
        f.write('\n'.join(NAMES) + '\n')
    head = osp.join(str(folder), 'head.pth')
    model = osp.join(str(folder), 'model.pth')
    load_tool('model_converters/clip_zero_shot_head.py').main(
        [src, head, '--class-names', names, '--model-out', model])
    backbone = osp.join(str(folder), 'backbone.pth')
    load_tool('model_converters/openai_clip_to_mmpretrain.py').main(
        [src, backbone])
    return state, src, names, head, model, backbone


def _config(name, backbone, head, num_classes=len(NAMES)):
    cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))
    cfg.model.backbone.update(arch=TINY_VIT, img_size=32, patch_size=8)
    cfg.model.backbone.init_cfg.checkpoint = backbone
    cfg.model.head.update(in_channels=64, num_classes=num_classes)
    cfg.model.head.init_cfg.checkpoint = head
    return cfg


def _model(cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def _open_clip(state):
    return open_clip.model.build_model_from_openai_state_dict(
        dict(state)).float().eval()


def test_zero_shot_model_gives_open_clips_logits(clip_files):
    state, _, _, head, _, backbone = clip_files
    model = _model(_config('domainnet_spd_zeroshot-head', backbone, head))
    check_pretrained_loaded(model)  # backbone and head exactly their files
    reference = _open_clip(state)
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    text = build_zero_shot_classifier(reference, open_clip.tokenize, NAMES,
                                      OPENAI_IMAGENET_TEMPLATES)
    torch.manual_seed(1)
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits = model(images, mode='tensor')
        embedding = reference.encode_image(images)
        expected = reference.logit_scale.exp() * torch.nn.functional \
            .normalize(embedding, dim=-1) @ text
    # the linear head cannot normalise the image embedding: its logits are
    # CLIP's times ||f @ proj||, one positive factor per image
    scaled = logits / embedding.norm(dim=-1, keepdim=True)
    relative = _relative(scaled, expected)
    print(f'zero-shot logits vs open_clip: {relative:.3g} relative')
    assert relative <= RELATIVE
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    # the head itself: exp(logit_scale) * T @ visual.proj^T
    weight = model.head.layers.head.weight
    folded = reference.logit_scale.exp() * text.T @ \
        state['visual.proj'].float().T
    assert _relative(weight, folded) <= RELATIVE
    assert not model.head.layers.head.bias.any()


def test_zero_shot_model_file_is_the_config_model(clip_files):
    _, _, _, head, model_file, backbone = clip_files
    model = _model(_config('imagenet_adamw_zeroshot-head', backbone, head))
    saved = torch.load(model_file, map_location='cpu',
                       weights_only=True)['state_dict']
    state = model.state_dict()
    assert sorted(saved) == sorted(state)
    for key, value in state.items():
        assert torch.equal(saved[key], value), key


def test_wise_ft_alpha_0_is_the_zero_shot_model(clip_files):
    from mmspd.robust_ft.pretrained import load_pretrained
    from mmspd.robust_ft.wise_ft import interpolate
    _, _, _, head, model_file, backbone = clip_files
    cfg = _config('domainnet_l2sp_zeroshot-head', backbone, head)
    pretrained = load_pretrained(cfg)
    assert {HEAD_WEIGHT, HEAD_BIAS} <= pretrained.keys  # head interpolated
    assert set(pretrained.state) == pretrained.keys
    finetuned = {k: v + 1.0 for k, v in pretrained.state.items()}
    start = interpolate(pretrained.state, finetuned, 0.0,
                        pretrained.keys)
    zero_shot = torch.load(model_file, map_location='cpu',
                           weights_only=True)['state_dict']
    for key, value in zero_shot.items():
        assert torch.equal(start[key], value), key
    assert not torch.equal(interpolate(pretrained.state, finetuned, 0.5,
                                       pretrained.keys)[HEAD_WEIGHT],
                           zero_shot[HEAD_WEIGHT])


def test_head_rules_of_the_zero_shot_configs():
    for data in ('domainnet', 'imagenet'):
        for method in ('spd', 'l2sp'):
            cfg = Config.fromfile(osp.join(
                REPO, 'configs', f'{data}_{method}_zeroshot-head.py'))
            assert cfg.optim_wrapper.paramwise_cfg.custom_keys['head'] == \
                dict(decay_mult=1., anchor='init')
            assert cfg.model.head.init_cfg.checkpoint.endswith(
                f'zeroshot-head_{data}.pth')
        base = Config.fromfile(osp.join(REPO, 'configs', f'{data}_adamw.py'))
        cfg = Config.fromfile(osp.join(
            REPO, 'configs', f'{data}_adamw_zeroshot-head.py'))
        assert cfg.optim_wrapper == base.optim_wrapper


def test_tokenizer_matches_open_clip_on_punctuation_and_non_ascii():
    texts = ["a photo of a jack-o'-lantern.", 'crème brûlée', 'Pokémon!!',
             'São Paulo, 日本の寿司', 'T-shirt & "yo-yo"', 'naïve  café\t',
             'a ' * 100]
    assert torch.equal(tokenize(texts), open_clip.tokenize(texts))
    assert tokenize(texts).shape == (len(texts), 77)


def test_class_names_and_templates():
    from open_clip.zero_shot_metadata import (IMAGENET_CLASSNAMES,
                                              OPENAI_IMAGENET_TEMPLATES)
    assert class_names('imagenet') == list(IMAGENET_CLASSNAMES)
    assert len(class_names('imagenet-a')) == len(
        class_names('imagenet-r')) == 200
    domainnet = class_names('domainnet')
    assert len(domainnet) == 345 and 'The Eiffel Tower' in domainnet
    assert [t('x') for t in get_templates('openai_imagenet')] == \
        [t('x') for t in OPENAI_IMAGENET_TEMPLATES]


def test_bad_inputs_name_the_value(clip_files, tmp_path):
    state, src, names, head, _, backbone = clip_files
    tool = load_tool('model_converters/clip_zero_shot_head.py')
    with pytest.raises(ValueError, match="template set 'openai_imgnet'"):
        tool.main([src, str(tmp_path / 'h.pth'), '--dataset', 'domainnet',
                   '--templates', 'openai_imgnet'])
    # an image-encoder-only file (the converter's output) has no text tower
    with pytest.raises(ValueError, match=r'no CLIP text tower.*token_emb'):
        tool.main([backbone, str(tmp_path / 'h.pth'), '--class-names',
                   names])
    # 4 names for DomainNet's 345 classes
    config = osp.join(REPO, 'configs', 'domainnet_spd_zeroshot-head.py')
    with pytest.raises(ValueError, match=r'4 names.*num_classes=345'):
        tool.main([src, str(tmp_path / 'h.pth'), '--class-names', names,
                   '--config', config])
    with pytest.raises(ValueError, match="Unknown data set 'cifar'"):
        class_names('cifar')
    # a head of another shape than the config's: refused when loaded
    from mmspd.robust_ft.pretrained import load_pretrained
    cfg = _config('domainnet_spd_zeroshot-head', backbone, head,
                  num_classes=5)
    with pytest.raises(ValueError, match=r'layers\.head\.weight \(4, 64\) '
                       r'vs \(5, 64\)'):
        load_pretrained(cfg)
    with pytest.raises(ValueError, match=r"num_classes=5, in_channels=64"):
        from mmspd.classification.zero_shot import check_head_shape
        check_head_shape(zero_shot_head(state, NAMES, 'vanilla'), 5, 64)


def test_wise_ft_refuses_a_second_zero_shot_head(clip_files, tmp_path):
    from mmspd.robust_ft.wise_ft import run_wise_ft
    _, _, _, head, model_file, backbone = clip_files
    cfg = _config('domainnet_spd_zeroshot-head', backbone, head)
    with pytest.raises(ValueError, match=r"--zero-shot-head '.*head\.pth' "
                       r'would be ignored'):
        run_wise_ft(cfg, model_file, [0.0], str(tmp_path),
                    zero_shot_head=head)
