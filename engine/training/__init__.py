"""Fine-tuning (issue 12): QLoRA / LoRA / full / KL-regularised SFT of a chat model on one
condition's dataset, with live metrics, checkpoints and resume. A sketch of the public interface;
nothing here runs yet, and the job kind ``train`` is not registered (engine/runs/kinds.py) until
it does.

What issue 12 fills, and how the rest of emtui will call it:

- :class:`TrainSpec`: one run, fully resolved: the study (by hash), the condition, the base model,
  the dataset (by content hash), the recipe (a preset from ``data/`` with the condition's
  overrides applied; its canonical JSON hashed into :attr:`TrainSpec.recipe_hash`) and the seed.
  It is the job's payload (``TrainSpec.from_payload`` / ``as_payload``), so a queued run can be
  read back, retried and resumed from the database alone.
- :func:`train`: runs one :class:`TrainSpec` and returns a :class:`TrainResult`. Usable from a
  notebook; reports through :class:`engine.runs.progress.Progress` (steps as the total, loss, lr,
  grad norm, tokens/s, KL terms as metrics) and looks at ``progress.cancelled()`` between steps.
  Writes ``train_runs`` / ``train_metrics`` / ``checkpoints`` and registers the adapter (or full
  model) as a model through the store; resumes from the newest complete checkpoint.
- :func:`train_job`: the handler of job kind ``train`` (``ctx.payload`` is a TrainSpec, the
  result :meth:`TrainResult.as_json`). Issue 12 adds one line to ``engine/runs/kinds.py``:
  ``"train": "engine.training:train_job"``, queued with ``gpu=1`` where a GPU exists.

torch, transformers, peft, trl and bitsandbytes are imported inside :func:`train` only (the
layering test holds every ``engine`` module to that), so importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from db.store import Store
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

ISSUE = "issue 12 (training)"


@dataclass(frozen=True)
class TrainSpec:
    """One training run, resolved: what is trained, on what, how, with which seed."""

    study_hash: str
    condition: str
    base_model: str                    # a hub id or a local folder
    dataset_hash: str                  # the dataset's content hash (datasets.content_hash)
    recipe: Mapping[str, Any]          # method (engine.study.study_file.METHODS), epochs, lr, ... (preset + overrides)
    seed: int
    resume_from: str | None = None     # an adapter to continue from (re-alignment), or a checkpoint folder

    @property
    def recipe_hash(self) -> str:
        raise NotImplementedError(f"{ISSUE}: the recipe's canonical hash")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TrainSpec:
        raise NotImplementedError(f"{ISSUE}: a train job's payload as a TrainSpec")

    def as_payload(self) -> dict[str, Any]:
        raise NotImplementedError(f"{ISSUE}: a TrainSpec as a train job's payload")


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: its row, the model it registered, its checkpoints, how the loss was masked."""

    train_run_id: int
    model_id: int                      # the adapter (or full model), registered with its provenance
    final_step: int
    checkpoints: tuple[str, ...] = ()  # checkpoint folders, oldest first
    masking: str = ""                  # which assistant-only loss path was used (recorded in provenance)
    metrics: Mapping[str, float] = field(default_factory=dict)  # the last logged values

    def as_json(self) -> dict[str, Any]:
        raise NotImplementedError(f"{ISSUE}: a TrainResult as a job's JSON result")


def train(spec: TrainSpec, *, store: Store, progress: Progress | None = None) -> TrainResult:
    """Fine-tune ``spec``'s base model on its dataset with its recipe (issue 12)."""
    raise NotImplementedError(f"{ISSUE}: train() is not written yet")


def train_job(ctx: JobContext) -> dict[str, Any]:
    """The handler of job kind ``train`` (registered by issue 12, not before)."""
    raise NotImplementedError(f"{ISSUE}: the train job kind is not written yet")
