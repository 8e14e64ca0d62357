"""SPDMonitorHook in real mmengine runs of the tiny mmpretrain LeNet.

Every run is a real ``Runner`` training step by step; a probe hook, run
between SPDMonitorHook and the LoggerHook, records what the MessageHub holds
at each iteration and recomputes the deviations by hand from the weights.
"""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmspd.engine.hooks import SPDMonitorHook
from mmspd.engine.hooks.spd_monitor_hook import CHECKPOINT_KEY
from tests.dataset_files import write_custom_classification_set
from tests.lenet_runs import (build_runner, lenet_config, scalars_path,
                              train_rows)

SPD_PREFIX = 'spd/'
MAIN_KEYS = {'spd/projected_fraction', 'spd/mean_ratio',
             'spd/relative_deviation'}
MODULE_KEY = 'spd/deviation/backbone'  # LeNet's only module with weights
PROBE_PRIORITY = 55  # after SPDMonitorHook (NORMAL), before LoggerHook
TOL = 1e-6


def hand_deviations(model, anchors):
    """(mean over tensors of |p - a| / |a|, {module: ratio}) in float64."""
    ratios, per_module = [], {}
    for name, p in model.named_parameters():
        if name not in anchors:
            continue
        p64 = p.detach().double()
        a64 = anchors[name].double()
        dist2 = float(((p64 - a64)**2).sum())
        norm2 = float((a64**2).sum())
        ratios.append((dist2 / norm2)**0.5)
        module = per_module.setdefault(name.split('.')[0], [0.0, 0.0])
        module[0] += dist2
        module[1] += norm2
    assert ratios, 'no anchored parameter'
    return (sum(ratios) / len(ratios),
            {m: (d / n)**0.5 for m, (d, n) in per_module.items()})


def optimizer_anchors(runner):
    """name -> the optimizer's anchor, for the parameters that have one."""
    state = runner.optim_wrapper.optimizer.state
    return {
        name: state[p]['anchor']
        for name, p in runner.model.named_parameters()
        if 'anchor' in state.get(p, {})
    }


class Probe(Hook):
    """Record, per iteration, the hub's spd scalars and hand computations.

    ``own_reference``: measure from the weights at the start of training
    (what SPDMonitorHook does for AdamW) instead of the optimizer's anchors.
    """

    def __init__(self, own_reference: bool = False):
        self.own_reference = own_reference
        self.start = None
        self.hub = {}  # iteration -> {log key: current value}
        self.stats = {}  # iteration -> optimizer.projection_statistics()
        self.hand = {}  # iteration -> hand_deviations(...)

    def before_train(self, runner):
        self.start = {n: p.detach().clone()
                      for n, p in runner.model.named_parameters()}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        it = runner.iter + 1
        hub = runner.message_hub
        self.hub[it] = {
            key[len('train/'):]: hub.get_scalar(key).current()
            for key in hub.log_scalars if key.startswith('train/spd/')
        }
        optimizer = runner.optim_wrapper.optimizer
        if hasattr(optimizer, 'projection_statistics'):
            self.stats[it] = optimizer.projection_statistics()
        anchors = (self.start if self.own_reference
                   else optimizer_anchors(runner))
        self.hand[it] = hand_deviations(runner.model, anchors)


def monitor(runner) -> SPDMonitorHook:
    hooks = [h for h in runner.hooks if isinstance(h, SPDMonitorHook)]
    assert len(hooks) == 1
    return hooks[0]


def run_with_probe(work_dir, data_root, options=None, resume=False,
                   own_reference=False, cfg=None):
    if cfg is None:
        cfg = lenet_config(work_dir, data_root, options, resume)
    runner = Runner.from_cfg(cfg)
    probe = Probe(own_reference)
    runner.register_hook(probe, priority=PROBE_PRIORITY)
    runner.train()
    return runner, probe


def spd_keys(row):
    return {k for k in row if k.startswith(SPD_PREFIX)}


def hooks_option(interval, module_interval):
    return {'custom_hooks': [dict(type='SPDMonitorHook', interval=interval,
                                  module_interval=module_interval)]}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return write_custom_classification_set(
        str(tmp_path_factory.mktemp('tiny_cls')))


