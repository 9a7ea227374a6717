"""The handler of job kind ``summary``: the last stage of a study's chain (engine/runs/study_chain.py). It
builds the study's summary with the code ``emtui summary`` runs (engine/results/summary.py, its default
options) and stores it as the job's result, so ``emtui status`` and the screens read the summary as it was
when the chain ended, without building it again.

The result records the database's data version (:meth:`db.Store.data_version`) read before the summary was
built: while the version is still that one, nothing the summary reads has changed, and the stored summary is
the current one (:func:`current_summary`: what the Results screen shows at once). A write during the build
makes the recorded version old: the stored summary is then never taken for current."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.runs.context import JobContext


def summary_job(ctx: JobContext) -> dict[str, Any]:
    from engine.results.report_format import to_json
    from engine.results.summary import SummaryOptions, build_summary

    study = str(ctx.payload["study"])
    version = ctx.store.data_version()  # first: what is written while it builds makes the summary stale
    report = build_summary(ctx.store, SummaryOptions(study=study), progress=ctx.progress)
    return {"study": study, "data_version": version,
            "summary": json.loads(to_json(report))}  # NaN-free JSON, as emtui summary prints it


def stored_report(result: Any) -> dict[str, Any] | None:
    """The summary in a ``summary`` job's result (what :func:`summary_job` returns, read back), or None when the
    result is not of that shape."""
    report = result.get("summary") if isinstance(result, dict) else None
    return report if isinstance(report, dict) and isinstance(report.get("studies"), list) else None


@dataclass(frozen=True)
class StoredSummary:
    job_id: int
    finished_at: str           # when the job stored it (UTC, ISO 8601)
    version: dict[str, int]    # the data version it was built at (the database's now)
    report: dict[str, Any]     # the summary, as ``emtui summary --format json`` prints it


def current_summary(store: Any, study: str) -> StoredSummary | None:
    """The study's newest stored summary when nothing it reads has changed since it was built (the data
    version it recorded is the database's now), else None (none stored, or stale, or from before versions were
    recorded)."""
    found = store.find_study(study)
    if found is None:
        return None
    version = store.data_version()
    row = store.latest_summary_job(str(found["spec_hash"]))
    if row is None:
        return None
    try:
        result = json.loads(row["result"] or "{}")
    except ValueError:
        return None
    report = stored_report(result)
    if report is None or result.get("data_version") != version or result.get("study") != study:
        return None
    return StoredSummary(job_id=int(row["id"]), finished_at=str(row["finished_at"] or ""), version=version,
                         report=report)
