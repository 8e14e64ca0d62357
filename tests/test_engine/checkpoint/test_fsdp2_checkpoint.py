"""Sharded checkpoints (mmspd.engine.sharded_checkpoint) of FSDP2 models and
their optimizers, anchors included, on 2 and 3 CPU processes (gloo): resume
equals an uninterrupted run, 2 -> 3 resharding is exact, a consolidated
checkpoint resumes in one process with plain torch, and incomplete
directories are never taken for checkpoints."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from mmspd.engine import sharded_checkpoint as sc
from mmspd.engine.resume import find_resume_checkpoint, is_complete_checkpoint
from tests.test_engine.checkpoint import fsdp2_checkpoint_worker as worker
from tests.distributed import free_port
from tests.tool_modules import REPO

WORKER = osp.join(REPO, 'tests', 'test_engine', 'checkpoint',
                  'fsdp2_checkpoint_worker.py')
#: every optimizer the sharded checkpoints are tested with
OPTIMIZERS = ('AdamSPD', 'AdamL2SP', 'AdamW')
#: those that keep an anchor per parameter in their state
ANCHORED = ('AdamSPD', 'AdamL2SP')


def _torchrun(nproc: int, *args) -> None:
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
           WORKER, *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Uninterrupted 2-process runs, then resumes from step 3 on 2 and on 3
    processes, for every optimizer. Returns the output directory."""
    out = tmp_path_factory.mktemp('fsdp2_ckpt')
    names = ','.join(OPTIMIZERS)
    _torchrun(2, out, 0, names)
    _torchrun(2, out, worker.SAVE_AT, names)
    _torchrun(3, out, worker.SAVE_AT, names)
    return out


def _consolidated(path):
    return sc.consolidate_sharded_checkpoint(str(path))


def _max_diff(a: dict, b: dict) -> float:
    """Max abs difference over a model state dict and an optimizer state
    (indexed format), which must have the same keys."""
    assert a['state_dict'].keys() == b['state_dict'].keys()
    diffs = [(a['state_dict'][k] - b['state_dict'][k]).abs().max().item()
             for k in a['state_dict']]
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for key in sa[i]:
            diffs.append((sa[i][key].double() -
                          sb[i][key].double()).abs().max().item())
    return max(diffs)


def _update_size(name, out) -> float:
    """Max abs change of the weights over the uninterrupted run."""
    first = worker.build_model().state_dict()
    final = _consolidated(out / name / 'final_start0_2')['state_dict']
    return max((final[k] - first[k]).abs().max().item() for k in first)


@pytest.mark.slow
@pytest.mark.parametrize('name', OPTIMIZERS)
def test_resume_on_the_same_world_size_equals_the_uninterrupted_run(
        runs, name):
    uninterrupted = _consolidated(runs / name / 'final_start0_2')
    resumed = _consolidated(runs / name / f'final_start{worker.SAVE_AT}_2')
    diff = _max_diff(uninterrupted, resumed)
    print(f'{name}: resumed (2 processes) vs uninterrupted: {diff:.3e}')
    assert diff == 0.0


@pytest.mark.slow
@pytest.mark.parametrize('name', OPTIMIZERS)
def test_resume_on_three_processes_reshards_exactly(runs, name):
    saved = _consolidated(runs / name / f'step_{worker.SAVE_AT}')
    loaded = _consolidated(runs / name / 'loaded_3')
    assert _max_diff(saved, loaded) == 0.0  # resharding itself is exact
    uninterrupted = _consolidated(runs / name / 'final_start0_2')
    resumed = _consolidated(runs / name / f'final_start{worker.SAVE_AT}_3')
    diff = _max_diff(uninterrupted, resumed)
    update = _update_size(name, runs)
    print(f'{name}: resumed on 3 vs uninterrupted on 2 processes: '
          f'{diff:.3e} (update {update:.3e})')
    # only the order of the gradient sums differs
    assert diff <= 1e-6 * update


@pytest.mark.slow
@pytest.mark.parametrize('name', OPTIMIZERS)
def test_consolidated_checkpoint_resumes_in_one_process(runs, name):
    """The full checkpoint loads into a plain, unsharded model and
    optimizer (``load_state_dict``) and continues as the sharded run."""
    saved = _consolidated(runs / name / f'step_{worker.SAVE_AT}')
    model = worker.build_model()
    optimizer = worker.build_optimizer(name, model.parameters())
    model.load_state_dict(saved['state_dict'])
    optimizer.load_state_dict(saved['optimizer'])
    for x, y in worker.batches()[worker.SAVE_AT:]:
        worker.loss_of(model, x, y).backward()
        optimizer.step()
        optimizer.zero_grad()
    final = _consolidated(runs / name / 'final_start0_2')['state_dict']
    diff = max((final[k] - v).abs().max().item()
               for k, v in model.state_dict().items())
    update = _update_size(name, runs)
    print(f'{name}: one process from the consolidated checkpoint vs '
          f'2-process run: {diff:.3e} (update {update:.3e})')
    assert diff <= 1e-6 * update


