#!/usr/bin/env python
"""CLIP's zero-shot classifier as the configs' linear head.

    python tools/model_converters/clip_zero_shot_head.py SRC DST
        (--dataset imagenet|imagenet-a|imagenet-r|domainnet
         | --class-names FILE)
        [--templates openai_imagenet] [--config CONFIG]
        [--model-out MODEL.pth] [--device cpu|cuda]

SRC is OpenAI's CLIP file (``ViT-B-16.pt``, ``ViT-L-14.pt``: TorchScript
archive or state dict with the text tower), a path or an http(s) URL. DST
gets ``{'state_dict': {'head.layers.head.weight': W, 'head.layers.head.bias':
0}}`` with ``W = exp(logit_scale) * T @ visual.proj^T`` (T: per class the
normalised mean over the templates of the normalised text embeddings;
:mod:`mmspd.classification.zero_shot`), which the ``*_zeroshot-head.py``
configs load through the head's ``init_cfg`` (``prefix='head'``).
``--class-names`` reads one name per line (label order). ``--config``
checks the class count and the head's shape against that config's head.
``--model-out`` also writes the zero-shot *model* (the converted CLIP image
encoder plus this head, every tensor of the classifier), to evaluate it
with ``tools/test.py CONFIG MODEL.pth`` without training: the numbers of
``tools/test.py CONFIG --zero-shot``, which needs no such file.
"""
import argparse
import os
import os.path as osp
import time

import torch

from mmspd.classification.clip_checkpoint import (check_loadable,
                                                  convert_visual,
                                                  fetch_clip_file,
                                                  load_clip_state_dict)
from mmspd.classification.zero_shot import (DATASETS, check_class_count,
                                            check_head_shape, class_names,
                                            get_templates, zero_shot_head)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='CLIP zero-shot classifier -> linear head weights')
    parser.add_argument('src', help='OpenAI CLIP file or URL (with its '
                        'text tower)')
    parser.add_argument('dst', help='output .pth (the head tensors)')
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument('--dataset', choices=DATASETS,
                       help='class names of this data set, in label order')
    names.add_argument('--class-names', help='text file, one class name a '
                       'line, in label order')
    parser.add_argument('--templates', default='openai_imagenet',
                        help='prompt template set (default: '
                        'openai_imagenet, OpenAI\'s 80 ImageNet templates)')
    parser.add_argument('--config', help='check the head against this '
                        'config\'s model.head (num_classes, in_channels)')
    parser.add_argument('--model-out', help='also write the zero-shot '
                        'model: converted image encoder + this head')
    parser.add_argument('--device', default='cpu',
                        help='device of the text encoder (default: cpu)')
    return parser.parse_args(argv)


def read_class_names(path: str) -> list:
    """Non-empty lines of ``path``, stripped; ``ValueError`` if none."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Class-name file {path!r} does not exist')
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f'Class-name file {path!r} holds no names')
    return names


def config_head(path: str) -> tuple:
    """``(num_classes, in_channels)`` of a config's ``model.head``."""
    from mmengine.config import Config
    head = Config.fromfile(path).model.head
    return int(head.num_classes), int(head.in_channels)


def _save(obj, path):
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(obj, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    templates = get_templates(args.templates)  # fail before any loading
    names = (class_names(args.dataset) if args.dataset
             else read_class_names(args.class_names))
    expected = config_head(args.config) if args.config else None
    if expected is not None:
        check_class_count(names, expected[0],
                          f'The class list ({args.dataset or args.class_names})')
    path = fetch_clip_file(args.src)
    state = load_clip_state_dict(path)
    start = time.time()
    head = zero_shot_head(state, names, templates, device=args.device,
                          source=f'CLIP file {args.src!r}')
    if expected is not None:
        check_head_shape(head, *expected,
                         what=f'The zero-shot head of {args.src!r}')
    meta = dict(source=args.src, classes=args.dataset or args.class_names,
                num_classes=len(names), templates=args.templates,
                num_templates=len(templates),
                logit_scale=float(state['logit_scale'].float().exp()))
    _save({'state_dict': head, 'meta': meta}, args.dst)
    weight = next(iter(head.values()))
    print(f'zero-shot head {tuple(weight.shape)} ({len(names)} classes x '
          f'{len(templates)} templates {args.templates!r}, logit scale '
          f'{meta["logit_scale"]:.4g}) -> {args.dst} in '
          f'{time.time() - start:.1f} s')
    if args.model_out:
        backbone, _ = convert_visual(state)
        check_loadable(backbone)
        _save({'state_dict': {**backbone, **head},
               'meta': dict(meta, zero_shot_model=True)}, args.model_out)
        print(f'zero-shot model ({len(backbone)} backbone tensors + head) '
              f'-> {args.model_out}')
    return head


if __name__ == '__main__':
    main()
