"""One way to catch signals for a block of code: install a handler, put the old ones back after."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any


@contextlib.contextmanager
def handling(names: Iterable[str], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for each signal in ``names`` (those this platform has, e.g. ``"SIGHUP"``) while the
    block runs, then the handlers there were before. Off the main thread (where Python cannot set
    handlers) the block runs with the handlers as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [s for s in (getattr(signal, name, None) for name in names) if s is not None]
    before = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, old in before.items():
            signal.signal(s, old)
