"""Judging (issue 14): an async panel of LLM judges — AWS Bedrock, any OpenAI-compatible endpoint,
a local causal LM — scoring answers with content-hashed rubrics. A sketch of the public interface;
nothing here runs yet but :mod:`engine.judging.logprob`, and the job kind ``judge`` is not
registered (engine/runs/kinds.py) until it does.

What exists: :func:`engine.judging.logprob.score_from_logprobs`, the EM paper's score from a
judge's next-token distribution (the ``betley-csv`` importer uses it; the OpenAI-compatible and
local judges will).

What issue 14 fills, and how the rest of emtui will call it:

- :class:`JudgeBackend`: one way to reach a model — ``bedrock`` (boto3's Converse API, run in a
  dedicated thread pool, retried by us with every attempt counted), ``openai`` (any
  OpenAI-compatible endpoint, logprobs where it gives them), ``local`` (transformers). One call,
  one :class:`JudgeReply` with the raw text, logprobs, tokens and attempts.
- :class:`Judge`: a model of the panel behind a backend, with its own limiter (requests and tokens
  per minute, an adaptive concurrency) and its rubric parsing (a number, CODE / REFUSAL, JSON;
  on failure the raw output and the error are kept, never a −1).
- :func:`judge_panel`: judges every answer of a :class:`PanelSpec` not judged yet, by every judge
  at once (the slowest never stalls the others), idempotently: a judgment's identity is (answer,
  judge, rubric hash), so a resumed job sends nothing twice that was answered. Stops cleanly at
  the budget. Reports through :class:`engine.runs.progress.Progress` (judgments as the total,
  cost and throttling as metrics) and writes through the store off the event loop.
- :func:`judge_job`: the ``async`` handler of job kind ``judge`` (no GPU). Issue 14 adds one line
  to ``engine/runs/kinds.py``: ``"judge": "engine.judging:judge_job"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from db.store import Store
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

ISSUE = "issue 14 (judging)"
Provider = Literal["bedrock", "openai", "local"]  # the study file's judge providers (study_file.PROVIDERS)


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call: a rubric's prompt filled with one answer."""

    generation_id: int
    metric: str
    prompt: str
    max_tokens: int
    logprobs: bool = False


@dataclass(frozen=True)
class JudgeReply:
    """What came back, verbatim, and what it cost; ``score`` None when there is none (kept as missing)."""

    raw: str
    score: float | None
    error: str | None = None
    logprobs: Mapping[str, float] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 1                  # calls sent (each is paid), retries included


class JudgeBackend(Protocol):
    """A transport to judge models: Bedrock, an OpenAI-compatible endpoint, or a local model."""

    provider: Provider

    async def call(self, model: str, request: JudgeRequest) -> JudgeReply: ...


class Judge(Protocol):
    """One judge of a panel: a model behind a backend, with its limits and its rubric parsing."""

    name: str
    model: str
    backend: JudgeBackend

    async def judge(self, request: JudgeRequest) -> JudgeReply: ...


@dataclass(frozen=True)
class PanelSpec:
    """What a judge job does: which answers (a study's, not judged yet), which judges, which rubric."""

    study_hash: str
    judges: tuple[int, ...]            # judges.id
    rubric_hash: str
    budget_usd: float | None = None
    generation_ids: tuple[int, ...] | None = None  # None: every answer of the study not judged yet
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PanelSpec:
        raise NotImplementedError(f"{ISSUE}: a judge job's payload as a PanelSpec")


def make_backend(provider: Provider, params: Mapping[str, Any]) -> JudgeBackend:
    """The backend of a judge row's provider, with its params (region, base_url, ...)."""
    raise NotImplementedError(f"{ISSUE}: the {provider} backend")


async def judge_panel(spec: PanelSpec, *, store: Store, progress: Progress | None = None) -> dict[str, Any]:
    """Judge every answer of ``spec`` by every judge of its panel (issue 14); counts per judge."""
    raise NotImplementedError(f"{ISSUE}: judge_panel() is not written yet")


async def judge_job(ctx: JobContext) -> dict[str, Any]:
    """The handler of job kind ``judge`` (registered by issue 14, not before)."""
    raise NotImplementedError(f"{ISSUE}: the judge job kind is not written yet")
