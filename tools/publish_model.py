#!/usr/bin/env python
"""Publish a checkpoint for a model zoo.

    python tools/publish_model.py IN OUT [--results robustness.json]
        [--root FOLDER]

Keeps the weights (``state_dict``) and the plain-data ``meta`` of the
training checkpoint IN; drops the optimizer state (AdamSPD's and AdamL2SP's
anchors included), the message hub, the schedulers and the run's time
stamps. The meta records the mmspd and mmengine versions, the git commit,
the config with its paths made relative to FOLDER (default: the current
folder; other absolute paths keep their last component) and, with
``--results``, the test metrics. Writes ``OUT-<first 8 hex digits of the
file's sha256>.pth`` (OUT with or without ``.pth``) and prints its path:
the same weights and provenance give the same bytes and name on any
machine. The result loads with ``torch.load(path, weights_only=True)``.
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
    parser.add_argument('--results', default=None,
                        help='robustness.json (or JSON of metric: value) '
                        'of the test run, recorded as meta.metrics')
    parser.add_argument('--root', default=None,
                        help='folder the paths in the meta are made '
                        'relative to (default: the current folder)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    try:
        path, dropped = publish_checkpoint(args.in_file, args.out_file,
                                            args.root, args.results)
    except (OSError, ValueError) as error:
        sys.exit(f'publish_model: {error}')
    if dropped:
        print(f'left out: {", ".join(dropped)}')
    print(path)
    return path


if __name__ == '__main__':
    main()
