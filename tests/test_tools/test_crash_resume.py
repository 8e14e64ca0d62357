"""Crash safety of checkpoints: ``CrashSafeCheckpointHook`` and the
automatic ``--resume`` of ``tools/train.py``.

The end-to-end test SIGKILLs real ``tools/train.py`` processes (one while a
checkpoint is being written, one at a random moment), resumes them with
``--resume`` until training finishes, and checks that the final weights are
those of an uninterrupted run and that no partial file is ever resumed.
"""
import glob
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.hooks import CheckpointHook

import mmspd  # noqa: F401  (registers the hooks)
from mmspd.engine.hooks import CrashSafeCheckpointHook
from mmspd.engine.hooks.crash_safe_checkpoint_hook import TMP_SUFFIX
from mmspd.engine.resume import (find_resume_checkpoint,
                                 is_complete_checkpoint, resolve_auto_resume,
                                 use_crash_safe_checkpoints)
from tests.dataset_files import write_custom_classification_set
from tests.toy_runner import make_runner

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join('tests', 'data', 'configs', 'tiny_lenet_spd.py')
MAX_ITERS = 12

# Runs tools/train.py with LocalBackend.put writing temporary files in
# 64 KiB chunks 20 ms apart (a slow disk), so that a test can reliably kill
# the process while a checkpoint is being written.
SLOW_DISK = """
import runpy, sys, time
from mmengine.fileio import LocalBackend
put = LocalBackend.put
def slow_put(self, obj, filepath):
    if not str(filepath).endswith({suffix!r}):
        return put(self, obj, filepath)
    with open(filepath, 'wb') as f:
        for i in range(0, len(obj), 1 << 16):
            f.write(obj[i:i + (1 << 16)])
            f.flush()
            time.sleep(0.02)
LocalBackend.put = slow_put
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
""".format(suffix=TMP_SUFFIX)


def _train_cmd(data_root, work_dir, *extra, slow_disk=False):
    prefix = [sys.executable]
    if slow_disk:
        prefix += ['-c', SLOW_DISK]
    return prefix + [
        osp.join('tools', 'train.py'), CONFIG, '--work-dir',
        str(work_dir), *extra, '--cfg-options',
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_iters={MAX_ITERS}',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=1'
    ]


def _popen(cmd, log_path):
    """Start ``cmd`` in the repository root, output to ``log_path``."""
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    with open(log_path, 'w') as log:  # the child keeps its own copy
        return subprocess.Popen(cmd,
                                cwd=REPO,
                                env=env,
                                stdout=log,
                                stderr=subprocess.STDOUT)


