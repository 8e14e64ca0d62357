"""Turn a training checkpoint into a release file.

A training checkpoint of mmengine holds ``state_dict``, ``meta``,
``optimizer`` (for AdamSPD/AdamL2SP that includes a full copy of the
weights: the anchors), ``message_hub`` and ``param_schedulers``. A release
keeps the weights and a path-free, reproducible ``meta`` only:

* ``mmspd_version``, ``mmengine_version`` and ``commit`` (the git commit the
  run was trained from, which mmengine appends to its version string);
* ``cfg``, the config text, with every absolute path made relative to a
  root (the folder training ran from, by default the current one) and an
  absolute path outside the root cut to its last component;
* the other plain data of ``meta`` (``epoch``, ``iter``, ``seed``,
  ``dataset_meta``, ...), with the same path rule;
* ``metrics``, the test results (a ``robustness.json``), when given.

Left out: non-plain data, and mmengine's ``time`` and ``experiment_name``
(time stamps of the run). So the same weights with the same provenance
publish to the same bytes on any machine. The file is named after its
content: ``<stem>-<first 8 hex digits of its sha256>.pth``, as OpenMMLab's
model zoos do, and loads with ``torch.load(..., weights_only=True)``.
"""
import ast
import hashlib
import io
import json
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from mmspd.engine import safe_checkpoint  # noqa: F401  (mmengine checkpoints
#                                           load weights-only)
from mmspd.version import __version__

#: Characters of the sha256 hex digest in a published file's name.
HASH_CHARS = 8
_PLAIN = (str, int, float, bool, type(None))
#: ``meta`` entries of mmengine that differ between two runs of the same
#: training (time stamps), left out of a release.
RUN_SPECIFIC_META = ('time', 'experiment_name')
#: ``mmengine_version`` of an mmengine checkpoint: the version, then the
#: git commit of the folder training ran from (or ``unknown``).
_VERSION_AND_COMMIT = re.compile(r'(?P<version>.*?)(?P<commit>[0-9a-f]{40}|'
                                 r'unknown)?')


def plain_data(value: Any, path: str = 'meta') -> Tuple[Any, List[str]]:
    """``value`` with everything but plain data left out.

    Plain data is ``str``, ``int``, ``float``, ``bool``, ``None`` and
    lists / tuples / string-keyed dicts of plain data (tuples become lists).
    Returns ``(kept, dropped)``, ``dropped`` naming each left-out entry as a
    dotted path (``meta.hook_msgs``).
    """
    if isinstance(value, _PLAIN):
        return value, []
    if isinstance(value, (list, tuple)):
        kept, dropped = [], []
        for i, item in enumerate(value):
            item_kept, item_dropped = plain_data(item, f'{path}[{i}]')
            dropped += item_dropped
            if not item_dropped or item_kept is not None:
                kept.append(item_kept)
        return kept, dropped
    if isinstance(value, dict):
        kept_dict, dropped = {}, []
        for key, item in value.items():
            if not isinstance(key, str):
                dropped.append(f'{path}[{key!r}]')
                continue
            item_kept, item_dropped = plain_data(item, f'{path}.{key}')
            dropped += item_dropped
            if item_kept is not None or not item_dropped:
                kept_dict[key] = item_kept
        return kept_dict, dropped
    return None, [f'{path} ({type(value).__name__})']


def _top_folder(path: str) -> str:
    drive, rest = osp.splitdrive(path)
    parts = [p for p in re.split(r'[\\/]', rest) if p]
    return osp.join(drive + osp.sep, parts[0]) if parts else drive + osp.sep


