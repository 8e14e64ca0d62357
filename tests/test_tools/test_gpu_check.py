"""tools/misc/gpu_check.py: pytest outcomes counted from real pytest runs;
one report with the versions, both test runs and the benchmark's JSON."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.tool_modules import REPO, load_tool


@pytest.fixture(scope='module')
def check():
    return load_tool('misc/gpu_check.py')


def test_counts_come_from_the_pytest_run(check, tmp_path):
    tests = tmp_path / 'test_outcomes.py'
    tests.write_text(
        'import pytest\n\n'
        'def test_passes():\n    pass\n\n'
        'def test_fails():\n    assert 1 == 2\n\n'
        'def test_skips():\n    pytest.skip("no")\n\n'
        '@pytest.fixture\ndef broken():\n    raise ValueError("setup")\n\n'
        'def test_errors(broken):\n    pass\n')
    counts = check.pytest_counts([str(tests)])
    tail = counts.pop('output_tail')
    assert counts == dict(passed=1, failed=1, skipped=1, errors=1,
                          returncode=1)
    assert 'test_fails' in tail and 'ValueError' in tail  # for reading


def test_a_clean_run_has_no_error(check, tmp_path):
    tests = tmp_path / 'test_clean.py'
    tests.write_text('def test_passes():\n    pass\n')
    assert check.pytest_counts([str(tests)]) == dict(passed=1, returncode=0)


def test_a_run_past_its_time_is_an_error(check, tmp_path):
    counts = check.pytest_counts([str(tmp_path)], timeout_s=0.01)
    assert counts == dict(returncode=None, output_tail='ran past 0.01 s')


@pytest.mark.slow
def test_report_holds_versions_tests_and_the_benchmark_json(tmp_path):
    out = tmp_path / 'check' / 'report.json'
    exclude = os.path.join(REPO, '.git', 'info', 'exclude')
    before = open(exclude).read() if os.path.exists(exclude) else None
    done = subprocess.run(
        [sys.executable, 'tools/misc/gpu_check.py', '--out', str(out),
         '--device', 'cpu', '--models', 'vit-ti16', '--rounds', '1'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {'versions', 'tests', 'benchmark'}
    versions = report['versions']
    assert versions['torch'] == torch.__version__
    assert versions['python'] == '%d.%d.%d' % sys.version_info[:3]
    assert (versions['gpu'] is None) == (not torch.cuda.is_available())
    kernels = report['tests']['cuda_kernels']
    assert kernels['returncode'] == 0 and 'output_tail' not in kernels
    if not torch.cuda.is_available():  # collected, every one skipped
        assert kernels['skipped'] > 10 and 'passed' not in kernels
    others = report['tests']['other_cuda_tests']
    assert others['returncode'] == 0 and others['deselected'] > 0
    assert others.get('passed', 0) + others.get('skipped', 0) >= 8
    step = json.loads((tmp_path / 'check' / 'report_step.json').read_text())
    assert report['benchmark'] == step
    assert step['device'] == 'cpu' and list(step['models']) == ['vit-ti16']
    assert step['models']['vit-ti16']['optimizers']['AdamSPD(default)'][
        'median_s'] > 0
    after = open(exclude).read() if os.path.exists(exclude) else None
    assert after == before  # nothing under .git is written


def test_shell_entry_point_runs_the_check():
    done = subprocess.run(['bash', 'tools/misc/gpu_check.sh', '--help'],
                          cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ,
                                                PYTHON=sys.executable))
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'usage: gpu_check.py' in done.stdout and '--out' in done.stdout
