"""A "pretrained" Swin-T file in the layout of OpenMMLab's ImageNet-1k
Swin-T checkpoint that the segmentation configs load
(``swin_tiny_patch4_window7_224_20220317-1cdeb081.pth``), random values.

The layout is inferred, not read from the file (no network here): mmseg's
converted classifier weights under ``backbone.`` in mmseg's names, with the
classifier's final ``norm`` and the shifted blocks' ``attn_mask`` buffers
(stages 0-2; stage 3's window covers its whole 7x7 map, no shift) and
without the segmentation backbone's output norms ``norm0``..``norm3``, as
the load logs of such files in mmseg's issue tracker show
(open-mmlab/mmsegmentation#2509: unexpected ``norm.weight``, ``norm.bias``,
``stages.*.blocks.1.attn_mask``; missing ``norm0``..``norm3``).
"""
import re
from typing import Dict

import torch
from torch import Tensor

#: The shifted blocks of Swin-T (depths 2-2-6-2) whose 224x224 pre-training
#: resolution leaves more than one window: (stage, block, windows).
SHIFTED_MASKS = [(0, 1, 64), (1, 1, 16), (2, 1, 4), (2, 3, 4), (2, 5, 4)]


def swin_t_release_state(backbone_cfg: dict, seed: int = 11
                         ) -> Dict[str, Tensor]:
    """The file's tensors for the backbone ``backbone_cfg`` builds (the
    configs' Swin-T): random weights (LayerNorm gains near 1), the
    backbone's own ``relative_position_index`` buffers."""
    from mmseg.registry import MODELS
    cfg = dict(backbone_cfg, init_cfg=None, _scope_='mmseg')
    backbone = MODELS.build(cfg)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in backbone.state_dict().items():
        if re.match(r'norm[0-3]\.', name):
            continue  # output norms: new in the segmentation backbone
        if value.is_floating_point():
            gain = name.endswith('weight') and 'norm' in name
            value = float(gain) + 0.05 * torch.randn(value.shape,
                                                     generator=gen)
        state[f'backbone.{name}'] = value.clone()
    width = backbone_cfg.get('embed_dims', 96) * 8
    state['backbone.norm.weight'] = 1 + 0.05 * torch.randn(width,
                                                           generator=gen)
    state['backbone.norm.bias'] = 0.05 * torch.randn(width, generator=gen)
    for stage, block, windows in SHIFTED_MASKS:
        state[f'backbone.stages.{stage}.blocks.{block}.attn_mask'] = \
            torch.where(torch.rand(windows, 49, 49, generator=gen) < 0.5,
                        0.0, -100.0)
    return state


def write_swin_t_release(path: str, backbone_cfg: dict,
                         seed: int = 11) -> Dict[str, Tensor]:
    """Save :func:`swin_t_release_state` as a flat dict to ``path``."""
    state = swin_t_release_state(backbone_cfg, seed)
    torch.save(state, path)
    return state
