"""A sharded (FSDP2) run SIGKILLed while it writes a checkpoint, then
``tools/dist_train.sh ... --resume``: it continues from the last complete
checkpoint and ends where an uninterrupted run ends.

Both runs: ``tests/data/configs/tiny_vit_fsdp2.py`` on 2 gloo processes,
checkpoints every 2 iterations (one kept). The killed run gets a
``sitecustomize`` that holds every process for a minute right after DCP
wrote the shards of ``iter_4.pth`` (into ``iter_4.pth.tmp``), before rank 0
writes ``meta.pth`` and renames the directory; the whole process group is
killed there. The next ``--resume`` must pick ``iter_2.pth``, not the
directory of shards, and train to the end.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmspd.engine.resume import find_resume_checkpoint
from mmspd.engine.sharded_checkpoint import (DCP_METADATA_FILE, META_FILE,
                                             consolidate_sharded_checkpoint,
                                             is_complete_sharded_checkpoint)
from mmspd.engine.durable_files import TMP_SUFFIX
from tests.dataset_files import write_custom_classification_set
from tests.distributed import free_port
from tests.test_engine.strategies.test_fsdp2_strategy import (
    _initial_weights, _max_diff, _optimizer_diff)
from tests.tool_modules import REPO

CONFIG = osp.join('tests', 'data', 'configs', 'tiny_vit_fsdp2.py')
MAX_ITERS = 6
#: the checkpoint whose save is interrupted
KILLED_AT = 'iter_4.pth'

# Imported by every Python process of the killed run (PYTHONPATH): once DCP
# has written the shards of the checkpoint named by MMSPD_TEST_HOLD_AFTER,
# each rank sleeps, so the test can kill the job at that point.
SITECUSTOMIZE = """
import os, time
_hold = os.environ.get('MMSPD_TEST_HOLD_AFTER')
if _hold:
    import torch.distributed.checkpoint as _dcp
    _save = _dcp.save
    def _holding_save(state_dict, *args, checkpoint_id=None, **kwargs):
        result = _save(state_dict, *args, checkpoint_id=checkpoint_id,
                       **kwargs)
        if str(checkpoint_id).endswith(_hold):
            time.sleep(60)
        return result
    _dcp.save = _holding_save
"""


def _start(work_dir, data_root, init, *extra, hold_after=None, hooks=None):
    """``tools/dist_train.sh`` on 2 processes in its own process group."""
    path = [REPO] + ([str(hooks)] if hooks else [])
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='', PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join(path))
    if hold_after:
        env['MMSPD_TEST_HOLD_AFTER'] = hold_after
    log = open(f'{work_dir}.log', 'a')
    cmd = ['bash', osp.join('tools', 'dist_train.sh'), CONFIG, '2',
           '--work-dir', str(work_dir), *extra, '--cfg-options',
           f'train_dataloader.dataset.data_root={data_root}',
           f'val_dataloader.dataset.data_root={data_root}',
           f'load_from={init}',
           'default_hooks.checkpoint.interval=2',
           'default_hooks.checkpoint.max_keep_ckpts=1']
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def _log(work_dir) -> str:
    with open(f'{work_dir}.log') as f:
        return f.read()


def _finish(proc, log, work_dir):
    rc = proc.wait(timeout=600)
    log.close()
    assert rc == 0, _log(work_dir)


@pytest.mark.slow
def test_killed_during_a_sharded_save_resumes_to_the_uninterrupted_result(
        tmp_path):
    data_root = write_custom_classification_set(str(tmp_path / 'data'))
    init = str(tmp_path / 'init.pth')
    _initial_weights(init)
    hooks = tmp_path / 'hooks'
    hooks.mkdir()
    (hooks / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    reference, killed = tmp_path / 'reference', tmp_path / 'killed'

    ref_proc, ref_log = _start(reference, data_root, init)
    proc, log = _start(killed, data_root, init, hold_after=KILLED_AT +
                       TMP_SUFFIX, hooks=hooks)
    tmp_dir = killed / (KILLED_AT + TMP_SUFFIX)
    deadline = time.monotonic() + 300
    while not osp.isfile(tmp_dir / DCP_METADATA_FILE):
        assert proc.poll() is None, _log(killed)
        assert time.monotonic() < deadline, _log(killed)
        time.sleep(0.05)
    time.sleep(0.5)  # every rank is in the hold by now (it lasts 60 s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()

    # killed with the shards and DCP's index written, before meta.pth and
    # the rename: nothing under the final name, the previous one kept
    assert not osp.exists(tmp_dir / META_FILE)
    assert not osp.exists(killed / KILLED_AT)
    assert not is_complete_sharded_checkpoint(str(tmp_dir))
    previous = str(killed / 'iter_2.pth')
    assert is_complete_sharded_checkpoint(previous)
    assert find_resume_checkpoint(str(killed)) == previous

    proc, log = _start(killed, data_root, init, '--resume')
    _finish(proc, log, killed)
    text = _log(killed)
    assert 'resumed epoch: 0, iter: 2' in text, text
    _finish(ref_proc, ref_log, reference)

    final = killed / f'iter_{MAX_ITERS}.pth'
    assert find_resume_checkpoint(str(killed)) == str(final)
    assert not osp.exists(tmp_dir)  # the resumed run wrote iter_4 anew
    expected = consolidate_sharded_checkpoint(
        str(reference / f'iter_{MAX_ITERS}.pth'))
    got = consolidate_sharded_checkpoint(str(final))
    assert got['meta']['iter'] == MAX_ITERS
    init_state = torch.load(init, map_location='cpu')['state_dict']
    assert _max_diff(expected['state_dict'], init_state) > 1e-3  # trained
    assert _max_diff(expected['state_dict'], got['state_dict']) == 0.0
    assert _optimizer_diff(expected['optimizer'], got['optimizer']) == 0.0
    assert got['param_schedulers'] == expected['param_schedulers']
