"""What the Train screen and ``emtui runs`` show of a fine-tuning run: its step, last metrics, ETA,
and the points of its curves kept between polls (a poll reads only the steps after the last one seen).

Plain functions and one small cache: no widgets, no database (the screen reads in threads and hands
the rows here)."""

from __future__ import annotations

import math
from typing import Any

from emtui.job_view import fmt_duration

# the charts, in the order ``m`` cycles them; KL only where the run logged it
CHART_METRICS = ("loss", "learning_rate", "grad_norm", "kl", "tokens_per_s")
CHART_TITLES = {"loss": "Loss", "learning_rate": "Learning rate", "grad_norm": "Grad norm", "kl": "KL",
                "tokens_per_s": "Trained tokens/s"}


def fmt_value(value: Any) -> str:
    """A metric as a person reads it: four significant digits (``1.234``, ``2e-05``), ``—`` when absent."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def fmt_rate(value: Any) -> str:
    """Tokens per second: ``950``, ``12.3k``, ``1.2M``."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:,.0f}"


def step_text(step: Any, max_steps: Any) -> str:
    """``450/1000``; ``450`` before the run knows its length; ``—`` before its first logged step."""
    if step is None:
        return "—" if not max_steps else f"0/{int(max_steps)}"
    return f"{int(step)}/{int(max_steps)}" if max_steps else str(int(step))


def run_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``train_runs_overview`` with its display fields: ``step`` (``450/1000``), ``loss``,
    ``tokens`` (tokens/s) and ``eta`` (only while it runs)."""
    metrics = row.get("metrics") or {}
    out = dict(row)
    out["step"] = step_text(row.get("last_step"), row.get("max_steps"))
    out["loss"] = fmt_value(metrics.get("loss")) if "loss" in metrics else None
    out["tokens"] = fmt_rate(metrics.get("tokens_per_s")) if "tokens_per_s" in metrics else None
    eta = metrics.get("eta_s")
    out["eta"] = fmt_duration(eta) if row.get("status") == "running" and eta is not None else None
    return out


def chart_metrics(names: set[str]) -> list[str]:
    """The charts a run has: loss, learning rate and grad norm always; KL where it was logged; tokens/s."""
    return [m for m in CHART_METRICS if m != "kl" or "kl" in names]


Points = list[tuple[int, float]]


class SeriesCache:
    """Each shown run's curves, read a poll at a time: :meth:`after` says from which step a poll reads
    (the last step seen is read again: a step whose metrics came in two writes is completed), and
    :meth:`merge` puts what it read in place of what the cache held from the first step read on
    (a resumed run logs those steps again: upserted in the database, replaced here)."""

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Points]] = {}

    def after(self, run_id: int) -> int:
        """``after_step`` for the next read of ``run_id``: -1 (everything) for a run not read yet."""
        series = self.runs.get(run_id)
        if series is None:
            return -1
        last = max((pts[-1][0] for pts in series.values() if pts), default=0)
        return last - 1

    def merge(self, run_id: int, new: dict[str, Points]) -> None:
        series = self.runs.setdefault(run_id, {})
        for name, points in new.items():
            if not points:
                continue
            old = series.get(name, [])
            first = points[0][0]
            keep = len(old)
            while keep and old[keep - 1][0] >= first:  # the steps read again: the new values replace them
                keep -= 1
            series[name] = old[:keep] + list(points)

    def keep_only(self, run_ids: set[int]) -> None:
        """Forget the runs no longer shown (read whole again if they are)."""
        for run_id in [r for r in self.runs if r not in run_ids]:
            del self.runs[run_id]

    def get(self, run_id: int) -> dict[str, Points]:
        return self.runs.get(run_id, {})
