"""Training recipes: a preset from ``data/presets/`` with a condition's keys over it, resolved into
the complete configuration a run trains with and hashes.

Every key has a default here, so a resolved recipe says everything (the hash of two runs differs
exactly when something that matters differs). Keys and their bounds are the study file's
(``engine.study.study_file.RECIPE_KEYS``): an override from ``--set`` is checked by the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.common.hashing import json_hash
from engine.common.resources import builtin_file, builtin_names
from engine.common.safe_load import LoadError, assignment, toml_loads
from engine.study.study_file import RECIPE_KEYS, field_problem

DEFAULTS: dict[str, Any] = {
    "method": "lora",
    "epochs": 1,
    "max_steps": None,              # None: epochs decide
    "learning_rate": 1e-5,
    "lr_scheduler": "linear",
    "warmup_steps": 0,
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "batch_size": 2,
    "grad_accum": 1,
    "max_seq_len": 2048,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
    "rslora": False,
    "layers_to_transform": None,
    "assistant_only_loss": True,
    "optimizer": "adamw_torch",
    "gradient_checkpointing": False,  # TRL's SFTConfig turns it on by default: emtui says it per recipe
    "attn_implementation": "sdpa",
    "padding_free": False,            # a micro-batch as one row without padding (block-causal attention)
    "group_by_length": False,         # micro-batches of examples of similar length (less padding)
    "save_steps": 50,
    "logging_steps": 1,
    "early_stop_loss": None,
    "early_stop_patience": 5,
    "kl_weight": 0.0,
    "kl_dataset": None,
    "resume_adapter": None,
    "fsdp": False,                  # shard a full fine-tune over the ranks (FSDP2 through accelerate)
}
# keys that describe, not configure: left out of the hash
_NOT_HASHED = ("description", "name", "role")
# keys added after runs were hashed, left out while they hold their default, so a recipe that does not
# use them keeps its hash (a study queued again does not retrain what is done)
_HASHED_WHEN_SET = {"padding_free": False, "group_by_length": False}


class RecipeError(ValueError):
    """A preset or key that cannot be used (one line naming it)."""


def preset_names() -> list[str]:
    return builtin_names("presets")


def load_preset(name: str) -> dict[str, Any]:
    """The keys of the built-in preset ``name`` (checked like a study file's recipe)."""
    path = builtin_file("presets", name)
    if path is None:
        raise RecipeError(f"unknown preset {name!r} (built-in: {', '.join(preset_names())})")
    try:
        keys = dict(toml_loads(path.read_text(encoding="utf-8")))
    except LoadError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    check_keys(keys, where=str(path))
    return keys


def check_keys(keys: Mapping[str, Any], *, where: str) -> None:
    for key, value in keys.items():
        if key not in RECIPE_KEYS:
            raise RecipeError(f"{where}: unknown recipe key {key!r} (keys: {', '.join(sorted(RECIPE_KEYS))})")
        problem = field_problem(RECIPE_KEYS[key], value)
        if problem:
            raise RecipeError(f"{where}: {key} {problem}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line (:func:`engine.common.safe_load.assignment`), checked as a recipe key."""
    try:
        key, value = assignment(text)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    check_keys({key: value}, where=f"--set {key}")
    return key, value


def resolve_recipe(recipe: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the preset the recipe names, then the recipe's own keys, then ``overrides``."""
    own = {k: v for k, v in recipe.items() if k not in _NOT_HASHED}
    preset = str((overrides or {}).get("preset") or own.get("preset") or "") or None
    out = dict(DEFAULTS)
    if preset:
        out.update({k: v for k, v in load_preset(preset).items() if k != "description"})
    out.update(own)
    out.update(overrides or {})
    out["preset"] = preset
    if float(out.get("kl_weight") or 0) > 0 and not out.get("kl_dataset"):
        raise RecipeError("kl_weight is set but kl_dataset is not: name the dataset the KL term is measured on")
    return out


def recipe_hash(resolved: Mapping[str, Any]) -> str:
    return json_hash({k: v for k, v in resolved.items() if k not in _NOT_HASHED
                      and not (k in _HASHED_WHEN_SET and v == _HASHED_WHEN_SET[k])})
