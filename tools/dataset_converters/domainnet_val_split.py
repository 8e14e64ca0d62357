#!/usr/bin/env python
"""Carve an ID validation list out of an official DomainNet train list.

    python tools/dataset_converters/domainnet_val_split.py data/domainnet \
        --domain real [--val-fraction 0.1] [--seed 0] [--train-percent 10]

Reads ``<root>/<domain>_train.txt`` and writes ``<domain>_train_split.txt``
and ``<domain>_val_split.txt`` (per class, ``val_fraction`` of the images
go to validation), plus ``<domain>_train_<p>_percent_split.txt`` for each
``--train-percent p``. Use the robust fine-tuning protocol's own lists when
you have them; this is for when you only have the official ones. Existing
files are not overwritten.
"""
import argparse
import os.path as osp

from mmspd.classification.domainnet import (DOMAINNET_DOMAINS,
                                            carve_validation_split)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='DomainNet folder with the split files')
    parser.add_argument('--domain', default='real', choices=DOMAINNET_DOMAINS)
    parser.add_argument('--val-fraction', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-percent', type=int, nargs='*', default=[])
    return parser.parse_args(argv)


def _write(path, lines):
    if osp.exists(path):
        raise FileExistsError(f'{path!r} exists; not overwriting it')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(''.join(line + '\n' for line in lines))
    print(f'{len(lines):7d} images -> {path}')


def main(argv=None):
    args = parse_args(argv)
    source = osp.join(args.root, f'{args.domain}_train.txt')
    if not osp.isfile(source):
        raise FileNotFoundError(f'official train list {source!r} does not '
                                f'exist')
    with open(source, encoding='utf-8') as f:
        lines = [line.strip() for line in f if line.strip()]
    train, val = carve_validation_split(lines, args.val_fraction, args.seed)
    prefix = osp.join(args.root, args.domain)
    _write(f'{prefix}_train_split.txt', train)
    _write(f'{prefix}_val_split.txt', val)
    for percent in args.train_percent:
        if not 0 < percent < 100:
            raise ValueError(f'--train-percent must be in (0, 100), got '
                             f'{percent}')
        subset, _ = carve_validation_split(lines, args.val_fraction,
                                           args.seed, percent / 100)
        _write(f'{prefix}_train_{percent}_percent_split.txt', subset)


if __name__ == '__main__':
    main()
