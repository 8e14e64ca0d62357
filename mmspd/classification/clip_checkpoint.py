"""OpenAI CLIP image encoder -> mmpretrain ``VisionTransformer`` weights.

The SPD paper fine-tunes the *pre-trained* CLIP ViT-B/16 image encoder (not
a checkpoint already fine-tuned on ImageNet). OpenAI publishes it as a
TorchScript archive (``ViT-B-16.pt``, the URL is :data:`OPENAI_VIT_B16_URL`)
whose ``visual.*`` tensors use CLIP's own names. :func:`convert_visual`
renames them to mmpretrain's ViT with ``pre_norm=True`` (CLIP's ``ln_pre``),
QuickGELU and LayerNorm eps 1e-5 (:data:`CLIP_LAYER_NORM_EPS`), under
the ``backbone.`` prefix, so configs load them with::

    init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone')

``tools/model_converters/openai_clip_to_mmpretrain.py`` is the command.
CLIP's final projection (``visual.proj``, 768 -> 512) belongs to the
image-text head and is dropped: the classifier's new head reads the 768-d
class token after ``ln_post`` (mmpretrain's final norm ``ln1``).
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Tuple

import torch
from torch import Tensor

#: OpenAI's ViT-B/16 (the ``_MODELS`` table of openai/CLIP's ``clip.py``).
OPENAI_VIT_B16_URL = (
    'https://openaipublic.azureedge.net/clip/models/'
    '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/'
    'ViT-B-16.pt')

_LAYER = re.compile(r'^transformer\.resblocks\.(\d+)\.(.+)$')
_LAYER_NAMES = {
    'ln_1': 'ln1',
    'ln_2': 'ln2',
    'attn.in_proj_weight': 'attn.qkv.weight',
    'attn.in_proj_bias': 'attn.qkv.bias',
    'attn.out_proj': 'attn.proj',
    'mlp.c_fc': 'ffn.layers.0.0',
    'mlp.c_proj': 'ffn.layers.1',
}
#: eps of every LayerNorm in CLIP (``nn.LayerNorm``'s default); mmpretrain's
#: ViT default is 1e-6, so configs must set ``norm_cfg`` explicitly.
CLIP_LAYER_NORM_EPS = 1e-5
#: ``visual.*`` keys that are not image-encoder weights of the classifier.
DROPPED = ('proj', )


def fetch_clip_file(src: str) -> str:
    """A local path for ``src``: an existing file, or an http(s) URL
    downloaded once to torch's hub cache (``<hub dir>/checkpoints``).
    ``FileNotFoundError`` naming a missing local file."""
    if not src.startswith(('http://', 'https://')):
        if not osp.isfile(src):
            raise FileNotFoundError(f'CLIP file {src!r} does not exist')
        return src
    folder = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, osp.basename(src))
    if not osp.isfile(path):
        torch.hub.download_url_to_file(src, path)
    return path


def load_clip_state_dict(path: str) -> Dict[str, Tensor]:
    """The state dict of a CLIP file: TorchScript archive or plain dict.

    A plain file is read with ``torch.load(weights_only=True)``; a
    ``{'state_dict': ...}`` wrapper is unwrapped.
    """
    try:
        return dict(torch.jit.load(path, map_location='cpu').state_dict())
    except RuntimeError:
        pass
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path!r} holds a {type(checkpoint).__name__}, not '
                         f'a TorchScript CLIP model or a state dict')
    return checkpoint


def _rename(key: str) -> str:
    """mmpretrain name of one ``visual.``-stripped CLIP key."""
    simple = {'conv1.weight': 'patch_embed.projection.weight',
              'class_embedding': 'cls_token',
              'positional_embedding': 'pos_embed'}
    if key in simple:
        return simple[key]
    for clip, mm in (('ln_pre.', 'pre_norm.'), ('ln_post.', 'ln1.')):
        if key.startswith(clip):
            return mm + key[len(clip):]
    match = _LAYER.match(key)
    if match:
        index, rest = match.groups()
        for clip, mm in _LAYER_NAMES.items():
            if rest == clip or rest.startswith(clip + '.'):
                return f'layers.{index}.{mm}{rest[len(clip):]}'
    raise KeyError(f'Unexpected CLIP image-encoder key {"visual." + key!r}')


def convert_visual(state_dict: Dict[str, Tensor]
                   ) -> Tuple['OrderedDict[str, Tensor]', list]:
    """Convert CLIP's ``visual.*`` tensors; return ``(weights, dropped)``.

    ``weights`` maps ``backbone.<mmpretrain name>`` to tensors (the class
    token and position embedding get mmpretrain's leading batch dims);
    ``dropped`` lists the ``visual.*`` keys left out (the projection). Keys
    outside ``visual.`` (the text tower) are ignored. Raises ``ValueError``
    when there is no ``visual.`` key and ``KeyError`` naming an unknown one.
    """
    visual = {k[len('visual.'):]: v for k, v in state_dict.items()
              if k.startswith('visual.')}
    if not visual:
        prefixes = sorted({k.split('.')[0] for k in state_dict})[:8]
        raise ValueError(f'No "visual.*" keys: not a CLIP state dict (its '
                         f'keys start with {prefixes})')
    converted = OrderedDict()
    dropped = []
    for key, value in visual.items():
        if key in DROPPED:
            dropped.append(f'visual.{key}')
            continue
        name = _rename(key)
        if name == 'cls_token':
            value = value.reshape(1, 1, -1)
        elif name == 'pos_embed':
            value = value.unsqueeze(0)
        # OpenAI stores half precision; fine-tuning and the anchors are fp32
        if value.is_floating_point():
            value = value.float()
        converted[f'backbone.{name}'] = value.detach().clone().contiguous()
    return converted, dropped


def backbone_config(weights: Dict[str, Tensor]) -> dict:
    """The mmpretrain ``VisionTransformer`` config these weights fit.

    Read from the shapes: width, depth, MLP width, patch and image size; the
    head count is CLIP's width / 64 (it does not change any shape).
    """
    patch = weights['backbone.patch_embed.projection.weight']
    embed_dims, patch_size = patch.shape[0], patch.shape[-1]
    tokens = weights['backbone.pos_embed'].shape[1] - 1
    grid = int(round(tokens ** 0.5))
    if grid * grid != tokens:
        raise ValueError(f'pos_embed has {tokens} patch tokens, not a '
                         f'square grid')
    depth = 1 + max(int(k.split('.')[2]) for k in weights
                    if k.startswith('backbone.layers.'))
    ffn = weights['backbone.layers.0.ffn.layers.0.0.weight'].shape[0]
    return dict(
        type='VisionTransformer',
        arch=dict(embed_dims=embed_dims, num_layers=depth,
                  num_heads=max(1, embed_dims // 64),
                  feedforward_channels=ffn),
        img_size=grid * patch_size,
        patch_size=patch_size,
        pre_norm=True,
        norm_cfg=dict(type='LN', eps=CLIP_LAYER_NORM_EPS),
        layer_cfgs=dict(act_cfg=dict(type='QuickGELU')))


def check_loadable(weights: Dict[str, Tensor]) -> dict:
    """Load ``weights`` strictly into the ViT they describe; return its
    config. Raises ``RuntimeError`` naming missing/unexpected keys."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = backbone_config(weights)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(cfg)
    backbone.load_state_dict(
        {k[len('backbone.'):]: v for k, v in weights.items()}, strict=True)
    return cfg