def _wait_for(proc, predicate, timeout=60.0):
    """Poll every 5 ms until ``predicate()``; False if the process ended
    first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f'timed out after {timeout} s')


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _read(path):
    with open(path) as f:
        return f.read()


def _weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def _assert_nothing_partial_is_resumable(work_dir):
    """Every file under a checkpoint name is complete, and the automatic
    resume picks a complete one."""
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        assert is_complete_checkpoint(path), path
        _weights(path)  # and torch loads it
    chosen = find_resume_checkpoint(str(work_dir))
    assert chosen is not None and is_complete_checkpoint(chosen)
    return chosen


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    data = write_custom_classification_set(str(tmp_path / 'data'))
    ref_dir, work_dir = tmp_path / 'reference', tmp_path / 'killed'
    logs = tmp_path / 'logs'
    logs.mkdir()
    reference = _popen(_train_cmd(data, ref_dir), logs / 'reference.log')

    # 1. Killed while iter_4.pth is being written: iter_2.pth (which
    #    max_keep_ckpts=1 drops) must still exist and be the one named.
    tmp_ckpt = work_dir / ('iter_4.pth' + TMP_SUFFIX)
    proc = _popen(_train_cmd(data, work_dir, slow_disk=True),
                  logs / 'run0.log')
    assert _wait_for(
        proc,
        lambda: tmp_ckpt.exists() and tmp_ckpt.stat().st_size > 0), _read(
            logs / 'run0.log')
    _kill(proc)
    assert not is_complete_checkpoint(str(tmp_ckpt))  # really cut short
    assert not (work_dir / 'iter_4.pth').exists()
    assert _read(work_dir / 'last_checkpoint') == str(work_dir / 'iter_2.pth')
    assert _assert_nothing_partial_is_resumable(work_dir) == \
        str(work_dir / 'iter_2.pth')

    # 2. Resumed, then killed at a random moment after its first checkpoint.
    rng = random.Random()
    delay = rng.uniform(0.0, 1.5)
    proc = _popen(_train_cmd(data, work_dir, '--resume'), logs / 'run1.log')
    _wait_for(proc, lambda: (work_dir / 'iter_4.pth').exists())
    time.sleep(delay)
    killed = proc.poll() is None
    _kill(proc)
    log = _read(logs / 'run1.log')
    assert 'resumed epoch: 0, iter: 2' in log, log
    assert not (work_dir / ('iter_2.pth' + TMP_SUFFIX)).exists()  # cleaned
    _assert_nothing_partial_is_resumable(work_dir)

    # 3. Resume until training finishes.
    for attempt in range(2, 5):
        proc = _popen(_train_cmd(data, work_dir, '--resume'),
                      logs / f'run{attempt}.log')
        if proc.wait() == 0:
            break
        _assert_nothing_partial_is_resumable(work_dir)
    log = _read(logs / f'run{attempt}.log')
    assert proc.returncode == 0, log
    assert 'resumed epoch:' in log, log

    assert reference.wait() == 0, _read(logs / 'reference.log')
    final = _assert_nothing_partial_is_resumable(work_dir)
    assert final == str(work_dir / f'iter_{MAX_ITERS}.pth')
    assert not glob.glob(osp.join(work_dir, '*' + TMP_SUFFIX))
    expected = _weights(ref_dir / f'iter_{MAX_ITERS}.pth')
    got = _weights(final)
    assert expected.keys() == got.keys()
    for name in expected:
        diff = (expected[name] - got[name]).abs().max().item()
        assert diff <= 1e-6, (name, diff,
                              f'random kill {delay:.3f} s after iter_4.pth, '
                              f'killed={killed}')


def _swap_in_crash_safe_hook(runner, **kwargs):
    """Replace the runner's CheckpointHook by a CrashSafeCheckpointHook."""
    for i, hook in enumerate(runner._hooks):
        if type(hook) is CheckpointHook:
            runner._hooks[i] = CrashSafeCheckpointHook(**kwargs)
            runner._hooks[i].priority = hook.priority
            return runner._hooks[i]
    raise AssertionError('no CheckpointHook')


def test_new_checkpoint_is_complete_before_anything_is_deleted(tmp_path):
    runner = make_runner(tmp_path, max_iters=6)
    _swap_in_crash_safe_hook(runner,
                             interval=2,
                             by_epoch=False,
                             max_keep_ckpts=1)
    seen = []
    save = runner.save_checkpoint

    def spy(out_dir, filename, *args, **kwargs):
        seen.append((filename, sorted(os.listdir(tmp_path)),
                     _read(tmp_path / 'last_checkpoint') if
                     (tmp_path / 'last_checkpoint').exists() else None))
        save(out_dir, filename, *args, **kwargs)
        if filename == 'iter_4.pth' + TMP_SUFFIX:
            # a kill right after the write: the old checkpoint is intact
            raise KeyboardInterrupt

    runner.save_checkpoint = spy
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert [name for name, _, _ in seen] == \
        ['iter_2.pth' + TMP_SUFFIX, 'iter_4.pth' + TMP_SUFFIX]
    _, files, last = seen[1]
    assert 'iter_2.pth' in files and last == str(tmp_path / 'iter_2.pth')
    # still named and present after the interrupted save
    assert _read(tmp_path / 'last_checkpoint') == str(tmp_path / 'iter_2.pth')
    assert find_resume_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_2.pth')

    # the next run cleans the leftover and keeps upstream's bookkeeping
    runner = make_runner(tmp_path, max_iters=6, resume=True)
    hook = _swap_in_crash_safe_hook(runner,
                                    interval=2,
                                    by_epoch=False,
                                    max_keep_ckpts=1)
    runner.train()
    assert sorted(n for n in os.listdir(tmp_path) if 'iter_' in n) == \
        ['iter_6.pth']
    assert list(hook.keep_ckpt_ids) == [6]
    assert runner.message_hub.get_info('keep_ckpt_ids') == [6]
    assert _read(tmp_path / 'last_checkpoint') == str(tmp_path / 'iter_6.pth')


