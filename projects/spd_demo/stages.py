"""Cached demo stages: a stage whose folder records the same inputs is not
run again.

A stage's folder holds its outputs and, written last, ``stage.json`` with
``key`` (everything the outputs depend on, JSON data), ``result`` (what the
stage returned) and ``seconds``. A folder without ``stage.json`` (an
interrupted run) or with another key is wiped and the stage runs again.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import time
from typing import Any, Callable, Sequence, Tuple

import mmspd

STAGE_FILE = 'stage.json'


def _normalised(data: Any) -> Any:
    return json.loads(json.dumps(data))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


#: The mmspd code that decides the demo's numbers (paths relative to the
#: mmspd package): the optimizers, how configs turn into optimizers, the
#: test loop, WiSE-FT and the report.
DEMO_CODE = ('optim', 'engine/optimizers.py',
             'engine/optim_wrapper_constructor.py', 'engine/runner',
             'robust_ft')


def _python_files(root: str, path: str):
    full = osp.join(root, path)
    if osp.isfile(full):
        return [full]
    return [osp.join(folder, n) for folder, _, names in os.walk(full)
            for n in names if n.endswith('.py')]


def code_fingerprint(paths: Sequence[str] = DEMO_CODE) -> str:
    """sha256 over the Python sources at these paths (files or folders,
    relative to the mmspd package) and over this demo package's own: a
    stage keyed with it runs again after that code changed."""
    sources = [(osp.dirname(osp.abspath(mmspd.__file__)), path)
               for path in paths]
    sources.append((osp.dirname(osp.abspath(__file__)), ''))
    files = []
    for root, path in sources:
        files += [(osp.relpath(f, osp.dirname(root)), f)
                  for f in _python_files(root, path)]
    digest = hashlib.sha256()
    for name, path in sorted(files):
        digest.update(name.encode('utf-8'))
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()


def load_stage(stage_dir: str, key: Any):
    """The recorded ``(result, seconds)`` of a finished stage with this key,
    else ``None``."""
    path = osp.join(stage_dir, STAGE_FILE)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    if record.get('key') != _normalised(key):
        return None
    return record['result'], record['seconds']


def run_stage(stage_dir: str, key: Any,
              fn: Callable[[str], Any]) -> Tuple[Any, float, bool]:
    """Run ``fn(stage_dir)`` unless ``stage_dir`` holds its result for ``key``.

    ``key`` and ``fn``'s result must be JSON data. Returns
    ``(result, seconds, reused)``; ``seconds`` is the stage's own run time
    (recorded, when reused).
    """
    cached = load_stage(stage_dir, key)
    if cached is not None:
        return cached[0], cached[1], True
    if osp.isdir(stage_dir):
        shutil.rmtree(stage_dir)
    os.makedirs(stage_dir)
    start = time.perf_counter()
    result = _normalised(fn(stage_dir))
    seconds = time.perf_counter() - start
    tmp = osp.join(stage_dir, STAGE_FILE + '.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(dict(key=_normalised(key), result=result, seconds=seconds),
                  f, indent=2)
    os.replace(tmp, osp.join(stage_dir, STAGE_FILE))
    return result, seconds, False
