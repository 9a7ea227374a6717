"""Operational faults of the database while a TUI runs — locked by another process, read-only, a
full disk, the file deleted or replaced — said on screen in one line, and the app goes on.

Textual ends the app (with a traceback) at an exception a handler does not catch, and stops the
message loop of the widget it came from, so every path from a person's key or a screen's load to
the store passes through here: the apps' key actions (:class:`SaysFaults`, which both the
workbench and the rating room are) and the screens' other handlers (:func:`says_faults`). What
is not a database fault is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from db.errors import StoreError, database_fault
from engine.common.text import flat

F = TypeVar("F", bound=Callable[..., Any])


def fault_line(exc: BaseException, path: object) -> str | None:
    """The line a person reads for a database fault (naming the file), None for any other exception."""
    if isinstance(exc, StoreError):  # e.g. the file deleted or replaced under the app (db.Store.check_file)
        return flat(str(exc))
    line = database_fault(exc, path)
    return None if line is None else flat(line)


class SaysFaults:
    """Mixed into a Textual app with a ``store``: a database fault in any key's action is a notification."""

    store: Any

    async def run_action(self, action: Any, default_namespace: Any = None, namespaces: Any = None) -> bool:
        try:
            return await super().run_action(action, default_namespace, namespaces)  # type: ignore[misc]
        except Exception as exc:
            if not self.say_fault(exc):
                raise
            return True

    def say_fault(self, exc: BaseException) -> bool:
        """Notify ``exc`` when it is a database fault (True); False for anything else."""
        line = fault_line(exc, self.store.path)
        if line is None:
            return False
        self.notify(line, title="Database", severity="error", timeout=12, markup=False)  # type: ignore[attr-defined]
        return True


def says_faults(handler: F) -> F:
    """A screen's handler (not a key's action) whose database faults are said on screen."""

    @functools.wraps(handler)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(self, *args, **kwargs)
        except Exception as exc:
            if not self.app.say_fault(exc):
                raise
            return None

    return run  # type: ignore[return-value]
