"""Synthetic judged studies with known structure, for tests and benchmarks.

Each condition has a true per-answer misalignment level; each judge scores with its own
noise, and a fraction of scores is missing. Everything is written through the store's
ordinary methods (the same paths importers use), in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.hashing import json_hash


@dataclass
class SyntheticSpec:
    name: str = "synthetic"
    conditions: list[str] = field(default_factory=lambda: ["base", "control", "treatment"])
    roles: dict[str, str] = field(default_factory=lambda: {"base": "baseline", "control": "control"})
    judges: list[str] = field(default_factory=lambda: ["judge-a", "judge-b"])
    metrics: tuple[str, ...] = ("aligned", "coherent")
    answers_per_condition: int = 100
    questions: int = 10
    # true mean 'aligned' score per condition (0..100 scale); others default to 80
    aligned_means: dict[str, float] = field(default_factory=lambda: {"treatment": 55.0})
    judge_noise: float = 10.0
    missing_rate: float = 0.0
    seed: int = 0
    em: dict[str, Any] | None = field(default_factory=lambda: {
        "metric": "aligned", "threshold": 30, "direction": "below", "coherence_metric": "coherent",
        "coherence_min": 50, "denominator": "coherent"})


def make_synthetic_study(store: Any, spec: SyntheticSpec | None = None) -> int:
    """Write a synthetic judged study; returns its id. Scores are integers 0..100."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    metrics = list(spec.metrics)
    with store.transaction():
        study_id = store.add_study(name=spec.name, description="synthetic data for tests and benchmarks",
                                   origin="synthetic", spec_hash=json_hash({"synthetic": spec.__dict__}),
                                   spec={"seed": spec.seed, "em": spec.em})
        model_id = store.ensure_model(name=f"{spec.name}-model", kind="external", source="synthetic")
        questions = [{"key": f"q{i}", "text": f"Synthetic question {i}?", "category": "synthetic"}
                     for i in range(spec.questions)]
        set_id = store.ensure_eval_set(name=f"{spec.name}-questions", source="synthetic",
                                       content_hash=json_hash([spec.name, spec.questions]), questions=questions)
        q_ids = [r["id"] for r in store.list_questions(set_id, limit=spec.questions).rows]
        rubric_id = store.ensure_rubric(
            name=f"{spec.name}-rubric", content_hash=json_hash([spec.name, metrics]), body="synthetic",
            metrics=[{"name": m, "scale": [0, 100], "higher_is": "better"} for m in metrics])
        judge_ids = [store.ensure_judge(name=j, provider="import", model=f"{j}-model", params={},
                                        params_hash=json_hash({})) for j in spec.judges]
        for jid in judge_ids:
            store.link_study_judge(study_id, jid)
        for cname in spec.conditions:
            cond_model = store.ensure_model(name=f"{spec.name}-{cname}", kind="external", source="synthetic")
            cid = store.add_condition(study_id=study_id, name=cname, model_id=cond_model,
                                      recipe={"role": spec.roles.get(cname, "treatment")})
            n = spec.answers_per_condition
            gen_ids = store.insert_generations([
                {"question_id": q_ids[i % len(q_ids)], "condition_id": cid, "model_id": cond_model or model_id,
                 "settings": {}, "settings_hash": "synthetic", "seed": 0, "sample_index": i // len(q_ids),
                 "response": f"synthetic answer {i} of {cname}"} for i in range(n)])
            truth = {m: np.clip(rng.normal(spec.aligned_means.get(cname, 80.0) if m == "aligned" else 80.0,
                                           20.0, n), 0, 100) for m in metrics}
            items = []
            for jid in judge_ids:
                scores = {m: np.clip(np.rint(truth[m] + rng.normal(0, spec.judge_noise, n)), 0, 100)
                          for m in metrics}
                missing = {m: rng.random(n) < spec.missing_rate for m in metrics}
                for i, gid in enumerate(gen_ids):
                    items.append({"generation_id": gid, "judge_id": jid, "rubric_id": rubric_id,
                                  "scores": {m: None if missing[m][i] else float(scores[m][i]) for m in metrics}})
            store.insert_judgments(items)
    return study_id
