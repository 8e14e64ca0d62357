"""The Triton kernel's tests through Triton's interpreter (CPU tensors).

``triton_interpreted_cases.py`` holds them; they run here in a fresh
process that starts with ``TRITON_INTERPRET=1``, since Triton reads it at
import (see that module). Without Triton this skips.
"""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip('triton')

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CASES = os.path.join('tests', 'test_optim', 'triton_interpreted_cases.py')


@pytest.mark.slow
def test_triton_kernel_through_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', CASES, '-q', '-p',
         'no:cacheprovider', '-o', 'addopts=', '-rfEs'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r'(\d+) passed', summary)
    # every case ran: none skipped (a skip would mean no interpreter)
    assert passed and int(passed.group(1)) >= 20, summary
    assert 'skipped' not in summary and 'deselected' not in summary, summary
