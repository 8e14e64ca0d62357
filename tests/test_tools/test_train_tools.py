"""tools/train.py, tools/test.py and the dist/slurm launch scripts, run for
real on the tiny LeNet config (CPU processes, gloo)."""
import os
import os.path as osp
import re
import stat
import subprocess
import sys

import pytest
import torch

from mmspd.engine import launch
from mmspd.engine.resume import is_complete_checkpoint
from tests.dataset_files import write_custom_classification_set
from tests.distributed import free_port
from tests.tool_modules import REPO, load_tool

CONFIG = osp.join('tests', 'data', 'configs', 'tiny_lenet_spd.py')
MAX_ITERS = 6  # the config's
# Adam's update of a weight whose first gradient is about eps (1e-8) turns
# float rounding (different summation orders in 1 vs 2 processes) into
# ~2e-5 weight differences; eps=1e-6 keeps the comparison about DDP itself.
EPS = 'optim_wrapper.optimizer.eps=1e-6'


def _data_options(data_root, splits=('train', 'val')):
    return [
        f'{split}_dataloader.dataset.data_root={data_root}' for split in splits
    ]


def _env(**extra):
    """The tools run CPU processes (gloo) even on a host with GPUs."""
    return dict(os.environ,
                PYTHON=sys.executable,
                OMP_NUM_THREADS='1',
                CUDA_VISIBLE_DEVICES='',
                **extra)


def _run(cmd, **kwargs):
    """Run ``cmd`` in the repository root; output (stdout+stderr) and rc."""
    kwargs.setdefault('env', _env())
    proc = subprocess.run(cmd,
                          cwd=REPO,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=300,
                          **kwargs)
    return proc.returncode, proc.stdout


def _weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def _max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return write_custom_classification_set(
        str(tmp_path_factory.mktemp('tiny_cls')))


@pytest.fixture(scope='module')
def trained(data_root, tmp_path_factory):
    """The same training with global batch 4, as 1 process (batch 4) and as
    2 DDP processes (batch 2 each), run side by side. Returns
    ``(single_dir, ddp_dir, single_log)``."""
    root = tmp_path_factory.mktemp('trained')
    single, ddp = root / 'single', root / 'ddp'
    common = ['--cfg-options', *_data_options(data_root), EPS]
    single_log, ddp_log = root / 'single.log', root / 'ddp.log'
    with open(single_log, 'w') as out1, open(ddp_log, 'w') as out2:
        p1 = subprocess.Popen([
            sys.executable,
            osp.join('tools', 'train.py'), CONFIG, '--work-dir',
            str(single), *common, 'train_dataloader.batch_size=4'
        ],
                              cwd=REPO,
                              env=_env(),
                              stdout=out1,
                              stderr=subprocess.STDOUT)
        p2 = subprocess.Popen([
            'bash',
            osp.join('tools', 'dist_train.sh'), CONFIG, '2', '--work-dir',
            str(ddp), *common, 'train_dataloader.batch_size=2'
        ],
                              cwd=REPO,
                              env=_env(PORT=str(free_port())),
                              stdout=out2,
                              stderr=subprocess.STDOUT)
        rc1, rc2 = p1.wait(timeout=300), p2.wait(timeout=300)
    assert rc1 == 0, single_log.read_text()
    assert rc2 == 0, ddp_log.read_text()
    return single, ddp, single_log.read_text()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_equals_one_process(trained):
    single, ddp, _ = trained
    diff = _max_abs_diff(_weights(single / f'iter_{MAX_ITERS}.pth'),
                         _weights(ddp / f'iter_{MAX_ITERS}.pth'))
    print(f'DDP vs single process: max abs weight difference {diff:.3e}')
    assert diff <= 1e-5, diff
    # the same number of samples: not two copies of the same data
    assert _max_abs_diff(_weights(single / 'iter_3.pth'),
                         _weights(ddp / 'iter_3.pth')) <= 1e-5


def _top1(log):
    values = re.findall(r'accuracy/top1: ([0-9.]+)', log)
    assert values, log
    return float(values[-1])


@pytest.mark.slow
def test_test_tool_evaluates_a_checkpoint(trained, data_root, tmp_path):
    single, _, train_log = trained
    rc, out = _run([
        sys.executable,
        osp.join('tools', 'test.py'), CONFIG,
        str(single / f'iter_{MAX_ITERS}.pth'), '--work-dir',
        str(tmp_path), '--cfg-options',
        *_data_options(data_root, ('train', 'val', 'test'))
    ])
    assert rc == 0, out
    assert 'Load checkpoint from' in out, out
    # the test set is the val set: same weights, same accuracy
    assert _top1(out) == _top1(train_log)


