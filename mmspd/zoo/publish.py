"""Turn a training checkpoint into a release file.

A training checkpoint of mmengine holds ``state_dict``, ``meta``,
``optimizer`` (for AdamSPD/AdamL2SP that includes a full copy of the
weights: the anchors), ``message_hub`` and ``param_schedulers``. A release
keeps the weights and the plain-data part of ``meta`` only, and is named
after its content: ``<stem>-<first 8 hex digits of its sha256>.pth``, as
OpenMMLab's model zoos do. It loads with ``torch.load(...,
weights_only=True)``.
"""
import hashlib
import os
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

import torch

from mmspd.engine import safe_checkpoint  # noqa: F401  (mmengine checkpoints
#                                           load weights-only)

#: Characters of the sha256 hex digest in a published file's name.
HASH_CHARS = 8
_PLAIN = (str, int, float, bool, type(None))


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


def strip_checkpoint(path: str) -> Tuple[Dict[str, Any], List[str]]:
    """Read a checkpoint and keep its weights and plain ``meta`` only.

    ``path`` is an mmengine checkpoint (a dict with ``state_dict``) or a
    bare state dict (names to tensors). Returns ``(release, dropped)``:
    ``release`` is ``{'state_dict': OrderedDict, 'meta': dict}`` (``meta``
    only when the checkpoint has one) and ``dropped`` names what was left
    out (top-level keys such as ``optimizer``, and non-plain ``meta``
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
    if 'state_dict' in checkpoint and 'meta' in checkpoint:
        meta, meta_dropped = plain_data(checkpoint['meta'])
        if not isinstance(meta, dict):
            meta, meta_dropped = {}, ['meta']
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


def publish_checkpoint(in_path: str, out: str) -> Tuple[str, List[str]]:
    """Write the release of ``in_path`` as ``<out>-<sha8>.pth``.

    ``out`` may end with ``.pth`` or not. The file is written under a
    temporary name first and renamed when complete, so a failed run leaves
    no half-written release. Returns ``(path, dropped)``; see
    :func:`strip_checkpoint` for ``dropped`` and the errors raised.
    """
    stem = release_stem(out)
    release, dropped = strip_checkpoint(in_path)
    tmp = f'{stem}.tmp-{os.getpid()}.pth'
    try:
        torch.save(release, tmp)
        final = f'{stem}-{sha256_of(tmp)[:HASH_CHARS]}.pth'
        os.replace(tmp, final)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return final, dropped
