"""The Train screen's two lists over it: what to queue (a study, or one of its conditions) and a run's
checkpoints (Enter copies a checkpoint's path and shows it).

Both get their rows already read (the Train screen reads in a thread); names and paths come from the
database: shown as plain Text, control sequences stripped, never markup."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from engine.common.text import one_line, strip_control

# what the queue picker returns: (study, condition or None for every trained condition of the study)
Choice = tuple[str, str | None]


def queue_choices(studies: list[dict[str, Any]], conditions: dict[int, list[dict[str, Any]]]) -> list[Choice]:
    """Each study with a trained condition (one with a dataset), then each such condition of it."""
    out: list[Choice] = []
    for study in studies:
        trained = [c for c in conditions.get(int(study["id"]), []) if c.get("dataset")]
        if not trained:
            continue
        out.append((str(study["name"]), None))
        out += [(str(study["name"]), str(c["name"])) for c in trained]
    return out


class QueuePicker(ModalScreen[Choice | None]):
    """Pick a study (every trained condition) or one condition; Enter queues, Esc closes."""

    BINDINGS = [Binding("escape", "close", "Close", id="train.pick-close")]

    def __init__(self, choices: list[Choice]) -> None:
        super().__init__()
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="train-pick-box", classes="train-modal"):
            yield Static(Text("Enter queues the highlighted line · Esc closes"), classes="train-hint")
            options = []
            for i, (study, condition) in enumerate(self.choices):
                label = Text(one_line(study, 40), style="bold")
                if condition is None:
                    label.append("  every trained condition", style="dim")
                else:
                    label = Text("   └ ") + Text(one_line(condition, 50))
                options.append(Option(label, id=str(i)))
            yield OptionList(*options, id="train-pick-list")

    def on_mount(self) -> None:
        self.query_one("#train-pick-box").border_title = "Queue training"

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[int(event.option.id or 0)])

    def action_close(self) -> None:
        self.dismiss(None)


class CheckpointList(ModalScreen[None]):
    """A run's checkpoints: step and path; Enter copies the highlighted path (and shows it)."""

    BINDINGS = [Binding("escape", "close", "Close", id="train.checkpoints-close")]

    def __init__(self, title: str, checkpoints: list[dict[str, Any]]) -> None:
        super().__init__()
        self.heading = title
        self.checkpoints = checkpoints

    def compose(self) -> ComposeResult:
        with Vertical(id="train-ckpt-box", classes="train-modal"):
            yield Static(Text("Enter copies the path (and shows it), Esc closes"), classes="train-hint")
            yield DataTable(id="train-ckpt-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        box = self.query_one("#train-ckpt-box")
        box.border_title = Text(one_line(self.heading, 60))
        table = self.query_one("#train-ckpt-table", DataTable)
        table.add_column("Step", key="step", width=8)
        table.add_column("Path", key="path")
        for i, ck in enumerate(self.checkpoints):
            table.add_row(Text(f"{ck['step']:,}", justify="right"), Text(one_line(ck["path"], 200)), key=str(i))
        if not self.checkpoints:
            box.border_subtitle = "no checkpoint saved yet"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if not self.checkpoints:
            return
        path = strip_control(str(self.checkpoints[event.cursor_row]["path"]))
        self.app.copy_to_clipboard(path)  # OSC 52: the terminal's clipboard, over SSH too
        self.notify(f"Copied: {path}", title="Checkpoint path", timeout=10, markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
