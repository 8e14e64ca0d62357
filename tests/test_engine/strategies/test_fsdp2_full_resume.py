"""Resuming from a 'full' checkpoint file under FSDP2Strategy: rank 0
alone reads the file and sends the weights and optimizer state to the
other processes, and the resumed run ends where the uninterrupted one
does (2 gloo processes; tests/test_engine/strategies/
fsdp2_full_resume_worker.py)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from tests.distributed import free_port
from tests.test_engine.strategies.test_fsdp2_strategy import _env
from tests.tool_modules import REPO

WORKER = osp.join('tests', 'test_engine', 'strategies',
                  'fsdp2_full_resume_worker.py')


@pytest.fixture(scope='module')
def resumed(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('full_resume')
    out = work_dir / 'out.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', WORKER, str(work_dir), str(out)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_only_rank0_reads_the_file(resumed):
    assert resumed['loads_per_rank'] == [1, 0]


@pytest.mark.slow
def test_resume_from_the_file_equals_the_uninterrupted_run(resumed):
    assert resumed['anchors_saved']
    # weights, moments, anchors, steps and the param groups (lr halved
    # before the save) of every rank's shards
    assert resumed['weights'] == 0.0
    assert resumed['optimizer'] == 0.0
    assert resumed['lr'] == [5e-3]
