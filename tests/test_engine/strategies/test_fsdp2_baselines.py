"""What users run next to AdamSPD under FSDP2Strategy: the AdamW baseline
with SPDMonitorHook (its own reference weights, saved in the sharded
checkpoint and resumed), and hooks FSDP2 cannot serve (EMAHook), refused
before training with the hook named."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmspd.engine.launch import build_runner
from tests.dataset_files import write_custom_classification_set
from tests.distributed import free_port
from tests.test_engine.strategies.test_fsdp2_strategy import (CONFIGS, MAX_ITERS,
                                                   _initial_weights,
                                                   _spd_scalars, _start,
                                                   _wait)
from tests.tool_modules import REPO

ADAMW = ('optim_wrapper.constructor=DefaultOptimWrapperConstructor',
         'optim_wrapper.optimizer.type=AdamW',
         'optim_wrapper.optimizer.weight_decay=0.05')


@pytest.fixture(scope='module')
def adamw_runs(tmp_path_factory):
    """AdamW + SPDMonitorHook on DDP and on FSDP2 (2 processes each), then
    the FSDP2 run resumed from its iteration-3 sharded checkpoint."""
    root = tmp_path_factory.mktemp('fsdp2_adamw')
    data_root = write_custom_classification_set(str(root / 'data'))
    init = str(root / 'init.pth')
    _initial_weights(init)
    _wait(_start('ddp', 2, root / 'ddp', data_root, init, None, *ADAMW),
          _start('fsdp2', 2, root / 'fsdp2', data_root, init, None, *ADAMW))
    _wait(_start('fsdp2', 2, root / 'resumed', data_root, init,
                 str(root / 'fsdp2' / 'iter_3.pth'), *ADAMW))
    return root


@pytest.mark.slow
def test_adamw_with_the_monitor_checkpoints_and_resumes_under_fsdp2(
        adamw_runs):
    ddp = _spd_scalars(f'{adamw_runs / "ddp"}.log')
    fsdp2 = _spd_scalars(f'{adamw_runs / "fsdp2"}.log')
    resumed = _spd_scalars(f'{adamw_runs / "resumed"}.log')
    key = 'spd/relative_deviation'
    assert len(fsdp2[key]) == MAX_ITERS
    # measured from the weights at the start of training, on both runners
    assert fsdp2[key] == pytest.approx(ddp[key], rel=1e-4, abs=1e-6)
    # the resumed run continues from the saved reference, not from the
    # resumed weights (which would give 0 at its first iteration)
    assert len(resumed[key]) == MAX_ITERS - 3
    assert resumed[key] == pytest.approx(fsdp2[key][3:], rel=1e-4, abs=1e-6)
    assert resumed[key][0] > 0
    assert osp.isdir(adamw_runs / 'fsdp2' / f'iter_{MAX_ITERS}.pth')


def _fsdp2_config(tmp_path, hook):
    cfg = Config.fromfile(osp.join(REPO, CONFIGS, 'tiny_vit_fsdp2.py'))
    cfg.work_dir = str(tmp_path)
    cfg.custom_hooks = list(cfg.custom_hooks) + [hook]
    return cfg


@pytest.mark.parametrize('hook', [dict(type='EMAHook'),
                                  dict(type='EMAHook', momentum=0.001,
                                       priority=49)])
def test_ema_hook_is_refused_before_training(hook, tmp_path):
    with pytest.raises(ValueError) as error:
        build_runner(_fsdp2_config(tmp_path, hook))
    message = str(error.value)
    assert 'EMAHook' in message and 'FSDP2Strategy' in message


# mmengine's own entry point, without mmspd's build_runner: the sharded
# model refuses the deep copy EMAHook makes, naming the hook, before the
# first iteration
FROM_CFG_WORKER = """
import sys
from mmengine.config import Config
from mmengine.runner import FlexibleRunner
cfg = Config.fromfile(sys.argv[1])
cfg.launcher = 'pytorch'
FlexibleRunner.from_cfg(cfg).train()
"""


@pytest.mark.slow
def test_ema_hook_through_flexible_runner_from_cfg_is_a_clear_error(
        tmp_path):
    data_root = write_custom_classification_set(str(tmp_path / 'data'))
    cfg = _fsdp2_config(tmp_path / 'work', dict(type='EMAHook'))
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.val_dataloader.dataset.data_root = data_root
    config = str(tmp_path / 'ema_fsdp2.py')
    cfg.dump(config)
    worker = tmp_path / 'from_cfg.py'
    worker.write_text(FROM_CFG_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', str(worker), config],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert proc.returncode != 0
    assert 'FSDP does not support deepcopy' not in proc.stdout
    assert 'EMAHook' in proc.stdout and 'FSDP2Strategy' in proc.stdout, \
        proc.stdout[-3000:]
    assert 'Iter(train)' not in proc.stdout  # before the first iteration
