"""Database reads off the UI thread.

A screen or widget never queries the store on Textual's event loop: a read at 1M scores takes
a quarter of a second, and every key and every redraw waits for it. Instead it asks
:meth:`Loads.load` — ``load(group, read, then)`` — which runs ``read()`` in a thread worker and
posts the result back as a :class:`DatabaseRead` message; ``then(value)`` runs on the UI thread
and only draws.

Loads of one ``group`` on one widget supersede each other: the older worker is cancelled
(Textual's exclusive worker group) and, should its result still arrive, it is dropped — each load
has a token and only the group's latest is taken. So a cursor run over a table, or a poll that
fires while the last one still reads, never shows stale data over new.

A database fault in a read (locked, read-only, the file gone) is said in one line, as on the UI
thread (:mod:`emtui.faults`); ``failed`` lets a screen say it its own way. Any other exception
is a bug and ends the app with its traceback, as it would have on the UI thread.

:func:`pending_loads` says which loads are still out — and which work a widget spreads over frames
(:func:`hold`: a long table taking its rows a chunk a frame): tests and ``bench/tui_stall.py`` wait for
a screen to be loaded with it.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

from textual.message import Message
from textual.worker import get_current_worker

_tokens = itertools.count(1)
_waiting: weakref.WeakSet[Any] = weakref.WeakSet()  # nodes with a load out


class DatabaseRead(Message, bubble=False):
    """A read's result (or its exception), posted from the worker to the node that asked."""

    def __init__(self, group: str, token: int, value: Any, error: BaseException | None) -> None:
        super().__init__()
        self.group = group
        self.token = token
        self.value = value
        self.error = error


class Loads:
    """Mixed into a Textual widget or screen (anything with ``run_worker`` and ``post_message``)."""

    def _loads(self) -> dict[str, tuple[int, Callable[[Any], None], Callable[[BaseException], bool] | None]]:
        loads = self.__dict__.get("_emtui_loads")
        if loads is None:
            loads = self.__dict__["_emtui_loads"] = {}
        return loads

    def load(self, group: str, read: Callable[[], Any], then: Callable[[Any], None], *,
             failed: Callable[[BaseException], bool] | None = None) -> None:
        """Run ``read()`` in a thread, then ``then(value)`` here; a newer load of ``group`` supersedes
        this one. ``read`` must not touch widgets: what it needs from the screen is read before.
        ``failed(exc)``: says a database fault its own way (True) instead of the notification."""
        token = next(_tokens)
        self._loads()[group] = (token, then, failed)
        _waiting.add(self)
        node: Any = self

        def work() -> None:
            try:
                value, error = read(), None
            except Exception as exc:  # noqa: BLE001 - handed to the UI thread, which says it or raises it
                value, error = None, exc
            if get_current_worker().is_cancelled:
                return
            try:
                node.post_message(DatabaseRead(group, token, value, error))
            except RuntimeError:  # the app closed meanwhile
                pass

        node.run_worker(work, name=f"read {group}", group=f"read:{group}", exclusive=True, thread=True,
                        exit_on_error=False)

    def reading(self, group: str | None = None) -> bool:
        """Whether a load (of ``group``, or any) is still out on this node."""
        loads = self.__dict__.get("_emtui_loads") or {}
        return bool(loads) if group is None else group in loads

    def forget_load(self, group: str) -> None:
        """Drop the load of ``group`` still out (its result is not taken, its worker is cancelled): what it
        asked no longer matters."""
        if self._loads().pop(group, None) is not None:
            self.app.workers.cancel_group(self, f"read:{group}")  # type: ignore[attr-defined]

    def on_database_read(self, message: DatabaseRead) -> None:
        message.stop()
        loads = self._loads()
        asked = loads.get(message.group)
        if asked is None or asked[0] != message.token:  # superseded: a newer load of the group is out
            return
        del loads[message.group]
        _, then, failed = asked
        if message.error is not None:
            error = message.error
            if failed is not None and failed(error):
                return
            if not self.app.say_fault(error):  # type: ignore[attr-defined]
                raise error
            return
        then(message.value)


def hold(node: Any, group: str) -> None:
    """Count ``group`` as a load still out on ``node`` (any widget) until :func:`release`: work the screen
    spreads over frames (a long table's rows) is loading too, for whoever waits until a screen has loaded."""
    loads = node.__dict__.setdefault("_emtui_loads", {})
    loads[group] = (0, None, None)
    _waiting.add(node)


def release(node: Any, group: str) -> None:
    loads = node.__dict__.get("_emtui_loads")
    if loads:
        loads.pop(group, None)


def pending_loads(app: Any) -> list[str]:
    """The loads still out in ``app`` (``node#id: group``), on nodes still in the DOM."""
    out = []
    for node in list(_waiting):
        loads = node.__dict__.get("_emtui_loads")
        if not loads:
            continue
        try:
            if node is not app and (node.app is not app or not node.is_attached):
                continue
        except Exception:  # noqa: BLE001, S112 - a node of an app that has ended: nothing of it is pending
            continue
        out += [f"{type(node).__name__}#{node.id}: {group}" for group in loads]
    return out
