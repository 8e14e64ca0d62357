"""OpenAI CLIP at full size, written here: its state-dict layout and its
image encoder's forward, independent of mmpretrain.

:func:`random_openai_clip_state_dict` returns random tensors with the names
and shapes of OpenAI's ``ViT-B-16.pt`` (image *and* text tower, the
``input_resolution`` / ``context_length`` / ``vocab_size`` entries, float16
as OpenAI stores them). :func:`clip_image_features` is CLIP's
``VisionTransformer.forward`` up to (not including) ``@ proj``, written as
plain tensor maths from that state dict: patch conv, class token, position
embedding, ``ln_pre``, residual blocks of multi-head attention (one fused
``in_proj``, heads of width 64) and a QuickGELU MLP, ``ln_post`` on the
class token; every LayerNorm with eps 1e-5 (``torch.nn.LayerNorm``'s
default, which OpenAI's ``LayerNorm`` subclass keeps). It computes in
float64 by default, so its own rounding is far below float32's.
"""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

#: ViT-B/16 image tower and its text tower (OpenAI's ``build_model``).
VIT_B16 = dict(width=768, layers=12, patch=16, resolution=224,
               embed_dim=512, text_width=512, text_layers=12,
               context_length=77, vocab_size=49408)
CLIP_LN_EPS = 1e-5


def _block_shapes(prefix: str, width: int) -> Dict[str, tuple]:
    return {
        f'{prefix}attn.in_proj_weight': (3 * width, width),
        f'{prefix}attn.in_proj_bias': (3 * width, ),
        f'{prefix}attn.out_proj.weight': (width, width),
        f'{prefix}attn.out_proj.bias': (width, ),
        f'{prefix}ln_1.weight': (width, ),
        f'{prefix}ln_1.bias': (width, ),
        f'{prefix}mlp.c_fc.weight': (4 * width, width),
        f'{prefix}mlp.c_fc.bias': (4 * width, ),
        f'{prefix}mlp.c_proj.weight': (width, 4 * width),
        f'{prefix}mlp.c_proj.bias': (width, ),
        f'{prefix}ln_2.weight': (width, ),
        f'{prefix}ln_2.bias': (width, ),
    }


