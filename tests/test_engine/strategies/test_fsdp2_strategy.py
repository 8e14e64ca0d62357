"""FSDP2Strategy run for real: tools/dist_train.sh on CPU processes (gloo)
with mmengine's FlexibleRunner and a tiny mmpretrain ViT
(tests/data/configs/tiny_vit_fsdp2.py), against the same config on DDP
(tiny_vit_ddp.py), and resumed from its sharded checkpoints on 2 and 3
processes."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmspd.engine.resume import find_resume_checkpoint
from mmspd.engine.sharded_checkpoint import (consolidate_sharded_checkpoint,
                                             is_complete_sharded_checkpoint)
from mmspd.engine.strategies import FSDP2Strategy
from mmspd.engine.strategies.fsdp2_strategy import (
    _matching_modules, _type_names, apply_activation_checkpointing)
from tests.dataset_files import write_custom_classification_set
from tests.distributed import free_port
from tests.tool_modules import REPO

CONFIGS = osp.join('tests', 'data', 'configs')
MAX_ITERS = 6  # the configs'


def _env(**extra):
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH'))
                           if p)
    return dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
                CUDA_VISIBLE_DEVICES='', PYTHONPATH=path, **extra)


def _start(kind: str, nproc: int, work_dir, data_root, init,
           resume=None, *cfg_options):
    """``tools/dist_train.sh tiny_vit_<kind>.py nproc`` (a Popen), output
    in ``work_dir.log``."""
    log = open(f'{work_dir}.log', 'w')
    resume = ['--resume', resume] if resume else []
    cmd = ['bash', osp.join('tools', 'dist_train.sh'),
           osp.join(CONFIGS, f'tiny_vit_{kind}.py'), str(nproc),
           '--work-dir', str(work_dir), *resume, '--cfg-options',
           f'train_dataloader.dataset.data_root={data_root}',
           f'val_dataloader.dataset.data_root={data_root}',
           f'load_from={init}',
           *cfg_options]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(PORT=str(free_port())),
                            stdout=log, stderr=subprocess.STDOUT), log


def _wait(*started):
    for proc, log in started:
        rc = proc.wait(timeout=600)
        log.close()
        with open(log.name) as f:
            text = f.read()
        assert rc == 0, text


def _initial_weights(path: str) -> dict:
    """The model of the configs, built and initialised once, with a
    non-zero head (every tensor gets a gradient at the first step).

    Both runs start from it (``load_from``): the Runner and the
    FlexibleRunner draw the random initialisation at different moments,
    so their own initial weights differ.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(osp.join(REPO, CONFIGS, 'tiny_vit_ddp.py'))
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.nn.init.normal_(model.head.layers.head.weight, std=0.1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state, meta=dict()), path)
    return state


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """DDP and FSDP2 (2 processes, global batch 4) side by side; then the
    FSDP2 run resumed from its iteration-3 checkpoint on 2 and on 3
    processes. Returns the root directory."""
    root = tmp_path_factory.mktemp('fsdp2_runs')
    data_root = write_custom_classification_set(str(root / 'data'))
    init = str(root / 'init.pth')
    _initial_weights(init)
    _wait(_start('ddp', 2, root / 'ddp', data_root, init),
          _start('fsdp2', 2, root / 'fsdp2', data_root, init))
    checkpoint = str(root / 'fsdp2' / 'iter_3.pth')
    # no opt-out: StrictLoadingHook checks the sharded directories too
    _wait(_start('fsdp2', 2, root / 'resumed2', data_root, init,
                 checkpoint),
          _start('fsdp2', 3, root / 'resumed3', data_root, init,
                 checkpoint))
    return root


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _optimizer_diff(a: dict, b: dict) -> float:
    assert a['state'].keys() == b['state'].keys()
    return max(_max_diff(a['state'][i], b['state'][i]) for i in a['state'])


