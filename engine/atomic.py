"""Files written whole or not at all: a temporary file beside the target, renamed over it
when complete, removed when anything fails. Readers never see half a file."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w", **open_kw: Any) -> Iterator[IO[Any]]:
    """``with atomic_file(p, "w", encoding="utf-8") as f: ...``: ``p`` appears, with the usual
    permissions, only when the block ends without an exception. OSError propagates; a ``p`` that
    is there and is not a regular file (a device such as /dev/null, a pipe, a socket) is refused
    with one, since renaming over it would replace it."""
    path = Path(path)
    if path.exists() and not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file (a device, a pipe?)"
        raise OSError(errno.EEXIST, f"{what}; name a file to write", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file of its own
            exc.filename = str(path)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``with atomic_folder(p) as tmp: <write files into tmp>``: the folder ``p`` (absent, or empty)
    appears with them, with the usual permissions, only when the block ends without an exception;
    the temporary folder beside it is removed otherwise."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else "."))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)  # over an empty folder too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