@pytest.fixture(scope='module')
def spd_run(tmp_path_factory, data_root):
    """AdamSPD, interval 2, module_interval 4, 8 iterations."""
    options = {'train_cfg.max_iters': 8, **hooks_option(2, 4)}
    return run_with_probe(tmp_path_factory.mktemp('spd'), data_root,
                          options)


@pytest.fixture(scope='module')
def adamw_run(tmp_path_factory, data_root):
    """AdamW baseline (the hook's own reference), 4 iterations."""
    options = {'train_cfg.max_iters': 4,
               'optim_wrapper.optimizer.type': 'AdamW',
               'optim_wrapper.optimizer.weight_decay': 0.01}
    return run_with_probe(tmp_path_factory.mktemp('adamw'), data_root,
                          options, own_reference=True)


# ------------------------------------------------------------ when it logs
def check_iterations(runner, probe, interval, module_interval, max_iters):
    rows = train_rows(scalars_path(runner))
    assert [r['iter'] for r in rows] == list(range(1, max_iters + 1))
    for row in rows:
        it = row['iter']
        expected = set()
        if it % interval == 0:
            expected |= MAIN_KEYS
        if it % module_interval == 0:
            expected.add(MODULE_KEY)
        # in the log row and, just before the logger ran, in the hub
        assert spd_keys(row) == expected, it
        assert set(probe.hub[it]) == expected, it
        for key in expected:
            assert row[key] == probe.hub[it][key]
    # the hub keeps every update in the key's history, and only those
    hub = runner.message_hub
    history = hub.get_scalar('train/spd/relative_deviation').data[0]
    assert list(history) == [r['spd/relative_deviation'] for r in rows
                             if 'spd/relative_deviation' in r]
    assert len(history) == max_iters // interval


def test_scalars_at_interval_and_module_interval(spd_run):
    runner, probe = spd_run
    check_iterations(runner, probe, 2, 4, 8)


def test_module_interval_need_not_be_a_multiple_of_interval(
        tmp_path, data_root):
    options = {'train_cfg.max_iters': 6, **hooks_option(2, 3)}
    runner, probe = run_with_probe(tmp_path, data_root, options)
    # module deviations at 3 and 6, not only where both intervals meet
    check_iterations(runner, probe, 2, 3, 6)


def test_epoch_based_training_logs_where_the_logger_does(
        tmp_path, data_root):
    # 24 images / batch 4 = 6 iterations per epoch; the LoggerHook writes
    # inner iteration 4 of each epoch: global iterations 4 and 10.
    cfg = lenet_config(tmp_path, data_root,
                       {'default_hooks.logger.interval': 4,
                        'custom_hooks': [dict(type='SPDMonitorHook')]})
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=10)
    runner, probe = run_with_probe(tmp_path, data_root, cfg=cfg)
    hook = monitor(runner)
    assert (hook.interval, hook.module_interval) == (4, 40)
    rows = train_rows(scalars_path(runner))
    assert [r['iter'] for r in rows] == [4, 10]
    for row in rows:
        # fresh values of that very iteration, not those of iteration 8
        assert row['spd/relative_deviation'] == pytest.approx(
            probe.hand[row['iter']][0], abs=TOL)
        assert MODULE_KEY not in row


# ------------------------------------------------------------ what it logs
def test_projection_statistics_are_the_optimizers(spd_run):
    runner, probe = spd_run
    rows = [r for r in train_rows(scalars_path(runner))
            if 'spd/projected_fraction' in r]
    assert len(rows) == 4
    for row in rows:
        stats = probe.stats[row['iter']]
        assert stats['tensors'] == 10  # LeNet-5: 5 layers, weight and bias
        assert 0.0 <= row['spd/projected_fraction'] <= 1.0
        assert row['spd/projected_fraction'] == stats['projected_fraction']
        assert row['spd/mean_ratio'] == pytest.approx(stats['mean_ratio'],
                                                      rel=1e-12, abs=1e-15)
    # SPD did project something in these iterations (lambda = 1)
    assert any(r['spd/projected_fraction'] > 0 for r in rows)


