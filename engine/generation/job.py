"""The handler of job kind ``generate``: one evaluation run in the job's own process. A job that ran
before (its worker died, or it was retried) writes only the answers still missing."""

from __future__ import annotations

from typing import Any

from engine.runs.context import JobContext


def generate_job(ctx: JobContext) -> dict[str, Any]:
    from engine.generation.run import generate
    from engine.generation.spec import GenerationSpec

    spec = GenerationSpec.from_payload(ctx.payload)
    return generate(spec, store=ctx.store, db_path=ctx.db_path, progress=ctx.progress, job_id=ctx.job_id).as_json()
