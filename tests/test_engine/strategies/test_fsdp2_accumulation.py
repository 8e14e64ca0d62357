"""Gradient accumulation under FSDP2Strategy (optim_wrapper
accumulative_counts=2, half the batch per iteration): gradients are
reduce-scattered once per optimizer step, and the run equals the
unaccumulated one with the same global batch."""
import re

import pytest
import torch

from mmspd.engine.sharded_checkpoint import consolidate_sharded_checkpoint
from tests.dataset_files import write_custom_classification_set
from tests.test_engine.strategies.test_fsdp2_strategy import (
    MAX_ITERS, _initial_weights, _max_diff, _start, _wait)

ACCUMULATED = (f'train_cfg.max_iters={2 * MAX_ITERS}',
               'train_dataloader.batch_size=1',
               'optim_wrapper.accumulative_counts=2',
               'default_hooks.checkpoint.interval=6')


def _reduce_scatters(log_path) -> list:
    with open(log_path) as f:
        return [int(float(v)) for v in re.findall(
            r'reduce_scatters: ([0-9.]+)', f.read())]


@pytest.fixture(scope='module')
def accumulation_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('accumulation')
    data_root = write_custom_classification_set(str(root / 'data'))
    init = str(root / 'init.pth')
    _initial_weights(init)
    _wait(_start('fsdp2_counted', 2, root / 'plain', data_root, init),
          _start('fsdp2_counted', 2, root / 'accumulated', data_root,
                 init, None, *ACCUMULATED))
    return root


@pytest.mark.slow
def test_accumulation_syncs_once_per_step_and_equals_the_full_batch(
        accumulation_runs):
    plain = _reduce_scatters(f'{accumulation_runs / "plain"}.log')
    accumulated = _reduce_scatters(
        f'{accumulation_runs / "accumulated"}.log')
    assert len(plain) == MAX_ITERS and len(accumulated) == 2 * MAX_ITERS
    assert min(plain) > 0
    # no reduce-scatter on the first micro-batch of each step, the plain
    # run's count on the second
    assert accumulated[0::2] == [0] * MAX_ITERS
    assert accumulated[1::2] == plain
    a = consolidate_sharded_checkpoint(
        str(accumulation_runs / 'plain' / f'iter_{MAX_ITERS}.pth'))
    b = consolidate_sharded_checkpoint(
        str(accumulation_runs / 'accumulated' / f'iter_{2 * MAX_ITERS}.pth'))
    init = torch.load(accumulation_runs / 'init.pth', map_location='cpu')
    update = _max_diff(a['state_dict'], init['state_dict'])
    assert update > 1e-3
    assert _max_diff(a['state_dict'], b['state_dict']) <= 1e-5 * update
