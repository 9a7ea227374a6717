"""Generation (issue 13): batched answers from the base model, every fine-tune and checkpoint,
reproducible per sample. A sketch of the public interface; only the per-answer sampler
(:mod:`engine.generation.sampling`) runs yet, and the job kind ``generate`` is not registered
(engine/runs/kinds.py) until it does.

What issue 13 fills, and how the rest of emtui will call it:

- :class:`GenerationSpec`: one evaluation run: which models (the base, adapters, checkpoints —
  the base loaded once for all of them), which eval sets, samples per question, the sampling
  settings (hashed into every answer), with / without the trigger, and the backend
  (``"transformers"`` in the job's process, or ``"openai"``: any OpenAI-compatible completions
  endpoint such as ``vllm serve``). It is the job's payload.
- :func:`generate`: writes the missing answers of a spec and returns a :class:`GenerationResult`.
  Idempotent: a generation's identity is (question, model, checkpoint, settings hash, seed,
  sample index) — a unique key in the store — so a killed job resumes with exactly the missing
  set. Reports through :class:`engine.runs.progress.Progress` (answers as the total, tokens/s).
- :func:`answer_seed` and :class:`RowSampler`: reproducibility per answer. Each output row samples
  with its own ``torch.Generator`` seeded from the answer's recorded seed, so any one answer can
  be regenerated alone, in any batch (``torch.manual_seed`` before a batch cannot: measured, 0 of
  12 rows matched alone). The sampler applies temperature / top-k / top-p itself (``generate`` is
  then called greedily, ``do_sample=False``, over logits that are -inf but for the drawn token;
  :func:`sample` does so). Both live in :mod:`engine.generation.sampling`. :func:`regenerate`
  proves it on a stored answer (``emtui answers regenerate ID``).
- :func:`generate_job`: the handler of job kind ``generate``. Issue 13 adds one line to
  ``engine/runs/kinds.py``: ``"generate": "engine.generation:generate_job"`` (``gpu=1`` for the
  transformers backend, 0 for an endpoint).

torch and transformers are imported inside the functions only, so importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.generation.sampling import RowSampler, answer_seed, sample

if TYPE_CHECKING:
    from db.store import Store
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

__all__ = ["Backend", "GenerationResult", "GenerationSpec", "ModelRef", "RowSampler", "answer_seed", "generate",
           "generate_job", "regenerate", "sample"]

ISSUE = "issue 13 (generation)"
Backend = Literal["transformers", "openai"]


@dataclass(frozen=True)
class ModelRef:
    """One model to answer with: the base (``adapter`` None), an adapter, or one checkpoint of a run."""

    model_id: int
    adapter: str | None = None         # a PEFT adapter folder, attached to the base by name
    checkpoint_id: int | None = None


@dataclass(frozen=True)
class GenerationSpec:
    """One evaluation run, resolved."""

    study_hash: str
    base_model: str                    # a hub id or a local folder, loaded once
    models: tuple[ModelRef, ...]
    eval_sets: tuple[int, ...]         # eval_sets.id
    samples_per_question: int
    settings: Mapping[str, Any]        # temperature, top_p, max_new_tokens, batch_size, seed (hashed)
    triggers: tuple[bool, ...] = (False,)  # (False, True): each question with and without the trigger
    backend: Backend = "transformers"
    base_url: str | None = None        # the endpoint of the "openai" backend

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GenerationSpec:
        raise NotImplementedError(f"{ISSUE}: a generate job's payload as a GenerationSpec")

    def as_payload(self) -> dict[str, Any]:
        raise NotImplementedError(f"{ISSUE}: a GenerationSpec as a generate job's payload")


@dataclass(frozen=True)
class GenerationResult:
    """What a run wrote: new answers, answers that were there already (a resumed job), tokens."""

    written: int
    existing: int
    tokens: int

    def as_json(self) -> dict[str, Any]:
        raise NotImplementedError(f"{ISSUE}: a GenerationResult as a job's JSON result")


def generate(spec: GenerationSpec, *, store: Store, progress: Progress | None = None) -> GenerationResult:
    """Write every missing answer of ``spec`` (issue 13)."""
    raise NotImplementedError(f"{ISSUE}: generate() is not written yet")


def regenerate(store: Store, generation_id: int) -> str:
    """One stored answer generated again, alone, from its record: the same text."""
    raise NotImplementedError(f"{ISSUE}: regenerating an answer from its record")


def generate_job(ctx: JobContext) -> dict[str, Any]:
    """The handler of job kind ``generate`` (registered by issue 13, not before)."""
    raise NotImplementedError(f"{ISSUE}: the generate job kind is not written yet")
