"""What the Eval queue's evaluation-run form (:mod:`emtui.screens.eval_form`) offers, read from the database
in a thread, and what the person filled in turned into ``queue_generation``'s arguments — checked field by
field, so a bad value is said next to its field and nothing is queued. Nothing here imports Textual."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.generation.plan import ANSWERABLE, samples_for

# the generation settings the form asks for (each an engine.generation.settings.OVERRIDABLE key)
FORM_SETTINGS = ("temperature", "top_p", "max_new_tokens", "batch_size")
BACKENDS = ("transformers", "openai")


@dataclass(frozen=True)
class ConditionChoice:
    """A condition of the study as the form lists it. ``state``: ``model`` (it has weights to answer with),
    ``training`` (no model yet, its training queued or running: the run waits for ``train_job``),
    ``untrained`` (no model, no training queued) or ``imported`` (imported answers, no weights)."""

    id: int
    name: str
    state: str
    model: str | None = None
    train_job: int | None = None
    checkpoints: int = 0

    @property
    def answers(self) -> bool:
        return self.state in ("model", "training")


@dataclass
class StudyChoices:
    """What one study offers the form: read once per study picked."""

    study: str
    conditions: list[ConditionChoice]
    eval_sets: list[dict[str, Any]]            # id, name, n_questions, samples_per_question
    judges: list[dict[str, Any]]               # id, name, model
    settings: dict[str, Any]                   # the study's [generation], every key resolved
    questions: list[dict[str, Any]] = field(default_factory=list)  # eval_set_id and meta: the answer count

    @property
    def trigger(self) -> str | None:
        value = self.settings.get("trigger")
        return None if value is None or not str(value).strip() else str(value)


def form_studies(store: Any) -> list[str]:
    """The names of the studies that have an eval set: the ones a run can be queued for."""
    studies = store.list_studies(limit=100_000).rows
    return [str(s["name"]) for s in studies if store.study_eval_sets(int(s["id"]))]


def study_choices(store: Any, name: str) -> StudyChoices | None:
    """Everything the form shows of study ``name`` (None when it is gone)."""
    from engine.generation.settings import resolve_settings

    found = store.find_study(name)
    if found is None:
        return None
    study_id = int(found["id"])
    spec = json.loads(found.get("spec_json") or "{}")
    try:
        settings = resolve_settings(spec.get("generation") or {}, int(spec.get("seed") or 0))
    except ValueError:  # a study file of another emtui version: what the engine will say when queueing
        settings = resolve_settings({}, 0)
    rows = store.study_conditions(study_id)
    waits = store.active_train_jobs([int(c["id"]) for c in rows if c.get("model_id") is None])
    conditions = []
    for c in rows:
        cid = int(c["id"])
        if c.get("model_id") is not None:
            state = "model" if c.get("model_kind") in ANSWERABLE else "imported"
        else:
            state = "training" if cid in waits else "untrained"
        saved = len(store.condition_checkpoints(cid)) if c.get("dataset_id") is not None else 0
        conditions.append(ConditionChoice(cid, str(c["name"]), state, c.get("model"), waits.get(cid), saved))
    sets = store.study_eval_sets(study_id)
    judges = [{"id": int(j["id"]), "name": str(j["name"]), "model": str(j.get("model") or "")}
              for j in store.study_judges(study_id)]
    questions = [{"eval_set_id": q["eval_set_id"], "meta": q["meta"]}
                 for q in store.questions_of_sets([int(e["id"]) for e in sets])]
    return StudyChoices(str(found["name"]), conditions, sets, judges, settings, questions)


def answers_per_model(choices: StudyChoices, eval_set_ids: Sequence[int], samples: int | None,
                      trigger: bool) -> int:
    """Answers each model makes: every wording of the chosen sets times its samples (the question's own, else
    the study's for its set, else ``samples``), times the variants — as ``queue_generation`` counts them."""
    chosen = {int(e) for e in eval_set_ids}
    set_samples = {int(e["id"]): int(e["samples_per_question"]) for e in choices.eval_sets}
    per_model = sum(samples_for(q, set_samples.get(int(q["eval_set_id"]), 1), samples)
                    for q in choices.questions if int(q["eval_set_id"]) in chosen)
    return per_model * (2 if trigger else 1)


def setting_text(value: Any) -> str:
    """A setting as its input field shows it: what ``--set key=TEXT`` reads back as the same value and type
    (``1.0`` stays a float: an answer's settings hash tells 1 from 1.0)."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def parse_settings(texts: Mapping[str, str], study: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's setting fields read as ``emtui generate --set key=TEXT`` reads them: (overrides, errors by
    key). An empty field is the study's setting (automatic batch size when the study sets none)."""
    from engine.generation.settings import SettingsError, parse_setting

    overrides: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, text in texts.items():
        text = text.strip()
        if not text:
            continue
        try:
            _, value = parse_setting(f"{key}={text}")
        except SettingsError as exc:
            errors[key] = str(exc)
            continue
        if value != study.get(key) or type(value) is not type(study.get(key)):
            overrides[key] = value
    return overrides, errors


def parse_samples(text: str) -> tuple[int | None, str | None]:
    """Samples per question: (None: each question's own / the study's, or the count; an error)."""
    text = text.strip()
    if not text:
        return None, None
    try:
        value = int(text)
    except ValueError:
        return None, f"samples per question must be a positive whole number, not {text!r}"
    if not 0 < value <= 1_000_000:
        return None, f"samples per question must be from 1 to 1000000, not {value}"
    return value, None


def model_names(text: str) -> list[str]:
    """Extra models by name, comma-separated (``emtui list models`` names them)."""
    return [n.strip() for n in text.split(",") if n.strip()]
