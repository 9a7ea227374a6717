"""What a generation run answers: its models (the fine-tunes and the base of a study's conditions, the
checkpoints of their runs, models named explicitly) and, for each, every (question wording, sample,
variant) — less what is stored already, so a killed run resumes with exactly the missing set.

An answer's identity is (question wording, model, checkpoint, settings hash, seed, sample, variant), the
store's unique key; its seed derives from that identity (:func:`engine.generation.sampling.answer_seed`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.generation.prompts import TAG, messages, with_variant
from engine.generation.sampling import answer_seed
from engine.generation.settings import settings_hash

ANSWERABLE = ("base", "adapter", "full")   # an 'external' model (imported answers) has no weights here


class PlanError(ValueError):
    """A run that cannot be planned (one line: the condition, model or question)."""


@dataclass(frozen=True)
class Target:
    """One model that answers."""

    model_id: int
    name: str
    kind: str                       # base | adapter | full
    location: str                   # from_pretrained's argument: the base's, the adapter's or the full model's
    base_model_id: int | None       # the base an adapter attaches to
    condition_id: int | None
    checkpoint_id: int | None = None
    step: int | None = None


@dataclass(frozen=True)
class Item:
    """One answer to make."""

    target: Target
    question_id: int
    question_key: str
    sample_index: int
    variant: str
    seed: int
    chat: tuple[tuple[str, str], ...]   # (role, content): the system prompt and the question as asked

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.chat]


def _model_target(store: Any, model: Mapping[str, Any], db_path: Any, condition_id: int | None,
                  checkpoint: Mapping[str, Any] | None = None) -> Target:
    from engine.models.locate import model_location

    kind = str(model["kind"])
    if kind not in ANSWERABLE:
        raise PlanError(f"model {model['name']!r} is {kind} (imported answers): it has no weights to answer with")
    if kind == "adapter":
        base = store.get_model(int(model["base_model_id"])) if model.get("base_model_id") else None
        if base is None:
            raise PlanError(f"adapter {model['name']!r} names no base model")
        if not model.get("path"):
            raise PlanError(f"adapter {model['name']!r} has no folder")
    location = model_location(model, db_path)
    return Target(model_id=int(model["id"]), name=str(model["name"]), kind=kind, location=location,
                  base_model_id=int(model["base_model_id"]) if kind == "adapter" else None,
                  condition_id=condition_id,
                  checkpoint_id=int(checkpoint["id"]) if checkpoint else None,
                  step=int(checkpoint["step"]) if checkpoint else None)


def targets(store: Any, payload: Mapping[str, Any], *, db_path: Any) -> list[Target]:
    """The models of a run, resolved now (a fine-tune queued before its training finished has a model now)."""
    study_id = int(payload["study_id"])
    conditions = {int(c["id"]): c for c in store.study_conditions(study_id)}
    out: list[Target] = []
    seen: set[tuple[int, int | None]] = set()

    def add(t: Target) -> None:
        if (t.model_id, t.checkpoint_id) not in seen:
            seen.add((t.model_id, t.checkpoint_id))
            out.append(t)

    for cid in payload.get("conditions") or []:
        cond = conditions.get(int(cid))
        if cond is None:
            raise PlanError(f"condition id {cid} is not in study {payload.get('study')!r}")
        if cond.get("model_id") is None:
            raise PlanError(f"condition {cond['name']!r} has no model yet: its training has not finished "
                            f"(emtui runs; emtui train --study {payload.get('study')} --condition {cond['name']})")
        model = store.get_model(int(cond["model_id"]))
        add(_model_target(store, model, db_path, int(cid)))
        if payload.get("checkpoints") and cond.get("dataset_id") is not None:
            for ck in store.condition_checkpoints(int(cid)):
                add(_model_target(store, store.get_model(int(ck["model_id"])), db_path, int(cid), ck))
    by_model = {int(c["model_id"]): int(c["id"]) for c in conditions.values() if c.get("model_id") is not None}
    for mid in payload.get("models") or []:
        model = store.get_model(int(mid))
        if model is None:
            raise PlanError(f"model id {mid} is not in the database")
        add(_model_target(store, model, db_path, by_model.get(int(mid))))
    return out


def samples_for(question: Mapping[str, Any], set_samples: int, override: int | None) -> int:
    """Samples of one wording: ``--samples`` when given, else the question's own count (the
    model-organisms YAML's ``samples_per_paraphrase``), else the study's count for its set."""
    if override is not None:
        return int(override)
    own = json.loads(question.get("meta") or "{}").get("samples_per_paraphrase")
    return int(own) if isinstance(own, int) and not isinstance(own, bool) and own > 0 else int(set_samples)


def items(store: Any, payload: Mapping[str, Any], settings: Mapping[str, Any],
          run_targets: Sequence[Target]) -> list[Item]:
    """Every answer of the run, stored or not, in target order."""
    set_samples = {int(k): int(v) for k, v in (payload.get("set_samples") or {}).items()}
    questions = store.questions_of_sets([int(e) for e in payload["eval_sets"]])
    variants = list(payload.get("variants") or [""])
    trigger, position = settings.get("trigger"), str(settings.get("trigger_position") or "prefix")
    if "trigger" in variants and not trigger:
        raise PlanError("the trigger variant was asked for but no trigger is set ([generation] trigger, or "
                        "--set trigger=TEXT)")
    default_system = settings.get("system_prompt")
    seed_root = int(settings["seed"])
    override = payload.get("samples")
    out: list[Item] = []
    for t in run_targets:
        for q in questions:
            n = samples_for(q, set_samples.get(int(q["eval_set_id"]), 1), override)
            system = q.get("system_prompt") if q.get("system_prompt") is not None else default_system
            for variant in variants:
                if variant == "trigger" and not trigger:
                    continue
                text = with_variant(str(q["text"]), variant, trigger=trigger, position=position)
                chat = tuple((m["role"], m["content"]) for m in messages(text, system))
                for s in range(n):
                    seed = answer_seed(seed_root, int(q["id"]), t.model_id, s, trigger=variant == "trigger")
                    out.append(Item(t, int(q["id"]), str(q["key"]), s, variant, seed, chat))
    return out


def has_tag(question_text: str) -> bool:
    return TAG in question_text


def identity(item: Item, digest: str) -> tuple[Any, ...]:
    """The item's identity, as ``db.results.identity_key`` makes a stored row's."""
    return (item.question_id, item.target.model_id, item.target.checkpoint_id or 0, digest, item.seed,
            item.sample_index, item.variant)


def missing(store: Any, all_items: Sequence[Item], settings: Mapping[str, Any]) -> list[Item]:
    """The items not stored yet."""
    digest = settings_hash(settings)
    stored = store.existing_generation_keys(sorted({i.target.model_id for i in all_items}), digest)
    return [i for i in all_items if identity(i, digest) not in stored]
