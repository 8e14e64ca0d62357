"""mmengine checkpoints resume under torch's weights-only loading, safely.

``import mmspd`` must make a real mmengine ``Runner`` resume its own
checkpoints with ``torch.load``'s default ``weights_only=True`` (no global
switch), while files that would run code on unpickling stay refused by
mmengine's loaders.
"""
import builtins
import io
import os
import pathlib
import pickle
import pickletools
import shlex

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import mmspd  # noqa: F401  (installs the weights-only support)
from mmspd.engine.safe_checkpoint import safe_checkpoint_globals
from tests.toy_runner import ToyModel, make_runner, model_state

ENV_SWITCH = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
DANGEROUS = {
    'builtins.getattr': builtins.getattr,
    'builtins.eval': builtins.eval,
    'builtins.exec': builtins.exec,
    'builtins.compile': builtins.compile,
    'builtins.__import__': builtins.__import__,
    'os.system': os.system,
    f'{os.system.__module__}.system': os.system,  # 'posix.system'
}


def _pickle_globals(data: bytes) -> set:
    """The ``module.name`` of every GLOBAL opcode of a protocol-2 pickle."""
    names = set()
    for opcode, arg, _ in pickletools.genops(data):
        assert opcode.name != 'STACK_GLOBAL', 'expected a protocol-2 pickle'
        if opcode.name == 'GLOBAL':
            module, name = arg.split(' ')
            names.add(f'{module}.{name}')
    return names


