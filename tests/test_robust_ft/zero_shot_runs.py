"""A tiny random CLIP in OpenAI's layout (text tower included), the files
the real tools make from it (the converted image encoder, CLIP's zero-shot
head for DomainNet's 345 classes, the zero-shot model file) and the
``configs/domainnet_*_zeroshot-head.py`` configs shrunk to it, on tiny
DomainNet data: for the zero-shot test runs and the report.

Only sizes, paths, run length and the lr of the configs change
(:func:`tests.test_robust_ft.tiny_vit.tiny_vit_config`, with the ViT of
this CLIP: width 64, 2 layers, one head as OpenAI's width / 64).
"""
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.config import Config

from tests.test_classification.data_files import write_domainnet
from tests.test_classification.openai_clip_reference import \
    random_openai_clip_state_dict
from tests.test_robust_ft.tiny_vit import tiny_vit_config, vit_config
from tests.tool_modules import load_tool

#: The tiny CLIP (OpenAI's ``build_model`` sizes), and its image encoder as
#: the configs' mmpretrain ViT.
TINY = dict(width=64, layers=2, patch=8, resolution=32, embed_dim=32,
            text_width=64, text_layers=2, context_length=77,
            vocab_size=49408)
TINY_VIT = dict(embed_dims=64, num_layers=2, num_heads=1,
                feedforward_channels=256)


def write_clip(folder, seed: int = 0) -> Dict[str, str]:
    """OpenAI-layout CLIP file ``src`` (float16, logit scale 100 as
    OpenAI's) and, made by the real tools, its image encoder ``backbone``,
    the DomainNet zero-shot ``head`` (one template, to stay fast) and the
    zero-shot ``model`` file; returns the paths and the ``state``."""
    folder = str(folder)
    state = random_openai_clip_state_dict(seed=seed, arch=TINY)
    state['logit_scale'] = torch.tensor(4.6052).half()
    src = osp.join(folder, 'ViT-T-8.pt')
    torch.save(state, src)
    backbone = osp.join(folder, 'clip-vit-tiny_openai.pth')
    load_tool('model_converters/openai_clip_to_mmpretrain.py').main(
        [src, backbone])
    head = osp.join(folder, 'clip-vit-tiny_zeroshot-head_domainnet.pth')
    model = osp.join(folder, 'clip-vit-tiny_zeroshot-model_domainnet.pth')
    load_tool('model_converters/clip_zero_shot_head.py').main(
        [src, head, '--dataset', 'domainnet', '--templates', 'vanilla',
         '--model-out', model])
    return dict(state=state, src=src, backbone=backbone, head=head,
                model=model)


def write_data(folder) -> str:
    """Tiny DomainNet (4 classes, 1 image each per split and domain)."""
    root = osp.join(str(folder), 'domainnet')
    write_domainnet(root, per_class=1)
    return root


def zero_shot_config(name: str, work_dir, clip: Dict[str, str],
                     data_root: str, options: Optional[dict] = None
                     ) -> Config:
    """``configs/<name>.py`` (a DomainNet config) on the tiny CLIP: the
    backbone loaded from ``clip``'s image encoder by the config's own
    ``init_cfg``, and the head from ``clip``'s zero-shot head when the
    config loads one (a ``*_zeroshot-head.py`` config)."""
    cfg = tiny_vit_config(name, work_dir, clip['backbone'], data_root,
                          max_epochs=2, options=options)
    vit_config(cfg).arch = TINY_VIT
    cfg.model.head.in_channels = TINY_VIT['embed_dims']
    if cfg.model.head.get('init_cfg'):
        cfg.model.head.init_cfg.checkpoint = clip['head']
    return cfg


def dump_config(cfg: Config, folder, name: str) -> str:
    """``cfg`` written as ``folder/<name>.py`` (what the tools read; the
    file name is the method name in reports)."""
    os.makedirs(str(folder), exist_ok=True)
    path = osp.join(str(folder), f'{name}.py')
    cfg.dump(path)
    return path
