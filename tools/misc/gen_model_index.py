#!/usr/bin/env python
"""Generate the OpenMMLab metafile and model index from test results.

    python tools/misc/gen_model_index.py [RECORDS.json ...]
        [--model NAME CONFIG RESULTS WEIGHTS [--dataset NAME]] ...
        [--metafile configs/metafile.yml] [--model-index model-index.yml]
        [--weights-url URL] [--replace]

Each model is a record: its config, the ``robustness.json`` that its test
run wrote (``tools/test.py`` with ``RobustTestLoop``), its published
checkpoint (``tools/publish_model.py``) and the ID data set's name; a
records file is a JSON list of them (``make demo`` writes
``work_dirs/demo/model_zoo.json``). Models already in the metafile are kept
unless a record has the same name or ``--replace`` is given.
"""
import argparse
import os
import sys

from mmspd.zoo.model_index import ModelRecord, load_records, write_model_index


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write configs/metafile.yml and model-index.yml from '
        'test results')
    parser.add_argument('records', nargs='*',
                        help='JSON files with model records')
    parser.add_argument('--model', nargs=4, action='append', default=[],
                        metavar=('NAME', 'CONFIG', 'RESULTS', 'WEIGHTS'),
                        help='one model (repeatable)')
    parser.add_argument('--dataset', default=None,
                        help='ID data set name of the --model entries')
    parser.add_argument('--metafile', default='configs/metafile.yml')
    parser.add_argument('--model-index', default='model-index.yml')
    parser.add_argument('--root', default=os.getcwd(),
                        help='paths in the files are relative to this '
                        '(default: the current folder)')
    parser.add_argument('--weights-url', default=None,
                        help='URL prefix where the weights are hosted '
                        '(default: local paths relative to the root)')
    parser.add_argument('--replace', action='store_true',
                        help='drop models of the metafile that no record '
                        'names')
    args = parser.parse_args(argv)
    if not args.records and not args.model:
        parser.error('give a records file or --model')
    if args.model and not args.dataset:
        parser.error('--model needs --dataset (the ID data set\'s name)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        records = [r for path in args.records for r in load_records(path)]
        records += [ModelRecord(name=n, config=c, results=r, weights=w,
                                dataset=args.dataset)
                    for n, c, r, w in args.model]
        content = write_model_index(records, args.metafile, args.model_index,
                                    args.root, args.weights_url,
                                    args.replace)
    except (OSError, ValueError) as error:
        sys.exit(f'gen_model_index: {error}')
    print(f'{args.metafile}: {len(content["Models"])} models; '
          f'{args.model_index} imports it')
    return content


if __name__ == '__main__':
    main()
