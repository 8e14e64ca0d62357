"""Files that a kill at any moment leaves either whole or absent.

The checkpoint writers (:class:`~mmspd.engine.hooks.CrashSafeCheckpointHook`,
:mod:`~mmspd.engine.sharded_checkpoint`) write under a temporary name,
flush to the disk and rename; the readers that pick a checkpoint to resume
from check that a file is complete. These are the helpers both use.
"""
import os
import os.path as osp
import zipfile

#: Suffix of the name a file is written under before it is complete
#: (``iter_4.pth`` is written as ``iter_4.pth.tmp``, then renamed).
TMP_SUFFIX = '.tmp'


def fsync_path(path: str) -> None:
    """Flush a file's (POSIX: or a directory's) data to the disk."""
    if osp.isdir(path):
        if os.name != 'posix':  # directories cannot be opened elsewhere
            return
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp_path: str, path: str) -> None:
    """Flush ``tmp_path`` to the disk and rename it to ``path`` (atomic on
    one file system), then flush the directory holding the new name."""
    fsync_path(tmp_path)
    os.replace(tmp_path, path)
    fsync_path(osp.dirname(osp.abspath(path)))


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path``'s content by ``text`` so that a reader (or a kill)
    sees either the old or the new content, never a partial one."""
    tmp_path = path + TMP_SUFFIX
    with open(tmp_path, 'w') as f:
        f.write(text)
    replace_durably(tmp_path, path)


def is_complete_torch_file(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (zip format).

    The zip format (torch >= 1.6) ends a file with the zip directory and
    stores a CRC per record, so a file cut short by a kill fails this
    check. Reads the whole file; unpickles nothing. A legacy (non-zip)
    torch file counts as incomplete.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError):
        return False
