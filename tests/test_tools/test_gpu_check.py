"""tools/misc/gpu_check: on a machine without CUDA it still prints one valid
JSON object, with every CUDA part skipped and the reason given."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CUDA_PARTS = ('host_syncs', 'cuda_graph', 'amp', 'benchmark', 'training')

needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(),
    reason='checks the fallbacks of a machine without CUDA')


def _run(command, **env):
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # the whole of stdout is one JSON


@pytest.mark.slow
@needs_no_cuda
def test_cpu_run_skips_the_cuda_parts_and_prints_json(tmp_path):
    out = tmp_path / 'check.json'
    report = _run([sys.executable, 'tools/misc/gpu_check.py', '--skip-tests',
                   '--json', str(out)])
    assert json.loads(out.read_text()) == report
    env = report['environment']
    assert env['torch'] == torch.__version__
    assert env['cuda_available'] is False
    assert not env['mmengine'].startswith('no')  # the tests could run
    assert report['cuda_tests']['skipped'] == 'skipped: --skip-tests'
    for part in CUDA_PARTS:
        assert report[part] == {'skipped': 'skipped: no CUDA device'}, \
            (part, report[part])


@pytest.mark.slow
@needs_no_cuda
def test_shell_entry_point_runs_the_same_check():
    report = _run(['bash', 'tools/misc/gpu_check.sh', '--skip-tests',
                   '--budget-s', '100'], PYTHON=sys.executable)
    assert set(CUDA_PARTS) <= set(report)
    assert report['benchmark']['skipped'] == 'skipped: no CUDA device'


def test_parts_past_the_budget_are_skipped_and_errors_recorded():
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'misc'))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)

    def fails():
        raise ValueError('boom')

    report = gpu_check.run_parts(
        dict(quick=lambda: dict(value=1), slow=lambda: dict(value=2),
             broken=fails),
        cost_s=dict(slow=1e9), budget_s=60, needs_cuda={})
    assert report['quick']['value'] == 1
    assert report['slow']['skipped'].startswith('skipped: ')
    assert 'needed' in report['slow']['skipped']
    assert report['broken']['error'] == 'ValueError: boom'


def test_config_batch_is_read_from_the_config_file():
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'misc'))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    assert gpu_check.config_batch('configs/_base_/imagenet_clip_vit-b16.py',
                                  default=-1) == 64