@pytest.mark.slow
def test_fsdp2_equals_ddp_with_the_same_global_batch(runs):
    ddp = torch.load(runs / 'ddp' / f'iter_{MAX_ITERS}.pth',
                     map_location='cpu')
    fsdp2 = consolidate_sharded_checkpoint(
        str(runs / 'fsdp2' / f'iter_{MAX_ITERS}.pth'))
    init = torch.load(runs / 'init.pth', map_location='cpu')['state_dict']
    update = _max_diff(ddp['state_dict'], init)
    diff = _max_diff(ddp['state_dict'], fsdp2['state_dict'])
    opt_diff = _optimizer_diff(ddp['optimizer'], fsdp2['optimizer'])
    print(f'FSDP2 vs DDP after {MAX_ITERS} iterations: weights {diff:.3e}, '
          f'optimizer state {opt_diff:.3e} (update {update:.3e})')
    assert update > 1e-3  # it trained
    # AdamSPD's per-tensor sums are added up in another order (shards, then
    # an all-reduce); the rounding differences grow over the iterations
    # through the gradients (measured 1.2e-7 on an update of 4.3e-2;
    # with AdamW the two runs are bit-identical)
    assert diff <= 1e-5 * update
    assert opt_diff <= 1e-5
    # the checkpoint is a one-process mmengine checkpoint's equal
    assert fsdp2['optimizer']['param_groups'] == \
        ddp['optimizer']['param_groups']
    assert fsdp2['meta']['iter'] == MAX_ITERS
    # AdamSPD's anchors are in both
    for state in (ddp['optimizer']['state'], fsdp2['optimizer']['state']):
        assert all('anchor' in s for s in state.values())
    # SPD's statistics (SPDMonitorHook) agree: projected fraction, ratios
    logs = [_spd_scalars(runs / f'{kind}.log') for kind in ('ddp', 'fsdp2')]
    assert logs[0].keys() == logs[1].keys()
    assert len(logs[0]['spd/projected_fraction']) == MAX_ITERS
    assert max(logs[0]['spd/projected_fraction']) > 0  # SPD projected
    for key in logs[0]:
        assert logs[0][key] == pytest.approx(logs[1][key], rel=1e-3,
                                             abs=1e-4), key
    # the logged gradient norm (clip_grad) is the global one under FSDP2
    norms = [_grad_norms(runs / f'{kind}.log') for kind in ('ddp', 'fsdp2')]
    assert len(norms[0]) == MAX_ITERS
    # (the log prints 4 decimals: one unit of the last one apart at most)
    assert norms[1] == pytest.approx(norms[0], rel=0, abs=1.01e-4)


def _grad_norms(log_path) -> list:
    """Every ``grad_norm: value`` of a training log, in order."""
    with open(log_path) as f:
        return [float(v) for v in re.findall(r'grad_norm: ([0-9.e+-]+)',
                                             f.read())]


def _spd_scalars(log_path) -> dict:
    """Every ``spd/...: value`` of a training log, per key, in order."""
    with open(log_path) as f:
        found = re.findall(r'(spd/[\w./-]+): (-?[0-9.e+-]+)', f.read())
    scalars = {}
    for key, value in found:
        scalars.setdefault(key, []).append(float(value))
    return scalars


@pytest.mark.slow
def test_resume_from_a_sharded_checkpoint_equals_the_uninterrupted_run(runs):
    uninterrupted = consolidate_sharded_checkpoint(
        str(runs / 'fsdp2' / f'iter_{MAX_ITERS}.pth'))
    resumed = consolidate_sharded_checkpoint(
        str(runs / 'resumed2' / f'iter_{MAX_ITERS}.pth'))
    diff = _max_diff(uninterrupted['state_dict'], resumed['state_dict'])
    opt_diff = _optimizer_diff(uninterrupted['optimizer'],
                               resumed['optimizer'])
    print(f'resumed at iteration 3 vs uninterrupted: weights {diff:.3e}, '
          f'optimizer state {opt_diff:.3e}')
    assert diff == 0.0 and opt_diff == 0.0
    assert resumed['param_schedulers'] == uninterrupted['param_schedulers']
    assert not osp.exists(runs / 'resumed2' / f'iter_{MAX_ITERS}.pth.tmp')
    assert find_resume_checkpoint(str(runs / 'resumed2')) == str(
        runs / 'resumed2' / f'iter_{MAX_ITERS}.pth')


@pytest.mark.slow
def test_resume_on_another_world_size_runs_and_says_so(runs):
    with open(f'{runs / "resumed3"}.log') as f:
        log = f.read()
    assert 'Resuming on 3 processes from a checkpoint written by 2' in log
    path = runs / 'resumed3' / f'iter_{MAX_ITERS}.pth'
    assert is_complete_sharded_checkpoint(str(path))
    assert len([n for n in os.listdir(path) if n.endswith('.distcp')]) == 3
    assert consolidate_sharded_checkpoint(str(path))['meta']['iter'] == \
        MAX_ITERS


