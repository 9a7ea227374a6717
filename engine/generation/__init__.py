"""Generation (issue 13): batched answers from the base model, every fine-tune and checkpoint,
reproducible per answer.

- :class:`GenerationSpec` (:mod:`.spec`): one evaluation run, a ``generate`` job's payload.
- :func:`queue_generation` (:mod:`.queueing`): checks a run and queues its job (``emtui generate``, the
  Eval queue screen).
- :func:`generate` (:mod:`.run`): writes the missing answers of a spec (:mod:`.plan` decides them) through
  the transformers backend (:mod:`.hf_backend`: each base loaded once, adapters switched with PEFT) or an
  OpenAI-compatible endpoint (:mod:`.openai_backend`, e.g. ``vllm serve``).
- :func:`answer_seed`, :class:`RowSampler`, :func:`sample` (:mod:`.sampling`): an answer's seed comes from
  its identity and each output row samples from its own generator, so any one answer can be made again
  alone; :func:`regenerate` (:mod:`.regenerate`) does (``emtui answers regenerate ID``).
- :func:`generate_job` (:mod:`.job`): the handler of job kind ``generate``.

torch and transformers are imported inside the functions only, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.generation.sampling import RowSampler, answer_seed, sample
from engine.generation.spec import Backend, GenerationResult, GenerationSpec

if TYPE_CHECKING:
    from engine.generation.queueing import QueuedGeneration
    from engine.generation.regenerate import Regenerated
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

__all__ = ["Backend", "GenerationResult", "GenerationSpec", "RowSampler", "answer_seed", "generate", "generate_job",
           "queue_generation", "regenerate", "sample"]


def generate(spec: GenerationSpec, *, store: Any, db_path: Any, progress: Progress | None = None,
             job_id: int | None = None) -> GenerationResult:
    from engine.generation.run import generate as run

    return run(spec, store=store, db_path=db_path, progress=progress, job_id=job_id)


def queue_generation(store: Any, **kwargs: Any) -> QueuedGeneration:
    from engine.generation.queueing import queue_generation as queue

    return queue(store, **kwargs)


def regenerate(store: Any, generation_id: int, *, db_path: Any, base_url: str | None = None) -> Regenerated:
    from engine.generation.regenerate import regenerate as again

    return again(store, generation_id, db_path=db_path, base_url=base_url)


def generate_job(ctx: JobContext) -> dict[str, Any]:
    from engine.generation.job import generate_job as handler

    return handler(ctx)