def test_test_tool_names_a_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError,
                       match=f'checkpoint {re.escape(repr(missing))} does '
                       f'not exist'):
        load_tool('test.py').main([osp.join(REPO, CONFIG), missing])


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only host')
def test_amp_without_gpu_fails_early_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    train = load_tool('train.py')
    with pytest.raises(RuntimeError, match='--amp needs a CUDA device') as e:
        train.main(
            [osp.join(REPO, CONFIG), '--amp', '--work-dir',
             str(tmp_path)])
    # raised by mmspd before any Runner exists, not deep inside mmengine
    assert osp.samefile(str(e.traceback[-1].path), launch.__file__)
    assert not os.listdir(tmp_path)


FAKE_SRUN = """#!/usr/bin/env bash
# Record the options, then run the command as the single task of a job.
printf '%s\\n' "$@" > {record}
while [ $# -gt 0 ]; do
    case "$1" in
        -p|-J|-n|-N|-c) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
exec env SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 \\
    SLURM_NODELIST=localhost MASTER_ADDR=127.0.0.1 MASTER_PORT={port} "$@"
"""


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.slow
def test_slurm_train_runs_through_srun(data_root, tmp_path):
    bin_dir, record = tmp_path / 'bin', tmp_path / 'srun_args'
    bin_dir.mkdir()
    _executable(bin_dir / 'srun',
                FAKE_SRUN.format(record=record, port=free_port()))
    work_dir = tmp_path / 'work'
    env = _env(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               GPUS='1',
               CPUS_PER_TASK='2')
    rc, out = _run([
        'bash',
        osp.join('tools', 'slurm_train.sh'), 'cpu_part', 'spd_job', CONFIG,
        '--work-dir',
        str(work_dir), '--cfg-options', *_data_options(data_root),
        'train_cfg.max_iters=3'
    ],
                   env=env)
    assert rc == 0, out
    args = record.read_text().splitlines()
    assert args[:2] == ['-p', 'cpu_part']
    for option in ('--job-name=spd_job', '--gres=gpu:1', '--ntasks=1',
                   '--ntasks-per-node=1', '--cpus-per-task=2',
                   '--kill-on-bad-exit=1'):
        assert option in args, args
    command = args[args.index('--kill-on-bad-exit=1') + 1:]
    assert command[0] == sys.executable and command[1] == '-u'
    assert command[2].endswith(osp.join('tools', 'train.py'))
    assert command[3:6] == [CONFIG, '--launcher', 'slurm']
    assert 'Distributed launcher: slurm' in out or 'launcher: slurm' in out
    assert (work_dir / 'iter_3.pth').is_file()
    assert is_complete_checkpoint(str(work_dir / 'iter_3.pth'))


SLURM_JOB = dict(SLURM_PROCID='3',
                 SLURM_NTASKS='8',
                 SLURM_LOCALID='1',
                 SLURM_NODELIST='node[07-08]')


def _slurm_env(monkeypatch, path):
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE',
                'LOCAL_RANK'):
        monkeypatch.delenv(key, raising=False)
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv('PATH', str(path))


def test_slurm_environment_takes_the_first_host_of_the_job(
        tmp_path, monkeypatch):
    _executable(
        tmp_path / 'scontrol', '#!/bin/sh\n[ "$3" = "node[07-08]" ] && '
        'printf "node07\\nnode08\\n"\n')
    _slurm_env(monkeypatch, tmp_path)
    launch._slurm_environment()
    assert {
        k: os.environ[k]
        for k in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE',
                  'LOCAL_RANK')
    } == dict(MASTER_ADDR='node07',
              MASTER_PORT='29500',
              RANK='3',
              WORLD_SIZE='8',
              LOCAL_RANK='1')


def test_slurm_environment_without_scontrol_is_a_clear_error(
        tmp_path, monkeypatch):
    _slurm_env(monkeypatch, tmp_path)  # no scontrol on PATH
    with pytest.raises(RuntimeError, match=r"SLURM_NODELIST='node\[07-08\]'"):
        launch._slurm_environment()
    assert 'MASTER_ADDR' not in os.environ
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.1')  # then none is needed
    launch._slurm_environment()
    assert os.environ['MASTER_ADDR'] == '10.0.0.1'
    monkeypatch.delenv('SLURM_NTASKS')
    with pytest.raises(RuntimeError, match=r"\['SLURM_NTASKS'\]"):
        launch._slurm_environment()
