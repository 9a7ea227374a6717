"""Train: fine-tuning runs, their progress and checkpoints."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from emtui.screens.base import AreaScreen, minute
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.hashing import short


class TrainScreen(AreaScreen):
    AREA = "train"
    BINDINGS = []

    def body(self) -> ComposeResult:
        cols = [Col("id", "#", 4, justify="right"), Col("condition", "Condition", 14),
                Col("base_model", "Base", 12), Col("dataset", "Dataset", 12), Col("status", "Status", 9),
                Col("last_step", "Step", 6, justify="right"), Col("n_checkpoints", "Ckpts", 5, justify="right")]
        if (self.app.size.width or 80) >= 110:  # 80 columns hold the run's progress; wider ones the rest
            cols += [Col("recipe_hash", "Recipe", 12, short),
                     Col("started_at", "Started (UTC)", 16, minute)]
        with Vertical():
            yield PagedTable(
                cols, self.store.list_train_runs, id="train-runs-table",
                empty="No training runs yet — queued by the training engine, run by emtui worker")

    def on_mount(self) -> None:
        self.query_one("#train-runs-table").border_title = "Training runs"
