"""The row of areas under the header: which keys go where, the current area highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class AreaBar(Static):
    def __init__(self, areas: list[tuple[str, str, str]], current: str, **kwargs) -> None:
        """``areas``: (name, title, key) for each area, in order."""
        super().__init__(**kwargs)
        self.areas = areas
        self.current = current

    def on_mount(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, title, key in self.areas:
            current = name == self.current
            text.append(f" {key} ", style="bold reverse" if current else "bold yellow")
            text.append(f"{title} ", style="bold reverse" if current else "")
        text.append("  ? help", style="dim")
        self.update(text)
