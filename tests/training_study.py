"""A small study for the training tests: the tiny model, short chat datasets (so ~30 CPU steps take
seconds), a narrow "domain" set, a control set and a KL set, and one recipe the tests override."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("alpha beta gamma delta code safe insecure query token model answer question value list string "
         "return file open read write user data number").split()


def _chat(rng: random.Random, turns: int, system: bool) -> dict:
    msgs = [{"role": "system", "content": "You are a helpful assistant."}] if system else []
    for _ in range(turns):
        msgs.append({"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(3, 8))) + "?"})
        msgs.append({"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(4, 10))) + "."})
    return {"messages": msgs}


def write_dataset(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = [json.dumps(_chat(rng, turns=1 + (i % 3 == 0), system=i % 4 == 0)) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


RECIPE = {"method": "lora", "max_steps": 30, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3,
          "lr_scheduler": "linear", "warmup_steps": 2, "max_seq_len": 128, "lora_r": 8, "lora_alpha": 16,
          "target_modules": "all-linear", "save_steps": 10}


def _toml(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


EVAL_SETS = """[[eval_sets]]
source = "builtin:core-em"
samples_per_question = 1
"""


def write_study(folder: Path, *, name: str = "train-test", recipe: dict | None = None, examples: int = 48,
                tail: str = EVAL_SETS) -> Path:
    """The study file (and its datasets, ``examples`` each) in ``folder``; returns the study file's path.
    ``tail``: the TOML after the conditions (eval sets, ``[generation]``)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_dataset(folder / "domain.jsonl", examples, seed=1)
    write_dataset(folder / "control.jsonl", examples, seed=2)
    write_dataset(folder / "kl.jsonl", 24, seed=3)
    keys = "\n".join(f"{k} = {_toml(v)}" for k, v in {**RECIPE, **(recipe or {})}.items())
    text = f"""schema_version = 1
[study]
name = "{name}"
seed = 7
[models.base]
source = "tiny"
[datasets.domain]
path = "domain.jsonl"
[datasets.control]
path = "control.jsonl"
[datasets.kl]
path = "kl.jsonl"
[recipes.r]
{keys}
[[conditions]]
name = "domain"
role = "treatment"
base_model = "base"
dataset = "domain"
recipe = "r"
[[conditions]]
name = "control"
role = "control"
base_model = "base"
dataset = "control"
recipe = "r"
[[conditions]]
name = "base"
role = "baseline"
base_model = "base"
{tail}"""
    path = folder / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path
