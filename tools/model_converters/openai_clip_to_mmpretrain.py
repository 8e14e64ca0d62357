#!/usr/bin/env python
"""Convert OpenAI's CLIP image encoder to mmpretrain ViT weights.

    python tools/model_converters/openai_clip_to_mmpretrain.py SRC DST

SRC is OpenAI's ``ViT-B-16.pt`` (TorchScript) or a state dict with
``visual.*`` keys, as a path or an http(s) URL (downloaded to torch's hub
cache). DST gets ``{'state_dict': {'backbone.<name>': tensor}}``, checked by
a strict load into the ViT the shapes describe; the configs
``configs/{domainnet,imagenet}_*.py`` read it through the backbone's
``init_cfg`` (``checkpoints/clip-vit-base-p16_openai.pth`` by default).
"""
import argparse
import os
import os.path as osp

import torch

from mmspd.classification.clip_checkpoint import (OPENAI_VIT_B16_URL,
                                                  check_loadable,
                                                  convert_visual,
                                                  fetch_clip_file,
                                                  load_clip_state_dict)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='OpenAI CLIP image encoder -> mmpretrain ViT weights')
    parser.add_argument('src', help='CLIP file or URL, e.g. '
                        f'{OPENAI_VIT_B16_URL}')
    parser.add_argument('dst', help='output .pth')
    return parser.parse_args(argv)


#: a local path for a path or URL (kept under this name for callers)
fetch = fetch_clip_file


def main(argv=None) -> dict:
    args = parse_args(argv)
    weights, dropped = convert_visual(load_clip_state_dict(fetch(args.src)))
    cfg = check_loadable(weights)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save({'state_dict': weights}, args.dst)
    print(f'{len(weights)} tensors -> {args.dst} (ViT {cfg["arch"]}, '
          f'img_size {cfg["img_size"]}, patch {cfg["patch_size"]}); '
          f'left out: {", ".join(dropped) or "nothing"}')
    return cfg


if __name__ == '__main__':
    main()