@pytest.mark.slow
@pytest.mark.parametrize('name', ANCHORED)
def test_anchors_are_saved_and_resharded(runs, name):
    """Every parameter's anchor (captured lazily at the first step from
    the sharded parameter) is in the checkpoint: the initial weights,
    exactly, before and after loading on 3 processes."""
    initial = list(worker.build_model().parameters())
    for ckpt in (f'step_{worker.SAVE_AT}', 'loaded_3',
                 f'final_start{worker.SAVE_AT}_3'):
        state = _consolidated(runs / name / ckpt)['optimizer']['state']
        assert sorted(state) == list(range(len(initial)))
        for i, p in enumerate(initial):
            assert torch.equal(state[i]['anchor'], p.detach()), (ckpt, i)


@pytest.mark.slow
def test_checkpoint_carries_the_meta_and_is_complete(runs):
    path = runs / OPTIMIZERS[0] / f'step_{worker.SAVE_AT}'
    meta = sc.read_sharded_meta(str(path))
    assert meta['meta'] == dict(iter=worker.SAVE_AT)
    assert meta['world_size'] == 2
    assert sc.is_complete_sharded_checkpoint(str(path))
    assert is_complete_checkpoint(str(path))
    assert sorted(n for n in os.listdir(path) if n.endswith('.distcp')) == [
        '__0_0.distcp', '__1_0.distcp']


@pytest.mark.slow
def test_incomplete_directories_are_not_checkpoints(runs, tmp_path):
    """What a kill can leave behind: a ``.tmp`` directory, a directory
    without DCP's index, a truncated meta file. None is resumed from."""
    good = runs / OPTIMIZERS[0] / f'step_{worker.SAVE_AT}'
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    shutil.copytree(good, work_dir / 'iter_3.pth')
    no_index = work_dir / 'iter_6.pth'
    shutil.copytree(good, no_index)
    os.remove(no_index / sc.DCP_METADATA_FILE)
    truncated = work_dir / 'iter_9.pth'
    shutil.copytree(good, truncated)
    meta = (truncated / sc.META_FILE).read_bytes()
    (truncated / sc.META_FILE).write_bytes(meta[:len(meta) // 2])
    shutil.copytree(good, work_dir / 'iter_12.pth.tmp')
    (work_dir / 'last_checkpoint').write_text(str(truncated))
    for bad in (no_index, truncated):
        assert not is_complete_checkpoint(str(bad))
        with pytest.raises(ValueError, match='not a complete sharded'):
            sc.read_sharded_meta(str(bad))
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir /
                                                        'iter_3.pth')


def test_indexed_and_named_optimizer_states_convert_both_ways():
    model = worker.build_model()
    optimizer = torch.optim.AdamW(
        [dict(params=[model[0].weight, model[2].bias]),
         dict(params=[model[0].bias, model[2].weight], lr=1e-3)], lr=1e-2)
    worker.loss_of(model, *worker.batches()[0]).backward()
    optimizer.step()
    indexed = optimizer.state_dict()
    named = sc.full_to_named_optimizer_state(indexed, model, optimizer)
    assert named['param_groups'][0]['params'] == ['0.weight', '2.bias']
    assert named['param_groups'][1]['params'] == ['0.bias', '2.weight']
    assert named['state']['2.weight']['exp_avg'] is \
        indexed['state'][3]['exp_avg']
    back = sc.named_to_indexed_optimizer_state(named)
    assert back['param_groups'] == indexed['param_groups']
    assert back['state'].keys() == indexed['state'].keys()


def test_a_checkpoint_of_another_grouping_is_a_clear_error():
    model = worker.build_model()
    optimizer = torch.optim.AdamW(model.parameters())
    other = torch.optim.AdamW([dict(params=[model[0].weight]),
                               dict(params=list(model.parameters())[1:])])
    with pytest.raises(ValueError, match='2 optimizer parameter groups'):
        sc.full_to_named_optimizer_state(other.state_dict(), model,
                                         optimizer)
    with pytest.raises(ValueError, match='group 0 has 1 parameters'):
        sc.full_to_named_optimizer_state(
            torch.optim.AdamW([model[0].weight]).state_dict(), model,
            optimizer)


def test_reading_what_is_not_a_sharded_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='No sharded checkpoint'):
        sc.read_sharded_meta(str(tmp_path / 'absent'))
    with pytest.raises(ValueError, match='not a complete sharded'):
        sc.read_sharded_meta(str(tmp_path))
