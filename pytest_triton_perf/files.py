"""Writing a file so that a reader sees the old content or the new, never half of it.

The one atomic writer of the package: baselines (``baseline/store.py``) and every report
file (``report/``) go through :func:`atomic_write_text`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; returns the path.

    The temporary file lives in the target directory because ``os.replace`` is atomic only
    within one file system; it is fsynced before the rename, so a crash cannot leave an
    empty or truncated file under the final name, and removed when anything fails (a full
    disk, a read-only directory), leaving the previous file byte-identical. The directory
    is fsynced after the rename so that the rename itself survives a crash (best effort:
    some file systems refuse to fsync a directory).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target
