"""Help (``?``): every key binding in effect — the keymap file's remappings included — with its id."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


def home_short(path: Path) -> str:
    """``/home/me/.config/emtui/keymap.toml`` -> ``~/.config/emtui/keymap.toml`` (fits 80 columns)."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except (ValueError, RuntimeError):  # elsewhere, or no home
        return str(path)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help.close"),
        Binding("question_mark", "dismiss", "Close", show=False, id="help.close-alt"),
    ]

    def compose(self) -> ComposeResult:
        from emtui.bindings import all_bindings, key_label, keymap_path

        keymap = getattr(self.app, "keymap", {})
        settings = getattr(self.app, "settings", None)
        path = settings.keymap_file() if settings is not None else keymap_path()
        with Vertical(id="help-box"):
            yield Static(Text(f"Keys — remap any id in {home_short(path)}  (Esc closes)", style="bold"))
            table: DataTable[Text] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("Where", "Key", "What", "Id")
            for area, binding_id, key, description in all_bindings():
                shown = keymap.get(binding_id, key)
                table.add_row(Text(area), Text(key_label(shown)), Text(description), Text(binding_id, style="dim"))
            yield table
