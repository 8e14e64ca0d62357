#!/usr/bin/env python
"""Run the CUDA tests and the optimizer-step benchmark; write one JSON report
(``--out``; the benchmark's JSON beside it): Python, torch, CUDA, Triton and
GPU versions, outcome counts of ``pytest -m cuda`` on test_cuda_kernels.py
and of the other CUDA tests, and the benchmark's numbers (without a GPU:
``--device cpu --models vit-ti16``). Exits with 1 on any failure."""
import argparse
import importlib.util
import json
import os
import re
import runpy
import subprocess
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TEST_RUNS = dict(
    cuda_kernels=['-m', 'cuda', 'tests/test_optim/test_cuda_kernels.py'],
    other_cuda_tests=['-m', 'cuda', 'tests',
                      '--ignore=tests/test_optim/test_cuda_kernels.py'])


def pytest_counts(args: list, timeout_s: float = 300) -> dict:
    try:
        done = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
            + args, cwd=ROOT, capture_output=True, text=True,
            timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(returncode=None, output_tail=f'ran past {timeout_s} s')
    summary = (done.stdout.strip().splitlines() or [''])[-1]
    report = {w.replace('error', 'errors'): int(n) for n, w in re.findall(
        r'(\d+) (passed|failed|skipped|deselected|error)s?\b', summary)}
    report['returncode'] = done.returncode
    if done.returncode not in (0, 5):  # 5: no test collected
        report['output_tail'] = (done.stdout + done.stderr)[-3000:]
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/gpu_check.json')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--models', nargs='+',
                        default=['vit-b16', 'vit-l14', 'vit-h14'])
    parser.add_argument('--rounds', type=int, default=10)
    args = parser.parse_args(argv)
    triton = importlib.util.find_spec('triton') and __import__('triton')
    gpu = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    report = dict(versions=dict(
        python=sys.version.split()[0], torch=torch.__version__,
        cuda=torch.version.cuda, triton=triton and triton.__version__,
        gpu=gpu or None))
    report['tests'] = {name: pytest_counts(test_args)
                       for name, test_args in TEST_RUNS.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    step_json = os.path.splitext(args.out)[0] + '_step.json'
    sys.path.insert(0, ROOT)  # mmspd, also where it is not installed
    try:
        runpy.run_path(f'{ROOT}/tools/benchmark_optimizer.py')['main'](
            ['--device', args.device, '--rounds', str(args.rounds),
             '--json', step_json, '--models'] + args.models)
        with open(step_json, encoding='utf-8') as f:
            report['benchmark'] = json.load(f)
    except (Exception, SystemExit) as error:  # recorded in the report
        report['benchmark'] = dict(error=f'{type(error).__name__}: {error}')
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1)
    print(f'report written to {args.out}')
    return int('error' in report['benchmark'] or any(
        'output_tail' in r for r in report['tests'].values()))


if __name__ == '__main__':
    sys.exit(main())