def test_relative_deviation_from_the_optimizers_anchors(spd_run):
    runner, probe = spd_run
    anchors = optimizer_anchors(runner)
    params = dict(runner.model.named_parameters())
    assert set(anchors) == set(params)  # every tensor is anchored
    for name, anchor in anchors.items():  # anchors: the starting weights
        assert torch.equal(anchor, probe.start[name])
    relative, modules = hand_deviations(runner.model, anchors)
    last = train_rows(scalars_path(runner))[-1]
    assert last['iter'] == 8
    assert relative > 0.05  # the weights did move
    assert last['spd/relative_deviation'] == pytest.approx(relative,
                                                           abs=TOL)
    assert last[MODULE_KEY] == pytest.approx(modules['backbone'], abs=TOL)
    # and at every logged iteration, against the weights of that iteration
    for row in train_rows(scalars_path(runner)):
        if 'spd/relative_deviation' in row:
            assert row['spd/relative_deviation'] == pytest.approx(
                probe.hand[row['iter']][0], abs=TOL)


def test_adamw_uses_the_weights_at_the_start(adamw_run):
    runner, probe = adamw_run
    hook = monitor(runner)
    assert set(hook._reference) == set(probe.start)
    for name, weight in probe.start.items():
        assert torch.equal(hook._reference[name], weight)
    rows = train_rows(scalars_path(runner))
    # no projection statistics without AdamSPD
    assert all('spd/projected_fraction' not in r for r in rows)
    relative, modules = hand_deviations(runner.model, probe.start)
    assert relative > 0.05
    assert rows[-1]['iter'] == 4
    assert rows[-1]['spd/relative_deviation'] == pytest.approx(relative,
                                                               abs=TOL)
    assert rows[-1][MODULE_KEY] == pytest.approx(modules['backbone'],
                                                 abs=TOL)


# ------------------------------------------------------------------ resume
def test_resume_restores_the_reference_from_the_checkpoint(
        adamw_run, tmp_path, data_root):
    first, probe = adamw_run
    checkpoint = osp.join(first.work_dir, 'iter_4.pth')
    saved = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert set(saved[CHECKPOINT_KEY]) == set(probe.start)
    resumed_weights = saved['state_dict']
    cfg = lenet_config(tmp_path, data_root,
                       {'train_cfg.max_iters': 6,
                        'optim_wrapper.optimizer.type': 'AdamW',
                        'optim_wrapper.optimizer.weight_decay': 0.01},
                       resume=True)
    cfg.load_from = checkpoint
    runner, _ = run_with_probe(tmp_path, data_root, own_reference=True,
                               cfg=cfg)
    rows = train_rows(scalars_path(runner))
    assert [r['iter'] for r in rows] == [5, 6]  # it did resume at 4
    reference = monitor(runner)._reference
    for name, weight in probe.start.items():
        assert torch.equal(reference[name], weight), name
    # not re-captured: the weights at iteration 4 differ from the start
    assert any(not torch.equal(resumed_weights[name], weight)
               for name, weight in probe.start.items())
    relative, _ = hand_deviations(runner.model, probe.start)
    assert rows[-1]['spd/relative_deviation'] == pytest.approx(relative,
                                                               abs=TOL)


def test_resume_without_saved_reference_warns_and_recaptures(
        tmp_path, data_root):
    options = {'optim_wrapper.optimizer.type': 'AdamW',
               'optim_wrapper.optimizer.weight_decay': 0.01,
               'train_cfg.max_iters': 3, 'custom_hooks': []}
    first = build_runner(tmp_path / 'first', data_root, options)
    first.train()
    checkpoint = osp.join(first.work_dir, 'iter_3.pth')
    assert CHECKPOINT_KEY not in torch.load(checkpoint, weights_only=False)
    options.update({'train_cfg.max_iters': 4, **hooks_option(1, 2)})
    cfg = lenet_config(tmp_path / 'second', data_root, options, resume=True)
    cfg.load_from = checkpoint
    runner, probe = run_with_probe(tmp_path / 'second', data_root,
                                   own_reference=True, cfg=cfg)
    # the only reference left: the resumed weights, said so in the log
    for name, weight in probe.start.items():
        assert torch.equal(monitor(runner)._reference[name], weight)
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    assert f'resumed checkpoint has no {CHECKPOINT_KEY!r}' in log


# ------------------------------------------------------------- arguments
@pytest.mark.parametrize('name', ['interval', 'module_interval'])
@pytest.mark.parametrize('value', [0, -1, 'x', 1.5, True])
def test_invalid_intervals_are_rejected(name, value):
    with pytest.raises(ValueError) as info:
        SPDMonitorHook(**{name: value})
    message = str(info.value)
    assert name in message and repr(value) in message