def _checkpoint_globals(path) -> set:
    """The globals named in a ``torch.save`` file's ``data.pkl``."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        (name, ) = [n for n in zf.namelist() if n.endswith('/data.pkl')]
        return _pickle_globals(zf.read(name))


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].cpu() - b[k].cpu()).abs().max().item() for k in a)


def _anchors(runner) -> dict:
    optimizer = runner.optim_wrapper.optimizer
    return {
        name: optimizer.state[p]['anchor'].detach().cpu().clone()
        for name, p in runner.model.named_parameters()
    }


# --------------------------------------------------------------------------
# A real Runner: 3 iterations + resume to 6 vs. 6 uninterrupted iterations.
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    assert ENV_SWITCH not in os.environ, (
        f'{ENV_SWITCH} is set: resume would not exercise weights-only loading')

    # Uninterrupted reference run.
    reference_model = ToyModel(init_seed=0)
    initial = model_state(reference_model)
    reference = make_runner(tmp_path_factory.mktemp('reference'), max_iters=6,
                            model=reference_model)
    reference.train()

    # Interrupted run: 3 iterations, checkpoint at iteration 3.
    work_dir = tmp_path_factory.mktemp('interrupted')
    first_model = ToyModel(init_seed=0)
    assert _max_abs_diff(model_state(first_model), initial) == 0
    first = make_runner(work_dir, max_iters=3, model=first_model)
    first.train()
    checkpoint = work_dir / 'iter_3.pth'
    assert checkpoint.is_file()
    weights_at_3 = model_state(first.model)
    first_anchors = _anchors(first)

    # Resume: the model starts from *other* weights, so only the checkpoint
    # can make it match the reference run.
    assert ENV_SWITCH not in os.environ
    resumed_model = ToyModel(init_seed=1)
    assert _max_abs_diff(model_state(resumed_model), initial) > 0.1
    resumed = make_runner(work_dir, max_iters=6, model=resumed_model,
                          resume=True)
    resumed.train()
    assert ENV_SWITCH not in os.environ

    return dict(initial=initial, reference=reference, first=first,
                first_anchors=first_anchors, weights_at_3=weights_at_3,
                resumed=resumed, resumed_model=resumed_model,
                checkpoint=checkpoint, work_dir=work_dir)


def test_resume_matches_uninterrupted_run(runs):
    reference, resumed = runs['reference'], runs['resumed']
    assert reference.iter == 6 and resumed.iter == 6
    # The resumed runner trained only iterations 4..6.
    assert runs['resumed_model'].loss_calls == 3
    assert (runs['work_dir'] / 'iter_6.pth').is_file()
    # Training moved the weights, so the comparison below is not vacuous.
    assert _max_abs_diff(runs['weights_at_3'], runs['initial']) > 1e-3
    final = model_state(resumed.model)
    assert _max_abs_diff(final, runs['weights_at_3']) > 1e-4
    assert _max_abs_diff(final, model_state(reference.model)) <= 1e-6
    # The LinearLR schedule was resumed as well.
    for g_res, g_ref in zip(resumed.optim_wrapper.optimizer.param_groups,
                            reference.optim_wrapper.optimizer.param_groups):
        assert g_res['lr'] == pytest.approx(g_ref['lr'], rel=0, abs=1e-12)


def test_resume_restores_the_message_hub(runs):
    """The HistoryBuffers of the checkpoint were loaded, not recreated."""
    hub = runs['resumed'].message_hub
    loss = hub.get_scalar('train/loss')
    # 3 losses from the checkpoint + 3 from the resumed iterations.
    assert len(loss.data[0]) == 6
    ref_loss = runs['reference'].message_hub.get_scalar('train/loss')
    np.testing.assert_allclose(loss.data[0], ref_loss.data[0], rtol=0,
                               atol=1e-6)
    assert loss.mean() == pytest.approx(ref_loss.mean())


def test_resumed_anchors_are_the_initial_weights(runs):
    resumed_anchors = _anchors(runs['resumed'])
    assert resumed_anchors.keys() == runs['initial'].keys()
    # Anchors of the first run were its initial weights ...
    assert _max_abs_diff(runs['first_anchors'], runs['initial']) == 0
    # ... and the resumed optimizer kept them (not the weights at iter 3,
    # not the resumed model's own construction-time weights).
    assert _max_abs_diff(resumed_anchors, runs['first_anchors']) == 0
    assert _max_abs_diff(resumed_anchors, runs['weights_at_3']) > 1e-3
    # Also what the reference run anchored to.
    assert _max_abs_diff(_anchors(runs['reference']), runs['initial']) == 0


def test_checkpoint_needs_only_allow_listed_globals(runs):
    path = runs['checkpoint']
    # The checkpoint really holds mmengine's HistoryBuffers and numpy data,
    # so an empty answer below is not trivial.
    names = _checkpoint_globals(path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert 'numpy.ndarray' in names
    assert not names & set(DANGEROUS), names & set(DANGEROUS)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        str(path)) == []
    # And it loads with an explicit weights_only=True.
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 3
    optimizer_state = ckpt['optimizer']['state']
    assert optimizer_state and all('anchor' in s
                                   for s in optimizer_state.values())


# --------------------------------------------------------------------------
# No global switch, nothing dangerous allow-listed.
# --------------------------------------------------------------------------
def _safe_global_entries():
    """(object, name or None) for every user allow-listed global."""
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple):
            yield entry[0], entry[1]
        else:
            yield entry, None


def test_no_dangerous_safe_globals():
    entries = list(_safe_global_entries())
    assert entries, 'import mmspd allow-listed nothing'
    objects = [obj for obj, _ in entries]
    for name, obj in DANGEROUS.items():
        assert not any(o is obj for o in objects), name
    names = {name for _, name in entries if name is not None}
    names |= {f'{getattr(o, "__module__", "")}.{getattr(o, "__qualname__", "")}'
              for o in objects}
    assert not names & set(DANGEROUS), names & set(DANGEROUS)


def test_no_global_weights_only_switch():
    assert ENV_SWITCH not in os.environ
    assert torch.load is torch.serialization.load
    assert torch.load.__module__ == 'torch.serialization'
    default = getattr(torch.serialization, '_default_to_weights_only', None)
    if default is not None:  # private helper of torch >= 2.6
        assert default(None) is True


def test_safe_globals_are_data_only_and_named_as_pickle_writes_them():
    allowed_functions = {
        'numpy._core.multiarray._reconstruct', 'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar', 'numpy.core.multiarray.scalar',
        '_codecs.encode'
    }
    registered = list(_safe_global_entries())
    names_of = {}
    for obj, name in safe_checkpoint_globals():
        assert any(o is obj and n in (None, name) for o, n in registered), \
            name
        if not isinstance(obj, type):
            assert name in allowed_functions, name
        names_of.setdefault(id(obj), (obj, set()))[1].add(name)
    # For every object, the name pickle writes must be allow-listed, or
    # allow-listing it is useless (aliases such as numpy.dtypes.ByteDType
    # for Int8DType may be listed in addition).
    for obj, names in names_of.values():
        written = _pickle_globals(pickle.dumps(obj, protocol=2))
        assert len(written) == 1 and written <= names, (names, written)


# --------------------------------------------------------------------------
# Files that would run code on unpickling are refused.
# --------------------------------------------------------------------------
class _TouchViaSystem:

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(self.marker)}', )


class _TouchViaPathTouch:
    """Pickles ``pathlib.Path.touch`` through ``builtins.getattr``."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker, )


class _TouchViaExec:

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()', )


PAYLOADS = [_TouchViaSystem, _TouchViaPathTouch, _TouchViaExec]


