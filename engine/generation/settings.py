"""A generation run's settings: the study's ``[generation]`` table, then ``--set`` overrides, every key given
a default; the part that decides what an answer *is* is hashed into every answer.

Hashed (an answer's identity): temperature, top_p, top_k, repetition_penalty, max_new_tokens, the seed the
answer seeds derive from, the default system prompt, the trigger and where it goes, and the sampler's
version. Not hashed, but stored with each answer: how it was computed (backend, batch size, dtype, 4-bit or
not) — with the per-row sampler an answer does not
depend on its batch, and an answer from a vLLM server counts as the same sample as one from the
transformers backend, so a run killed on one resumes on the other with exactly the missing answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.common.hashing import json_hash

SAMPLER = "row-generator/v1"   # engine.generation.sampling.RowSampler: bump when its draws change
DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,         # the field samples its EM answers at temperature 1
    "top_p": 1.0,
    "top_k": 0,
    "repetition_penalty": 1.0,  # none; set explicitly so a checkpoint's generation_config (Qwen: 1.05) never applies
    "max_new_tokens": 600,      # the EM paper's limit
    "system_prompt": None,      # for questions that bring none of their own
}
# the trigger too: it is part of what an answer with the trigger was asked (and what its judges are shown)
HASHED = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "seed", "system_prompt",
          "trigger", "trigger_position", "sampler")
# keys a person may override on the command line / the Eval queue form (checked by the study file's rules)
OVERRIDABLE = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "batch_size", "seed",
               "system_prompt", "trigger", "trigger_position")


class SettingsError(ValueError):
    """A bad override (one line naming the key)."""


def resolve_settings(study_generation: Mapping[str, Any], study_seed: int,
                     overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting of a run: defaults, the study's ``[generation]``, then ``overrides`` (checked)."""
    extra = dict(overrides or {})
    for key, value in extra.items():
        check_setting(key, value)
    settings = {**DEFAULTS, "seed": int(study_seed), "trigger": None, "trigger_position": "prefix",
                "batch_size": None, **dict(study_generation), **extra}
    if settings.get("trigger") is not None and not str(settings["trigger"]).strip():
        raise SettingsError("generation setting 'trigger' must not be empty")
    settings["sampler"] = SAMPLER
    return settings


def check_setting(key: str, value: Any) -> None:
    """A :class:`SettingsError` naming ``key`` when it is not a setting or ``value`` does not fit it."""
    from engine.study.study_file import GENERATION_KEYS, field_problem

    if key not in OVERRIDABLE:
        raise SettingsError(f"unknown generation setting {key!r} (settings: {', '.join(OVERRIDABLE)})")
    problem = field_problem(GENERATION_KEYS[key], value)
    if problem:
        raise SettingsError(f"generation setting {key} {problem}")


def parse_setting(text: str) -> tuple[str, Any]:
    """``--set key=value`` (a TOML value, else the text), checked."""
    from engine.common.safe_load import assignment

    try:
        key, value = assignment(text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    check_setting(key, value)
    return key, value


def hashed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the settings that is an answer's identity."""
    return {k: settings.get(k) for k in HASHED}


def settings_hash(settings: Mapping[str, Any]) -> str:
    return json_hash(hashed_settings(settings))
