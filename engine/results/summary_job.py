"""The handler of job kind ``summary``: the last stage of a study's chain (engine/runs/study_chain.py). It
builds the study's summary with the code ``emtui summary`` runs (engine/results/summary.py, its default
options) and stores it as the job's result, so ``emtui status`` and the screens read the summary as it was
when the chain ended, without building it again."""

from __future__ import annotations

import json
from typing import Any

from engine.runs.context import JobContext


def summary_job(ctx: JobContext) -> dict[str, Any]:
    from engine.results.report_format import to_json
    from engine.results.summary import SummaryOptions, build_summary

    study = str(ctx.payload["study"])
    report = build_summary(ctx.store, SummaryOptions(study=study), progress=ctx.progress)
    return {"study": study, "summary": json.loads(to_json(report))}  # NaN-free JSON, as emtui summary prints it
