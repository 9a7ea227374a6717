"""Train: fine-tuning runs, their progress and checkpoints."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from emtui.screens.base import AreaScreen
from emtui.widgets.paged_table import Col, PagedTable
from engine.hashing import short


class TrainScreen(AreaScreen):
    AREA = "train"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Vertical():
            yield PagedTable(
                [Col("id", "#", 4, justify="right"), Col("condition", "Condition", 14),
                 Col("base_model", "Base", 12), Col("dataset", "Dataset", 12), Col("status", "Status", 9),
                 Col("last_step", "Step", 6, justify="right"), Col("n_checkpoints", "Ckpts", 5, justify="right"),
                 Col("recipe_hash", "Recipe", 12, short), Col("started_at", "Started", 20)],
                self.store.list_train_runs, id="train-runs-table",
                empty="No training runs yet — the training engine queues them; emtui worker runs them")

    def on_mount(self) -> None:
        self.query_one("#train-runs-table").border_title = "Training runs"
