"""What the Judges screen shows of each judge: its figures, live from a running ``judge`` job's metrics
when one runs, else the totals of every call it made (``judge_calls``); its state (judging, paused, idle);
its limits; the running panel's budget. Nothing here imports Textual or touches the database: the screen
reads the rows (in a thread) and hands them here.

A running panel reports every 0.5 s, in its job's ``metrics`` JSON, ``{"judges": {NAME: {done, failed,
retried, throttled, concurrency, in_flight, paused, calls_per_s, tokens, cost_usd, rpm, tpm}},
"spent_usd", "budget_usd"}`` (engine/judging/panel.py). That JSON comes from another process: every
figure is checked to be a number before it is shown, and names are untrusted text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from rich.text import Text

from emtui.train_view import fmt_rate as fmt_amount
from engine.common.text import one_line

JUDGE_KIND = "judge"
COUNTS = ("done", "failed", "retried", "throttled")
STATE_STYLE = {"judging": "cyan", "paused": "bold yellow", "pausing": "yellow", "resuming": "cyan",
               "idle": "dim", "import": "dim", "batch": "cyan"}


@dataclass
class PanelJob:
    """A running ``judge`` job as the screen needs it: its judges and what it last reported."""

    id: int
    judges: list[int]
    figures: dict[str, dict[str, Any]]   # judge name -> the figures it reported (empty before its first report)
    reported: bool                       # it has written metrics (before: no figures, its judges "judging")
    spent_usd: float | None
    budget_usd: float | None
    done: int
    total: int | None
    stale: bool                          # its lease ran out: its worker is gone
    study: str = ""


@dataclass
class JudgeRow:
    """One line of the judges table (a dict for the paged table: :meth:`as_row`)."""

    id: int
    name: str
    provider: str
    model: str
    paused: bool
    state: str
    job_id: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    max_concurrency: int | None = None
    batch: dict[str, Any] | None = None   # its latest Bedrock batch job (db: latest_judge_batches)

    def as_row(self) -> dict[str, Any]:
        f = self.figures
        return {"id": self.id, "name": self.name, "provider": self.provider, "model": self.model,
                "paused": self.paused, "state": self.state, "job_id": self.job_id, "batch": self.batch,
                "max_concurrency": self.max_concurrency, **{k: f.get(k) for k in FIGURE_KEYS}}


FIGURE_KEYS = (*COUNTS, "concurrency", "in_flight", "calls_per_s", "tokens", "cost_usd", "rpm", "tpm", "errors")


# -- reading what the panel reported ---------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite number from untrusted JSON (a bool is not one), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def count(value: Any) -> int | None:
    got = number(value)
    return None if got is None or got < 0 else int(got)


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def panel_job(job: dict[str, Any]) -> PanelJob:
    """A running judge job's row (``store.get_job``) as the screen reads it: a payload or metrics of
    another shape (an older job, another tool's) gives what can be read of it, never an error."""
    payload, metrics = _json_object(job.get("payload")), _json_object(job.get("metrics"))
    listed = payload.get("judges")
    judges = [j for j in listed if isinstance(j, int) and not isinstance(j, bool)] if isinstance(listed, list) else []
    reported = isinstance(metrics.get("judges"), dict)
    figures = {}
    for name, values in (metrics.get("judges") or {}).items() if reported else ():
        if isinstance(values, dict):
            figures[str(name)] = metrics_figures(values)
    budget = number(metrics.get("budget_usd")) if reported else number(payload.get("budget_usd"))
    total = job.get("progress_total")
    return PanelJob(id=int(job["id"]), judges=judges, figures=figures, reported=reported,
                    spent_usd=number(metrics.get("spent_usd")), budget_usd=budget,
                    done=int(job.get("progress_done") or 0), total=int(total) if total else None,
                    stale=bool(job.get("stale")), study=str(payload.get("study") or ""))


def metrics_figures(values: dict[str, Any]) -> dict[str, Any]:
    """One judge's figures as a running panel reported them (numbers only; ``paused`` a bool)."""
    out: dict[str, Any] = {k: count(values.get(k)) for k in (*COUNTS, "concurrency", "in_flight", "tokens")}
    out.update(calls_per_s=number(values.get("calls_per_s")), cost_usd=number(values.get("cost_usd")),
               rpm=number(values.get("rpm")), tpm=number(values.get("tpm")),
               paused=values.get("paused") is True)
    return out


def stats_figures(stats: dict[str, Any] | None) -> dict[str, Any]:
    """A judge's figures from its logged calls (``store.judge_call_stats``): ok calls done, calls that failed
    for good, attempts that were retried (throttled or retryable), throttled; tokens and cost; calls per
    second over the span from its first call to its last."""
    if not stats:
        return {}
    throttled, retryable = int(stats.get("throttled") or 0), int(stats.get("retryable") or 0)
    calls = int(stats.get("calls") or 0)
    first, last = number(stats.get("first_at")), number(stats.get("last_at"))
    span = (last - first) if first is not None and last is not None else 0.0
    return {"done": int(stats.get("ok") or 0), "failed": int(stats.get("failed") or 0),
            "retried": throttled + retryable, "throttled": throttled,
            "tokens": int(stats.get("input_tokens") or 0) + int(stats.get("output_tokens") or 0),
            "cost_usd": float(stats.get("cost_usd") or 0.0),
            "calls_per_s": calls / span if span > 0 else None, "errors": throttled + retryable
            + int(stats.get("failed") or 0)}


@lru_cache(maxsize=512)
def _limits(provider: str, model: str, params: str) -> tuple[float, float, int] | None:
    from engine.judging.limits import default_limits

    try:
        got = default_limits(provider, model, _json_object(params))
    except (TypeError, ValueError, OSError, KeyError):  # params that do not read as numbers: no limits shown
        return None
    return got.requests_per_minute, got.tokens_per_minute, got.max_concurrency


def limits_of(judge: dict[str, Any]) -> tuple[float, float, int] | None:
    """(requests/min, tokens/min, most concurrent calls) the panel keeps the judge under (its params, else
    the quota table in ``data/judge_limits.toml``); None for imported scores (never called)."""
    if judge.get("provider") == "import":
        return None
    return _limits(str(judge.get("provider")), str(judge.get("model")), str(judge.get("params") or "{}"))


def judge_row(judge: dict[str, Any], *, job: PanelJob | None, totals: dict[str, Any] | None,
              batch: dict[str, Any] | None = None) -> JudgeRow:
    """One judge's line (``judge``: its row, with ``paused``): figures from ``job``, the running panel it is in,
    when there is one (none before the panel's first report), else from ``totals``, every call it made;
    ``batch``: its latest Bedrock batch job (an open one makes an idle judge's state ``batch``)."""
    limits = limits_of(judge)
    name = str(judge.get("name") or "")
    row = JudgeRow(id=int(judge["id"]), name=name, provider=str(judge.get("provider") or ""),
                   model=str(judge.get("model") or ""), paused=bool(judge.get("paused")), state="idle",
                   max_concurrency=limits[2] if limits else None)
    if job is not None:
        row.job_id = job.id
        row.figures = dict(job.figures.get(name) or {})
    else:
        row.figures = stats_figures(totals)
    row.figures["errors"] = stats_figures(totals).get("errors")  # its failed attempts: whether its errors changed
    if limits is not None:
        row.figures["rpm"] = row.figures.get("rpm") or limits[0]
        row.figures["tpm"] = row.figures.get("tpm") or limits[1]
    row.state = state_of(row, job_paused=row.figures.get("paused") if job is not None and job.reported else None)
    row.batch = batch
    if batch is not None and not batch.get("ingested") and row.state == "idle":
        row.state = "batch"
    return row


def add_stats(held: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A judge's call totals with the calls logged since added (``store.judge_call_totals_after``)."""
    if not held:
        return dict(new)
    out = dict(held)
    for key in ("calls", "ok", "throttled", "retryable", "failed", "sent", "input_tokens", "output_tokens",
                "cost_usd"):
        out[key] = (held.get(key) or 0) + (new.get(key) or 0)
    firsts = [v for v in (held.get("first_at"), new.get("first_at")) if v is not None]
    lasts = [v for v in (held.get("last_at"), new.get("last_at")) if v is not None]
    out["first_at"], out["last_at"] = (min(firsts) if firsts else None), (max(lasts) if lasts else None)
    return out


def state_of(row: JudgeRow, *, job_paused: bool | None) -> str:
    """``paused`` (asked, and the panel holds it), ``pausing`` / ``resuming`` (asked; the running panel
    reads it within 2 s), ``judging`` (in a running panel), ``idle``; ``import`` for imported scores."""
    if row.provider == "import":
        return "import"
    if row.job_id is None:
        return "paused" if row.paused else "idle"
    if row.paused:
        return "pausing" if job_paused is False else "paused"
    return "resuming" if job_paused else "judging"


def judges_for(jobs: list[PanelJob]) -> dict[int, PanelJob]:
    """judge id -> the running panel it is in (the newest, when two run it)."""
    out: dict[int, PanelJob] = {}
    for job in sorted(jobs, key=lambda j: -j.id):
        for judge_id in job.judges:
            out.setdefault(judge_id, job)
    return out


# -- formatting -------------------------------------------------------------------------------------------


def fmt_usd(value: Any) -> str:
    """``$0.0123`` under a dollar, ``$12.34``, ``$1,234``; ``$0``, ``—``."""
    v = number(value)
    if v is None:
        return "—"
    if v == 0:
        return "$0"
    if abs(v) < 1:
        return f"${v:.4f}"
    if abs(v) < 1000:
        return f"${v:.2f}"
    return f"${v:,.0f}"


def fmt_budget(value: Any) -> str:
    """A budget and what is left of it, to the cent: ``$5.00``, ``$1,250.00``."""
    v = number(value)
    return "—" if v is None else f"${v:,.2f}"


def fmt_count(value: Any) -> str:
    v = count(value)
    return "—" if v is None else f"{v:,}"


def fmt_per_s(value: Any) -> str:
    v = number(value)
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def fmt_flight(row: dict[str, Any]) -> str:
    """``in flight/concurrency`` of a judge in a running panel (``6/8``), ``—`` otherwise."""
    flying, conc = count(row.get("in_flight")), count(row.get("concurrency"))
    if flying is None and conc is None:
        return "—"
    return f"{'—' if flying is None else flying}/{'—' if conc is None else conc}"


def fmt_at(value: Any) -> str:
    """A call's Unix time as ``HH:MM:SS`` (UTC) today, else its day, ``MM-DD`` (Enter shows the whole time)."""
    v = number(value)
    if v is None:
        return "—"
    try:
        at = datetime.fromtimestamp(v, UTC)
    except (OverflowError, OSError, ValueError):  # not a time this machine can show
        return "—"
    return at.strftime("%H:%M:%S") if at.date() == datetime.now(UTC).date() else at.strftime("%m-%d")


def state_text(row: dict[str, Any]) -> Text:
    state = str(row.get("state") or "")
    return Text(state, style=STATE_STYLE.get(state, ""))


def budget_line(jobs: list[PanelJob], spent_all: float) -> Text:
    """The first status line: the running panel (newest), what it has spent of its budget and what is
    left; or, with none running, that the figures are totals and what every call has cost."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not jobs:
        text.append("No judge job running", style="bold")
        text.append(f" · figures are totals of every call · spent {fmt_usd(spent_all)} in all", style="dim")
        return text
    job = max(jobs, key=lambda j: j.id)
    text.append(f"Judge job {job.id} ", style="bold")
    text.append("running", style="bold cyan")
    if job.stale:
        text.append(" (its worker is gone)", style="bold red")
    if job.spent_usd is not None:
        text.append(f" · spent {fmt_usd(job.spent_usd)}")
    if job.budget_usd is not None:
        text.append(f" of {fmt_budget(job.budget_usd)}")
        if job.spent_usd is not None:
            left = max(0.0, job.budget_usd - job.spent_usd)
            text.append(" · ")
            text.append(f"{fmt_budget(left)} left", style="bold red" if left <= 0.1 * job.budget_usd else "bold")
    else:
        text.append(" · no budget", style="dim")
    text.append(f" · {job.done:,}" + (f"/{job.total:,}" if job.total else "") + " calls")
    if len(jobs) > 1:
        text.append(f" · +{len(jobs) - 1} more running", style="dim")
    if job.study:
        text.append(" · ")
        text.append(one_line(job.study, 40))
    return text


def judge_lines(row: dict[str, Any] | None) -> Text:
    """The highlighted judge in two lines: its name, state, provider and model; then in flight and
    concurrency (of its most), its limits, its tokens and cost."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if row is None:
        text.append("No judge highlighted", style="dim")
        return text
    text.append(one_line(row.get("name"), 30), style="bold")
    text.append(" ")
    if row.get("provider") == "import":
        text.append("imported scores", style="dim")
        text.append(" · ")
        text.append(one_line(row.get("model"), 60))
        text.append("\nnever called: no figures, nothing to pause", style="dim")
        return text
    text.append_text(state_text(row))
    text.append(" · ")
    text.append(one_line(f"{row.get('provider')} {row.get('model')}", 60))
    text.append("\n")
    parts = []
    most = f"most {row['max_concurrency']}" if row.get("max_concurrency") else ""
    if row.get("job_id") is not None:
        parts.append(f"in flight {fmt_flight(row)}" + (f" ({most})" if most else ""))
    elif most:
        parts.append(f"concurrency at {most}")
    rpm, tpm = number(row.get("rpm")), number(row.get("tpm"))
    if rpm is not None:
        parts.append(f"{fmt_amount(rpm)} req/min")
    if tpm is not None:
        parts.append(f"{fmt_amount(tpm)} tok/min")
    parts.append(f"{fmt_amount(number(row.get('tokens')) or 0)} tokens")
    parts.append(fmt_usd(row.get("cost_usd") or 0.0))
    batch = row.get("batch")
    if isinstance(batch, dict):  # an open batch first (it is what the judge is doing), an ended one last
        if batch.get("ingested"):
            parts.append(f"last {batch_line(batch)}")
        else:
            parts.insert(0, batch_line(batch))
    text.append(" · ".join(parts))
    return text


def batch_line(batch: dict[str, Any]) -> str:
    """``batch job 1a2b3c4d5e6f: InProgress, 600 of 1,200`` (AWS's job id, the end of its ARN; its status as
    last polled; records processed of all)."""
    arn = batch.get("arn")
    name = f"batch job {one_line(str(arn).rsplit('/', 1)[-1], 20)}" if arn else "batch (being submitted)"
    status = one_line(batch.get("status"), 20)
    return f"{name}: {status}, {fmt_count(batch.get('processed'))} of {fmt_count(batch.get('records'))}"
