"""Run a Python script with mmspd imported: ``python -m mmspd SCRIPT ARGS``.

For tools that are not mmspd's (mmpretrain's or mmseg's ``tools/train.py``,
your own): importing mmspd first registers its optimizers, constructor and
hooks and lets configs inherit ``mmspd::<path>`` bases, which a config's
``custom_imports`` cannot do (mmengine reads the bases before it). The
script runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``, as
``python SCRIPT ARGS`` would run it.
"""
import os.path as osp
import runpy
import sys

import mmspd  # noqa: F401  (registrations, mmspd:: configs)

USAGE = 'usage: python -m mmspd SCRIPT [ARGS ...]'


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (['-h'], ['--help']):
        print(USAGE)
        return
    if not argv:
        sys.exit(USAGE)
    script = argv[0]
    if not osp.isfile(script):
        sys.exit(f'python -m mmspd: script {script!r} does not exist '
                 f'({USAGE})')
    sys.argv = argv
    sys.path.insert(0, osp.dirname(osp.abspath(script)))
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