@pytest.mark.slow
def test_mixed_precision_and_activation_checkpointing(tmp_path):
    """bf16 compute with float32 parameters, gradients and optimizer
    state; checkpointed layers run again in backward and give the same
    gradients (2 processes, one step of the tiny ViT)."""
    out = tmp_path / 'seen.json'
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           '--nproc_per_node=2', f'--master_port={free_port()}',
           osp.join('tests', 'test_engine', 'strategies',
                    'fsdp2_precision_worker.py'),
           str(tmp_path), str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
    seen = json.loads(out.read_text())
    fp32 = ['torch.float32']
    for run in ('plain', 'ac', 'mixed'):
        assert seen[run]['param_types'] == ['DTensor']
        assert seen[run]['state_types'] == ['DTensor']
        assert seen[run]['param_dtypes'] == fp32
        assert seen[run]['grad_dtypes'] == fp32
        assert seen[run]['state_dtypes'] == fp32
    assert seen['plain']['ln1_calls'] == 1
    assert seen['ac']['ln1_calls'] == 2  # recomputed in backward
    assert seen['mixed']['ln1_calls'] == 2
    assert set(seen['plain']['ffn_input_dtypes']) == {'torch.float32'}
    assert set(seen['mixed']['ffn_input_dtypes']) == {'torch.bfloat16'}
    assert seen['ac_grad_diff'] == 0.0
    # bf16 compute: about 1% of the largest gradient, but not nothing
    print(f'bf16 vs fp32 gradients: max abs difference '
          f'{seen["mixed_grad_diff"]:.3e} (largest gradient '
          f'{seen["grad_scale"]:.3e})')
    assert 0 < seen['mixed_grad_diff'] <= 0.05 * seen['grad_scale']
    # state_dict_type 'full' (one file from rank 0) holds exactly what the
    # sharded checkpoint holds
    full = torch.load(tmp_path / 'full.pth', map_location='cpu')
    sharded = consolidate_sharded_checkpoint(str(tmp_path / 'sharded.pth'))
    assert _max_diff(full['state_dict'], sharded['state_dict']) == 0.0
    assert _optimizer_diff(full['optimizer'], sharded['optimizer']) == 0.0
    assert full['optimizer']['param_groups'] == \
        sharded['optimizer']['param_groups']


def _strategy(tmp_path, **kwargs):
    return FSDP2Strategy(work_dir=str(tmp_path),
                         env_kwargs=dict(launcher='none'), **kwargs)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(state_dict_type='local'), ValueError, "state_dict_type='local'"),
    (dict(mixed_precision=dict(param_dtype='bf16')), ValueError,
     "param_dtype='bf16' is not a floating"),
    (dict(mixed_precision=dict(compute='bfloat16')), ValueError,
     r"unknown keys \['compute'\]"),
    (dict(reshard_after_forward=1), TypeError, 'must be a bool'),
    (dict(shard_modules=[3]), TypeError, 'module type names'),
    (dict(model_wrapper=dict(type='MMDistributedDataParallel')), ValueError,
     'no model_wrapper'),
    # float16 compute without a loss scaler underflows gradients silently
    (dict(mixed_precision=dict(param_dtype='float16')), ValueError,
     "param_dtype='float16'"),
    (dict(mixed_precision=dict(param_dtype=torch.float16)), ValueError,
     'bfloat16'),
])
def test_bad_strategy_arguments_are_clear_errors(tmp_path, kwargs, error,
                                                  match):
    with pytest.raises(error, match=match):
        _strategy(tmp_path, **kwargs)


def test_amp_optim_wrapper_is_refused(tmp_path):
    strategy = _strategy(tmp_path)
    with pytest.raises(ValueError, match='does not take AmpOptimWrapper'):
        strategy.build_optim_wrapper(
            dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW')),
            torch.nn.Linear(2, 2))


def test_a_single_process_is_a_clear_error(tmp_path):
    strategy = _strategy(tmp_path)
    with pytest.raises(RuntimeError, match='needs a distributed launch'):
        strategy._wrap_model(torch.nn.Linear(2, 2))