def openai_clip_shapes(arch: dict = VIT_B16) -> Dict[str, tuple]:
    """Names and shapes of OpenAI's CLIP state dict (floating tensors)."""
    w, p, r = arch['width'], arch['patch'], arch['resolution']
    tw = arch['text_width']
    shapes = {
        'positional_embedding': (arch['context_length'], tw),
        'text_projection': (tw, arch['embed_dim']),
        'logit_scale': (),
        'visual.class_embedding': (w, ),
        'visual.positional_embedding': ((r // p) ** 2 + 1, w),
        'visual.proj': (w, arch['embed_dim']),
        'visual.conv1.weight': (w, 3, p, p),
        'visual.ln_pre.weight': (w, ),
        'visual.ln_pre.bias': (w, ),
    }
    for i in range(arch['layers']):
        shapes.update(_block_shapes(f'visual.transformer.resblocks.{i}.', w))
    shapes.update({'visual.ln_post.weight': (w, ),
                   'visual.ln_post.bias': (w, ),
                   'token_embedding.weight': (arch['vocab_size'], tw)})
    for i in range(arch['text_layers']):
        shapes.update(_block_shapes(f'transformer.resblocks.{i}.', tw))
    shapes.update({'ln_final.weight': (tw, ), 'ln_final.bias': (tw, )})
    return shapes


def random_openai_clip_state_dict(seed: int = 0, arch: dict = VIT_B16,
                                  dtype=torch.float16) -> Dict[str, Tensor]:
    """Random weights in OpenAI's layout at the scales of CLIP's own
    initialisation: class token, position embeddings and projections
    ``width ** -0.5 * N(0, 1)`` (as OpenAI's ``VisionTransformer`` draws
    them), matrices N(0, 1/fan_in); LayerNorm weights ~ N(1, 0.2) and biases
    ~ N(0, 0.2), so a swapped or mis-configured norm shows. The class token
    enters ``ln_pre`` with a variance of ~2/width, where the norm's eps
    matters as it does with OpenAI's trained weights."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in openai_clip_shapes(arch).items():
        if name.endswith(('ln_1.weight', 'ln_2.weight', 'ln_pre.weight',
                          'ln_post.weight', 'ln_final.weight')):
            value = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith(('class_embedding', 'positional_embedding',
                            'proj', 'projection')):
            width = shape[-1] if name.endswith('embedding') else shape[0]
            value = width ** -0.5 * torch.randn(shape, generator=gen)
        elif len(shape) >= 2 and 'embedding' not in name:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            value = torch.randn(shape, generator=gen) / fan_in ** 0.5
        else:
            value = 0.2 * torch.randn(shape, generator=gen)
        state[name] = value.to(dtype)
    # in the TorchScript archive's state dict, dropped by OpenAI's loader
    state['input_resolution'] = torch.tensor(arch['resolution'])
    state['context_length'] = torch.tensor(arch['context_length'])
    state['vocab_size'] = torch.tensor(arch['vocab_size'])
    return state


def _layer_norm(x: Tensor, state: dict, name: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f'{name}.weight'],
                        state[f'{name}.bias'], eps=CLIP_LN_EPS)


def _attention(x: Tensor, state: dict, prefix: str, heads: int) -> Tensor:
    """``nn.MultiheadAttention(width, heads)(x, x, x)`` on (batch, tokens,
    width): q, k, v from one fused projection, q scaled by 1/sqrt(d)."""
    batch, tokens, width = x.shape
    qkv = x @ state[f'{prefix}in_proj_weight'].T + state[f'{prefix}in_proj_bias']
    q, k, v = qkv.split(width, dim=-1)

    def split_heads(t):
        return t.reshape(batch, tokens, heads, width // heads).transpose(1, 2)

    q, k, v = split_heads(q), split_heads(k), split_heads(v)
    scores = (q / (width // heads) ** 0.5) @ k.transpose(-2, -1)
    out = scores.softmax(dim=-1) @ v
    out = out.transpose(1, 2).reshape(batch, tokens, width)
    return (out @ state[f'{prefix}out_proj.weight'].T
            + state[f'{prefix}out_proj.bias'])


def clip_image_features(state_dict: Dict[str, Tensor], images: Tensor,
                        dtype=torch.float64) -> Tensor:
    """CLIP's image-encoder class token after ``ln_post`` (before ``proj``)
    for ``images`` (N, 3, H, W, already normalised), from the ``visual.*``
    tensors of ``state_dict``, computed in ``dtype``."""
    state = {k[len('visual.'):]: v.to(dtype) for k, v in state_dict.items()
             if k.startswith('visual.')}
    patch = state['conv1.weight'].shape[-1]
    width = state['conv1.weight'].shape[0]
    heads = width // 64
    x = F.conv2d(images.to(dtype), state['conv1.weight'], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # (N, grid*grid, width)
    cls = state['class_embedding'].expand(x.shape[0], 1, width)
    x = torch.cat([cls, x], dim=1) + state['positional_embedding']
    x = _layer_norm(x, state, 'ln_pre')
    depth = 1 + max(int(k.split('.')[2]) for k in state
                    if k.startswith('transformer.resblocks.'))
    for i in range(depth):
        p = f'transformer.resblocks.{i}.'
        x = x + _attention(_layer_norm(x, state, p + 'ln_1'), state,
                           p + 'attn.', heads)
        h = _layer_norm(x, state, p + 'ln_2')
        h = h @ state[p + 'mlp.c_fc.weight'].T + state[p + 'mlp.c_fc.bias']
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + (h @ state[p + 'mlp.c_proj.weight'].T
                 + state[p + 'mlp.c_proj.bias'])
    return _layer_norm(x[:, 0], state, 'ln_post')