def path_free(value: str, root: str) -> str:
    """``value`` with its machine path removed.

    An absolute path inside ``root`` becomes relative to it (``root``
    itself becomes ``.``); another absolute path whose top folder exists on
    this machine (``/data/imagenet``, ``/home/me/x``) keeps only its last
    component (``imagenet``, ``x``). Any other string, including
    path-like names that are no folder here (Open Images' class ids such as
    ``/m/01g317``), is returned as it is.
    """
    if not osp.isabs(value):
        return value
    root = osp.abspath(root)
    path = osp.normpath(value)
    if path == root or path.startswith(root.rstrip(osp.sep) + osp.sep):
        return osp.relpath(path, root).replace(osp.sep, '/')
    if not osp.isdir(_top_folder(path)):
        return value
    return osp.basename(path) or value


def path_free_config(text: str, root: str) -> Tuple[str, List[str]]:
    """A config's text (Python, as mmengine's ``pretty_text``) with
    :func:`path_free` applied to every string literal.

    Returns ``(text, rewritten)``, ``rewritten`` listing each changed
    literal as ``'old -> new'``. Text that is not Python is returned
    unchanged (:func:`release_meta` still checks it for the root).
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text, []
    lines = text.splitlines(keepends=True)
    # ast offsets are UTF-8 byte columns: edit the lines as bytes
    encoded = [line.encode('utf-8') for line in lines]
    starts = [0]
    for line in encoded:
        starts.append(starts[-1] + len(line))
    data = b''.join(encoded)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            new = path_free(node.value, root)
            if new != node.value:
                begin = starts[node.lineno - 1] + node.col_offset
                end = starts[node.end_lineno - 1] + node.end_col_offset
                edits.append((begin, end, node.value, new))
    rewritten = []
    for begin, end, old, new in sorted(edits, reverse=True):
        data = data[:begin] + repr(new).encode('utf-8') + data[end:]
        rewritten.append(f'{old} -> {new}')
    return data.decode('utf-8'), rewritten[::-1]


def _path_free_data(value: Any, root: str, path: str,
                    rewritten: List[str]) -> Any:
    if isinstance(value, str):
        new = path_free(value, root)
        if new != value:
            rewritten.append(f'{path}: {value} -> {new}')
        return new
    if isinstance(value, list):
        return [_path_free_data(v, root, f'{path}[{i}]', rewritten)
                for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _path_free_data(v, root, f'{path}.{k}', rewritten)
                for k, v in value.items()}
    return value


def _mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, list):
        return any(_mentions(v, needle) for v in value)
    if isinstance(value, dict):
        return any(_mentions(v, needle) for v in value.values())
    return False


def release_meta(meta: Dict[str, Any], root: str,
                 metrics: Optional[Dict[str, float]] = None
                 ) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """The ``meta`` of a release, from a training checkpoint's plain meta.

    Leaves out :data:`RUN_SPECIFIC_META`, splits mmengine's
    ``mmengine_version`` into the version and ``commit``, makes every path
    path-free (:func:`path_free`, in ``cfg`` per string literal) and adds
    ``metrics`` and ``mmspd_version`` (the one already recorded, as in a
    release published before, else this mmspd's version). Returns ``(meta, dropped,
    rewritten)``. Raises ``ValueError`` when ``root`` still appears in the
    result (a path embedded in a longer string), rather than publish it.
    """
    dropped = [f'meta.{key} (run time stamp)' for key in RUN_SPECIFIC_META
               if key in meta]
    rest = {k: v for k, v in meta.items() if k not in RUN_SPECIFIC_META}
    release: Dict[str, Any] = {
        'mmspd_version': rest.pop('mmspd_version', __version__)}
    mmengine_version = rest.pop('mmengine_version', None)
    if isinstance(mmengine_version, str):
        match = _VERSION_AND_COMMIT.fullmatch(mmengine_version)
        release['mmengine_version'] = match.group('version')
        release['commit'] = (rest.pop('commit', None) or match.group('commit')
                             or 'unknown')
    rewritten: List[str] = []
    if isinstance(rest.get('cfg'), str):
        rest['cfg'], in_cfg = path_free_config(rest['cfg'], root)
        rewritten += [f'meta.cfg: {r}' for r in in_cfg]
    for key, value in rest.items():
        release[key] = value if key == 'cfg' else _path_free_data(
            value, root, f'meta.{key}', rewritten)
    if metrics is not None:
        release['metrics'] = dict(metrics)
    needle = osp.abspath(root).rstrip(osp.sep) + osp.sep
    if needle != osp.sep and _mentions(release, needle):
        raise ValueError(f'The meta of this checkpoint still names the root '
                         f'{needle!r} inside a longer string after its paths '
                         f'were made relative; publish from another --root '
                         f'or fix the config')
    return release, dropped, rewritten


def read_metrics(path: str) -> Dict[str, float]:
    """The ``metrics`` of a ``robustness.json`` (``tools/test.py`` with
    ``RobustTestLoop``) or of any JSON object of metric names to numbers.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for
    one that holds no such mapping.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Results file {path!r} does not exist')
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'Results file {path!r} is not JSON: '
                             f'{error}') from error
    if isinstance(data, dict) and isinstance(data.get('metrics'), dict):
        data = data['metrics']
    if not (isinstance(data, dict) and data and all(
            isinstance(k, str) and isinstance(v, (int, float))
            and not isinstance(v, bool) for k, v in data.items())):
        raise ValueError(f'Results file {path!r} holds no metrics: expected '
                         f'{{"metrics": {{name: number}}}} or {{name: '
                         f'number}}')
    return {k: float(v) for k, v in data.items()}