def test_module_types_are_matched_by_name_and_a_typo_is_an_error():
    from mmpretrain.models.backbones.vision_transformer import \
        TransformerEncoderLayer
    model = torch.nn.Sequential(
        TransformerEncoderLayer(8, 2, 16), torch.nn.Linear(8, 8),
        TransformerEncoderLayer(8, 2, 16))
    names = _type_names(['mmpretrain.TransformerEncoderLayer'], 'key')
    assert names == ['TransformerEncoderLayer']
    assert _type_names(TransformerEncoderLayer, 'key') == names
    found = _matching_modules(model, names, 'shard_modules')
    assert found == [model[2], model[0]]  # innermost / last first
    with pytest.raises(ValueError, match=r"names \['SwinBlock'\], but the "
                       'model has no module of that type'):
        _matching_modules(model, ['SwinBlock'], 'shard_modules')


def test_activation_checkpointing_recomputes_and_keeps_gradients():
    from mmpretrain.models.backbones.vision_transformer import \
        TransformerEncoderLayer
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16)
    x = torch.randn(2, 5, 8)
    layer(x).square().sum().backward()
    expected = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    calls = []
    layer.ln1.register_forward_hook(lambda *_: calls.append(1))
    apply_activation_checkpointing([layer])
    layer(x).square().sum().backward()
    assert len(calls) == 2
    for n, p in layer.named_parameters():
        assert torch.equal(p.grad, expected[n]), n
    with torch.no_grad():
        layer(x)
    assert len(calls) == 3  # no recomputation without gradients


def test_the_vit_l14_domainnet_config_shards_every_layer():
    """configs/domainnet_clip-vit-l14_spd_fsdp2.py: CLIP ViT-L/14 sizes,
    AdamSPD, and an FSDP2 strategy whose module types are in the model
    (built on the meta device: no memory, no weights)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, MODELS

    import mmspd.classification  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs',
                                   'domainnet_clip-vit-l14_spd_fsdp2.py'))
    assert cfg.runner_type == 'FlexibleRunner'
    assert cfg.optim_wrapper.optimizer.type == 'AdamSPD'
    assert cfg.model.backbone.init_cfg.checkpoint == \
        'checkpoints/clip-vit-large-p14_openai.pth'
    strategy = cfg.strategy
    assert strategy.type == 'FSDP2Strategy'
    assert strategy.mixed_precision == dict(param_dtype='bfloat16',
                                            reduce_dtype='float32')
    with DefaultScope.overwrite_default_scope('mmpretrain'), \
            torch.device('meta'):
        model = MODELS.build(cfg.model)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert backbone == 303_179_776  # ViT-L/14 at 224 px
    assert model.backbone.patch_embed.projection.kernel_size == (14, 14)
    assert model.head.layers.head.in_features == 1024
    units = _matching_modules(model, strategy.shard_modules, 'shard_modules')
    assert len(units) == 24
    checkpointed = _matching_modules(model, strategy.activation_checkpointing,
                                     'activation_checkpointing')
    assert len(checkpointed) == 24


def _top1(log: str) -> float:
    values = re.findall(r'accuracy/top1: ([0-9.]+)', log)
    assert values, log
    return float(values[-1])


@pytest.mark.slow
def test_test_tool_evaluates_a_sharded_checkpoint(runs, tmp_path):
    """tools/dist_test.sh on the FSDP2 run's checkpoint directory (2
    processes) gives the DDP checkpoint's accuracy (tools/test.py, one
    process): the two hold the same weights."""
    data = f'test_dataloader.dataset.data_root={runs / "data"}'
    sharded = subprocess.run(
        ['bash', osp.join('tools', 'dist_test.sh'),
         osp.join(CONFIGS, 'tiny_vit_fsdp2.py'),
         str(runs / 'fsdp2' / f'iter_{MAX_ITERS}.pth'), '2', '--work-dir',
         str(tmp_path / 'sharded'), '--cfg-options', data],
        cwd=REPO, env=_env(PORT=str(free_port())), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert sharded.returncode == 0, sharded.stdout
    single = subprocess.run(
        [sys.executable, osp.join('tools', 'test.py'),
         osp.join(CONFIGS, 'tiny_vit_ddp.py'),
         str(runs / 'ddp' / f'iter_{MAX_ITERS}.pth'), '--work-dir',
         str(tmp_path / 'single'), '--cfg-options', data],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert single.returncode == 0, single.stdout
    assert _top1(sharded.stdout) == _top1(single.stdout)
    # the directory was checked (keys and shapes), with no opt-out
    assert 'the model holds keys and shapes of the' in sharded.stdout