def _malicious_checkpoint(tmp_path, payload):
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'malicious.pth'
    torch.save(dict(state_dict=dict(weight=torch.zeros(2)),
                    meta=payload(marker)), path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize('payload', PAYLOADS, ids=lambda p: p.__name__)
def test_payload_really_runs_code_when_trusted(tmp_path, payload):
    """Control: the crafted files do run code under an unsafe load."""
    path, marker = _malicious_checkpoint(tmp_path, payload)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize('payload', PAYLOADS, ids=lambda p: p.__name__)
def test_checkpoint_loader_refuses_code(tmp_path, payload):
    path, marker = _malicious_checkpoint(tmp_path, payload)
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


@pytest.mark.parametrize('payload', PAYLOADS, ids=lambda p: p.__name__)
def test_load_checkpoint_refuses_code(tmp_path, payload):
    path, marker = _malicious_checkpoint(tmp_path, payload)
    model = torch.nn.Linear(2, 1)
    before = model_state(model)
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        load_checkpoint(model, str(path), map_location='cpu')
    assert not marker.exists()
    assert _max_abs_diff(model_state(model), before) == 0


def test_checkpoint_cannot_replace_history_buffer_statistics(tmp_path,
                                                             monkeypatch):
    """A HistoryBuffer's state must not write into the class-wide table.

    mmengine's ``HistoryBuffer.__setstate__`` merges a pickled
    ``statistics_methods`` mapping into the class attribute
    ``_statistics_methods``. With ``HistoryBuffer`` allow-listed, a file
    that passes the weights-only check could thus swap e.g. ``'mean'`` for
    any allow-listed callable, process-wide.
    """
    import _codecs
    table = HistoryBuffer._statistics_methods
    saved_table = dict(table)
    path = tmp_path / 'tampered.pth'
    with monkeypatch.context() as m:
        m.setattr(HistoryBuffer, '__getstate__',
                  lambda self: dict(self.__dict__,
                                    statistics_methods=dict(
                                        mean=_codecs.encode)))
        torch.save(dict(buf=HistoryBuffer([1.0], [1])), path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        str(path)) == []
    try:
        try:
            CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
        except (pickle.UnpicklingError, RuntimeError):
            pass  # refusing the file is fine too
        assert HistoryBuffer._statistics_methods['mean'] is \
            saved_table['mean']
        assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0
    finally:
        table.clear()
        table.update(saved_table)


# --------------------------------------------------------------------------
# HistoryBuffer pickles as data.
# --------------------------------------------------------------------------
def _buffer():
    buf = HistoryBuffer()
    for i, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0]):
        buf.update(value, count=i + 1)
    return buf


def test_history_buffer_state_has_no_function_table():
    buf = _buffer()
    live = dict(buf.__dict__)
    reduced = buf.__reduce_ex__(2)
    state = reduced[2]
    assert isinstance(state, dict)
    assert 'statistics_methods' not in state
    assert '_statistics_methods' not in state
    data = pickle.dumps(buf, protocol=2)
    assert b'statistics_methods' not in data
    assert not _pickle_globals(data) & set(DANGEROUS)
    assert 'builtins.getattr' not in _pickle_globals(data)
    # Pickling did not touch the live object.
    assert buf.__dict__.keys() == live.keys()
    assert 'statistics_methods' not in buf.__dict__
    for key, value in live.items():
        assert buf.__dict__[key] is value


def test_history_buffer_round_trips_weights_only():
    buf = _buffer()
    keys_before = set(buf.__dict__)
    stream = io.BytesIO()
    torch.save(dict(buf=buf, other=torch.arange(3)), stream)
    assert set(buf.__dict__) == keys_before
    stream.seek(0)
    loaded = torch.load(stream, weights_only=True)
    out = loaded['buf']
    assert type(out) is HistoryBuffer and out is not buf
    assert torch.equal(loaded['other'], torch.arange(3))
    np.testing.assert_array_equal(out.data[0], buf.data[0])
    np.testing.assert_array_equal(out.data[1], buf.data[1])
    assert out.max_length == buf.max_length
    assert out.mean() == pytest.approx(buf.mean())
    assert out.mean(2) == pytest.approx((8.0 + 16.0) / (4 + 5))
    assert out.max() == 16.0 and out.min() == 1.0
    assert out.current() == 16.0
    assert out.statistics('mean') == pytest.approx(buf.mean())
    assert out.statistics('max', 3) == 16.0
    # The loaded buffer keeps working.
    out.update(32.0)
    assert out.current() == 32.0 and len(out.data[0]) == 6
    assert 'statistics_methods' not in out.__dict__
