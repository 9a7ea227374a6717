"""Python's full garbage collections, moved to moments nobody is typing.

A full collection scans every object the process holds, in whichever thread happens to allocate, with
the GIL held: on the TUI's 2-core development machine they took 50–260 ms and were the longest
stalls left once no database read ran on the UI thread (bench/tui_stall.py). So, while an app runs:

- what exists once it has mounted (modules, Textual, the app) is frozen out of the collector
  (``gc.freeze``): it lives as long as the app and need not be scanned again;
- the young generations are collected as usual (cheap), the full collection is not automatic: it
  runs every :data:`EVERY_S` seconds, once no key or mouse event came for :data:`IDLE_S` seconds.

When the app ends, the collector is as it was.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from textual import events

IDLE_S = 5.0
EVERY_S = 30.0
NEVER = 1_000_000_000  # the full collection's threshold: not automatic


class CollectsWhenIdle:
    """Mixed into a Textual App (before App in the bases)."""

    _gc_was: tuple[int, int, int] | None  # the collector's thresholds before the app started

    def on_mount(self) -> None:
        self._gc_start()

    def on_unmount(self) -> None:
        self._gc_stop()

    def _gc_start(self) -> None:
        self._gc_was = was = gc.get_threshold()
        self._gc_last_input = time.monotonic()
        gc.freeze()
        gc.set_threshold(was[0], was[1], NEVER)
        self.set_interval(EVERY_S, self._gc_when_idle)  # type: ignore[attr-defined]

    def _gc_when_idle(self) -> None:
        if time.monotonic() - self._gc_last_input >= IDLE_S:
            gc.collect()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self._gc_last_input = time.monotonic()
        await super().on_event(event)  # type: ignore[misc]

    def _gc_stop(self) -> None:
        was: Any = getattr(self, "_gc_was", None)
        if was is not None:
            gc.set_threshold(*was)
            gc.unfreeze()
            self._gc_was = None
