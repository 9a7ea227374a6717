"""The handler of job kind ``judge``: one panel run, in the job's own process (no GPU). A job run again
(its worker died, or it was retried) sends only the calls that have no result yet."""

from __future__ import annotations

from typing import Any

from engine.runs.context import JobContext


async def judge_job(ctx: JobContext) -> dict[str, Any]:
    from engine.judging.panel import PanelSpec, judge_panel

    spec = PanelSpec.from_payload(ctx.payload)
    return await judge_panel(spec, store=ctx.store, progress=ctx.progress, job_id=ctx.job_id)
