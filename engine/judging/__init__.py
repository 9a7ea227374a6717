"""Judging (issue 14): a panel of LLM judges — AWS Bedrock, any OpenAI-compatible endpoint, a local causal
LM — scoring a study's answers with content-hashed rubrics.

- :mod:`.backend`: one call to a judge model (:class:`Call`, :class:`Reply`), the two ways it fails
  (:class:`Throttled`, :class:`CallFailed`) and the :class:`Backend` protocol: a blocking single attempt.
  :mod:`.backends` makes a judge row's backend: :mod:`.bedrock` (boto3's Converse API),
  :mod:`.openai_judge` (an OpenAI-compatible chat endpoint, logprobs where it gives them),
  :mod:`.local_judge` (transformers).
- :mod:`.panel`: :func:`judge_panel` runs a :class:`PanelSpec`: every judge at once, each with its own
  :class:`~engine.judging.limits.JudgeLimiter` (requests and tokens per minute, an adaptive concurrency),
  retried by us with every attempt logged and costed (:mod:`.prices`), results written one metric at a time,
  idempotently, a budget honoured.
- :mod:`.rubric_prompts` (a rubric's calls and prompts), :mod:`.parse` (a reply's scores; never −1),
  :mod:`.logprob` (the EM paper's score from a next-token distribution), :mod:`.number_tree` (a local
  judge's P(n) for every n of a scale when its tokenizer writes numbers digit by digit).
- :func:`queue_judging` (:mod:`.queueing`): ``emtui judge``; :func:`judge_job` (:mod:`.job`): job kind ``judge``.

boto3, torch and transformers are imported inside the functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.judging.backend import Backend, Call, CallFailed, Reply, Throttled
from engine.judging.panel import PanelSpec

if TYPE_CHECKING:
    from engine.judging.queueing import QueuedJudging
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

__all__ = ["Backend", "Call", "CallFailed", "PanelSpec", "Reply", "Throttled", "judge_job", "judge_panel",
           "make_backend", "queue_judging"]


def make_backend(provider: str, params: Any) -> Backend:
    from engine.judging.backends import make_backend as make

    return make(provider, params)


async def judge_panel(spec: PanelSpec, *, store: Any, progress: Progress | None = None,
                      job_id: int | None = None) -> dict[str, Any]:
    from engine.judging.panel import judge_panel as run

    return await run(spec, store=store, progress=progress, job_id=job_id)


def queue_judging(store: Any, **kwargs: Any) -> QueuedJudging:
    from engine.judging.queueing import queue_judging as queue

    return queue(store, **kwargs)


async def judge_job(ctx: JobContext) -> dict[str, Any]:
    from engine.judging.job import judge_job as handler

    return await handler(ctx)
