"""The question before a study's chain is queued from the Studies screen: what would be queued (a dry run of
engine/runs/study_chain.py, read before), and y to queue it, n or Esc not to."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.common.text import strip_control


class ConfirmRun(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmRun { align: center middle; }
    #confirm-run-box { width: 90%; max-width: 100; height: auto; max-height: 90%; border: round $accent;
                       padding: 0 1; background: $surface; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Queue it", id="confirm-run.yes"),
        Binding("n", "answer(False)", "Not now", id="confirm-run.no"),
        Binding("escape", "answer(False)", "Not now", show=False, id="confirm-run.close"),
    ]

    def __init__(self, title: str, plan_lines: list[str]) -> None:
        super().__init__()
        self.title_line = title
        self.plan_lines = plan_lines

    def compose(self) -> ComposeResult:
        text = Text(strip_control(self.title_line), style="bold")
        for line in self.plan_lines:
            text.append("\n" + strip_control(line))  # names come from study files: never markup
        text.append("\n\ny: queue it (a worker starts in the background if none is alive) · n / Esc: not now",
                    style="dim")
        with Vertical(id="confirm-run-box"):
            yield Static(text, id="confirm-run-text")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