def _load(path: str) -> Any:
    if not osp.exists(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist')
    if not osp.isfile(path):
        raise IsADirectoryError(f'Checkpoint {path!r} is not a file')
    with open(path, 'rb') as f:
        magic = f.read(2)
    # torch.save writes a zip archive (b'PK'); legacy files are a pickle
    if magic != b'PK' and magic[:1] != b'\x80':
        raise ValueError(f'{path!r} is not a readable PyTorch checkpoint '
                         f'(neither a torch.save archive nor a pickle)')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f'Checkpoint {path!r} cannot be loaded with weights_only=True '
            f'(it pickles objects other than tensors and plain data), so it '
            f'is not published; load it yourself if you trust it and save '
            f'its state_dict. Reason: {_weights_only_reason(error)}'
        ) from error
    except (RuntimeError, EOFError) as error:
        raise ValueError(f'{path!r} is not a readable PyTorch checkpoint: '
                         f'{error}') from error


def _weights_only_reason(error: Exception) -> str:
    """The specific part of torch's weights-only refusal (its message is a
    generic paragraph, the reason, then a pointer to the docs)."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    paragraphs = [p.strip() for p in text.split('\n\n') if p.strip()]
    specific = [p for p in paragraphs[1:]
                if not p.startswith('Check the documentation')]
    return (specific or paragraphs or [type(error).__name__])[0]


def strip_checkpoint(path: str, root: Optional[str] = None,
                     metrics: Optional[Dict[str, float]] = None
                     ) -> Tuple[Dict[str, Any], List[str]]:
    """Read a checkpoint and keep its weights and release ``meta`` only.

    ``path`` is an mmengine checkpoint (a dict with ``state_dict``), a
    release (published before: publishing it again gives the same file) or
    a bare state dict (names to tensors). Returns ``(release, dropped)``:
    ``release`` is ``{'state_dict': OrderedDict, 'meta': dict}`` with
    ``meta`` as :func:`release_meta` makes it from the plain part of the
    checkpoint's (``root``: default the current folder; ``metrics``: test
    results to record) and ``dropped`` names what was left out (top-level
    keys such as ``optimizer``, non-plain and run-specific ``meta``
    entries).

    Raises ``FileNotFoundError`` / ``IsADirectoryError`` for a bad path and
    ``ValueError`` for a file that is not a checkpoint, has no weights, or
    cannot be loaded weights-only.
    """
    checkpoint = _load(path)
    if not isinstance(checkpoint, dict):
        raise ValueError(f'Checkpoint {path!r} holds a '
                         f'{type(checkpoint).__name__}, expected a dict')
    if 'state_dict' in checkpoint:
        weights = checkpoint['state_dict']
        dropped = [k for k in checkpoint if k not in ('state_dict', 'meta')]
    elif checkpoint and all(isinstance(v, torch.Tensor)
                            for v in checkpoint.values()):
        weights, dropped = checkpoint, []
    else:
        raise ValueError(f'Checkpoint {path!r} has no state_dict (its keys: '
                         f'{sorted(map(str, checkpoint))})')
    if not isinstance(weights, dict):
        raise ValueError(f'The state_dict of {path!r} is a '
                         f'{type(weights).__name__}, expected a dict')
    bad = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f'The state_dict of {path!r} has non-tensor '
                         f'entries: {bad}')
    release: Dict[str, Any] = dict(state_dict=OrderedDict(
        (k, v.detach().cpu().clone()) for k, v in weights.items()))
    meta: Dict[str, Any] = {}
    if 'state_dict' in checkpoint and 'meta' in checkpoint:
        meta, meta_dropped = plain_data(checkpoint['meta'])
        if not isinstance(meta, dict):
            meta, meta_dropped = {}, ['meta']
        dropped += meta_dropped
    root = os.getcwd() if root is None else root
    meta, meta_dropped, rewritten = release_meta(meta, root, metrics)
    if rewritten:
        print_log(f'Paths in the meta of {path!r} made free of this '
                  f'machine (root {osp.abspath(root)!r}): '
                  + '; '.join(rewritten), logger='current')
    release['meta'] = meta
    dropped += meta_dropped
    return release, dropped


def sha256_of(path: str) -> str:
    """The hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def release_stem(out: str) -> str:
    """``out`` without a trailing ``.pth``; checks that its folder exists.

    Raises ``ValueError`` when ``out`` names a folder or has no file name,
    ``FileNotFoundError`` when its folder does not exist.
    """
    stem = out[:-len('.pth')] if out.endswith('.pth') else out
    name = osp.basename(stem)
    if not name or osp.isdir(stem):
        raise ValueError(f'Output {out!r} names a folder; give a file name '
                         f'such as {osp.join(out, "model")!r}')
    folder = osp.dirname(osp.abspath(stem))
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Output folder {folder!r} (of {out!r}) '
                                f'does not exist')
    return stem