def _write_checkpoint(path, value):
    torch.save(dict(state_dict=dict(w=torch.full((64, ), value))), path)


def test_find_resume_checkpoint_skips_missing_and_truncated_files(tmp_path):
    assert find_resume_checkpoint(str(tmp_path / 'absent')) is None
    _write_checkpoint(tmp_path / 'iter_2.pth', 2.0)
    _write_checkpoint(tmp_path / 'iter_10.pth', 10.0)
    full = (tmp_path / 'iter_10.pth').read_bytes()
    (tmp_path / 'iter_10.pth').write_bytes(full[:len(full) // 2])
    (tmp_path / 'iter_12.pth.tmp').write_bytes(full)  # never a candidate
    # last_checkpoint names a deleted file (upstream killed between its
    # delete and its save)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_2.pth')

    _write_checkpoint(tmp_path / 'iter_4.pth', 4.0)
    (tmp_path / 'last_checkpoint').write_text('')  # emptied by a kill
    assert find_resume_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_4.pth')
    # a complete named file wins over a newer one (as mmengine)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_2.pth')


def test_resolve_auto_resume(tmp_path):
    from mmengine.config import Config
    _write_checkpoint(tmp_path / 'epoch_3.pth', 3.0)
    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from=None))
    assert resolve_auto_resume(cfg).load_from == str(tmp_path / 'epoch_3.pth')
    assert cfg.resume is True
    # an explicit file and a plain load are not touched
    cfg = Config(dict(work_dir=str(tmp_path), resume=True, load_from='x.pth'))
    assert resolve_auto_resume(cfg).load_from == 'x.pth'
    cfg = Config(dict(work_dir=str(tmp_path), resume=False, load_from=None))
    assert resolve_auto_resume(cfg).load_from is None
    # nothing complete: start from scratch instead of crashing in mmengine
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'last_checkpoint').write_text(str(empty / 'iter_4.pth'))
    cfg = Config(dict(work_dir=str(empty), resume=True, load_from=None))
    resolve_auto_resume(cfg)
    assert cfg.resume is False and cfg.load_from is None


@pytest.mark.parametrize('checkpoint, expected', [
    (dict(type='CheckpointHook', interval=3), 'CrashSafeCheckpointHook'),
    (dict(type='mmengine.CheckpointHook'), 'CrashSafeCheckpointHook'),
    (dict(interval=3), 'CrashSafeCheckpointHook'),
    (dict(type=CheckpointHook), 'CrashSafeCheckpointHook'),
    (dict(type='MyCheckpointHook'), 'MyCheckpointHook'),
])
def test_use_crash_safe_checkpoints(checkpoint, expected):
    from mmengine.config import Config
    cfg = Config(dict(default_hooks=dict(checkpoint=checkpoint)))
    hook = use_crash_safe_checkpoints(cfg).default_hooks.checkpoint
    assert hook['type'] == expected
    assert hook.get('interval') == checkpoint.get('interval')


def test_use_crash_safe_checkpoints_defaults_and_disabled():
    from mmengine.config import Config
    cfg = use_crash_safe_checkpoints(Config(dict()))
    assert cfg.default_hooks.checkpoint == dict(
        type='CrashSafeCheckpointHook', interval=1)  # the Runner's default
    cfg = use_crash_safe_checkpoints(
        Config(dict(default_hooks=dict(checkpoint=None))))
    assert cfg.default_hooks.checkpoint is None
