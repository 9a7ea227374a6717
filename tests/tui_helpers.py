"""What several TUI tests share: which thread ran each database statement, and a cell's plain text."""

from __future__ import annotations

import threading

from rich.text import Text


class Statements:
    """Every statement a store's connection runs, with the thread that ran it (sqlite3's trace callback)."""

    def __init__(self, store) -> None:
        self.seen: list[tuple[int, str]] = []
        store.conn.set_trace_callback(lambda sql: self.seen.append((threading.get_ident(), sql)))

    def on(self, thread: int) -> list[str]:
        return [sql for t, sql in self.seen if t == thread]

    def off(self, thread: int) -> list[str]:
        return [sql for t, sql in self.seen if t != thread]


def plain(value) -> str:
    return value.plain if isinstance(value, Text) else str(value)