def release_bytes(release: Dict[str, Any]) -> bytes:
    """``torch.save`` of ``release`` into memory.

    Saving to a file would name the archive's inner folder after the file
    (a temporary name would change the bytes); in memory it is always
    ``archive``, so equal releases give equal bytes.
    """
    buffer = io.BytesIO()
    torch.save(release, buffer)
    return buffer.getvalue()


def publish_checkpoint(in_path: str, out: str, root: Optional[str] = None,
                       results: Optional[str] = None
                       ) -> Tuple[str, List[str]]:
    """Write the release of ``in_path`` as ``<out>-<sha8>.pth``.

    ``out`` may end with ``.pth`` or not. ``root`` (default: the current
    folder) is what paths in the meta are made relative to; ``results`` a
    ``robustness.json`` whose metrics go into the meta (see
    :func:`strip_checkpoint`, :func:`read_metrics`). The file is written
    under a temporary name first and renamed when complete, so a failed run
    leaves no half-written release. Returns ``(path, dropped)``; see
    :func:`strip_checkpoint` for ``dropped`` and the errors raised.
    """
    stem = release_stem(out)
    metrics = None if results is None else read_metrics(results)
    release, dropped = strip_checkpoint(in_path, root, metrics)
    data = release_bytes(release)
    final = f'{stem}-{hashlib.sha256(data).hexdigest()[:HASH_CHARS]}.pth'
    tmp = f'{stem}.tmp-{os.getpid()}.pth'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, final)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return final, dropped
