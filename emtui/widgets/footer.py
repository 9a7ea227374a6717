"""Textual's Footer, rebuilt only when the keys it shows changed.

Textual's Footer recomposes — removes every key it shows and mounts new ones, each styled — on every
update of the screen's bindings: a focus change, a ``refresh_bindings``. One key that switches a Results
view or opens the answers publishes three or four of them, and each recompose cost the UI thread 10-13 ms
at 120 columns (30-50 ms a key, in the same stall as the table drawn for it), most of them mounting the
very keys already shown. Here a recompose that would show the same keys (the same bindings, enabled or
not, with the same key labels and tooltips) is skipped: what is on screen is what it would mount again.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.composed: tuple[Any, ...] | None = None  # what the keys shown were composed from (shows)
        self.recomposes = 0  # how many times the keys were rebuilt (for tests)

    def shows(self) -> tuple[Any, ...]:
        """Everything Textual's ``Footer.compose`` reads: equal, it composes the same keys."""
        app = self.app
        keys = tuple((key, binding, enabled, tooltip, app.get_key_display(binding))
                     for key, (_node, binding, enabled, tooltip) in self.screen.active_bindings.items())
        return (self._bindings_ready, self.show_command_palette, app.ENABLE_COMMAND_PALETTE,
                app.COMMAND_PALETTE_BINDING, keys)

    async def recompose(self) -> None:
        if not self.is_attached or self._pruning:
            return
        shows = self.shows()
        if shows == self.composed:
            return
        self.composed = shows
        self.recomposes += 1
        await super().recompose()
