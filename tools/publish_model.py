#!/usr/bin/env python
"""Publish a checkpoint for a model zoo.

    python tools/publish_model.py IN OUT

Keeps the weights (``state_dict``) and the plain-data ``meta`` of the
training checkpoint IN; drops the optimizer state (AdamSPD's and AdamL2SP's
anchors included), the message hub and the schedulers. Writes
``OUT-<first 8 hex digits of the file's sha256>.pth`` (OUT with or without
``.pth``) and prints its path. The result loads with
``torch.load(path, weights_only=True)``.
"""
import argparse
import sys

from mmspd.zoo.publish import publish_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Keep a checkpoint\'s weights and plain meta and name '
        'the file after its sha256')
    parser.add_argument('in_file', help='training checkpoint (.pth)')
    parser.add_argument('out_file',
                        help='output name, e.g. checkpoints/model (-> '
                        'checkpoints/model-1a2b3c4d.pth)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    try:
        path, dropped = publish_checkpoint(args.in_file, args.out_file)
    except (OSError, ValueError) as error:
        sys.exit(f'publish_model: {error}')
    if dropped:
        print(f'left out: {", ".join(dropped)}')
    print(path)
    return path


if __name__ == '__main__':
    main()
