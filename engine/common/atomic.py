"""Files written whole or not at all: a temporary file beside the target, renamed over it
when complete, removed when anything fails. Readers never see half a file."""

from __future__ import annotations

import errno
import os
import shutil
import signal
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
    tmp = None
    try:
        with _signals_held():  # a SIGTERM turned into an exception always finds the name to remove
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_folder(path))
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            if tmp is not None:
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
    tmp = None
    try:
        with _signals_held():
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_folder(path)))
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)  # over an empty folder too
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _folder(path: Path) -> str | Path:
    return path.parent if str(path.parent) else "."


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM, SIGHUP and SIGINT while a temporary file is made and its name is kept: the
    command line turns them into exceptions (emtui.streams), which must find the name to remove."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None), signal.SIGINT) if s}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
