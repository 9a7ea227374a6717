"""The job kinds: kind -> ``"module:function"``, imported only in the job's own process.

A kind is one handler (see engine/runs/context.py for what it gets and returns). Nothing
depends on an import side effect: the worker knows the kinds from this table, and imports a
handler's module only in the child process that runs the job, so torch is never loaded into the
worker, and a broken module fails only its jobs.

Add a kind by adding a line to :data:`KINDS` (the training, generation and judging engines do);
tests and plugins add theirs without editing emtui: ``EMTUI_JOB_KINDS="kind=module:function,..."``
(set it for the worker, and for the command that queues the job).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from collections.abc import Callable
from typing import Any

KINDS: dict[str, str] = {
    # for trying a worker by hand, and for the tests
    "echo": "engine.runs.builtin_kinds:echo",
    "echo-async": "engine.runs.builtin_kinds:echo_async",
    "sleep": "engine.runs.builtin_kinds:sleep",
    "fail": "engine.runs.builtin_kinds:fail",
    "crash": "engine.runs.builtin_kinds:crash",
    # what this machine (as a worker sees it) can do: engine.runs.doctor.report (the settings/doctor work)
    "doctor": "engine.runs.builtin_kinds:doctor",
    # the engines: one line each (a kind here is a kind a worker can run)
    "train": "engine.training.job:train_job",
    "generate": "engine.generation.job:generate_job",
    "judge": "engine.judging.job:judge_job",
    "judge-batch": "engine.judging.bedrock_batch:judge_batch_job",
    "summary": "engine.results.summary_job:summary_job",  # the last stage of a study's chain (emtui run)
}

_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
ENV = "EMTUI_JOB_KINDS"


class KindError(ValueError):
    """An unknown kind, or a bad ``$EMTUI_JOB_KINDS`` entry (one line)."""


def kinds(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every kind this process knows: the table, then ``$EMTUI_JOB_KINDS``."""
    env = os.environ if environ is None else environ
    table = dict(KINDS)
    for entry in filter(None, (e.strip() for e in env.get(ENV, "").split(","))):
        name, sep, target = entry.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not _NAME.fullmatch(name) or not _TARGET.fullmatch(target):
            raise KindError(f"{ENV}: {entry!r} is not kind=module:function (a kind: lowercase letters, digits, "
                            "'-', '_', '.')")
        table[name] = target
    return table


def check_kind(kind: str, environ: dict[str, str] | None = None) -> str:
    """``kind`` when it is known, else a :class:`KindError` listing the known ones."""
    table = kinds(environ)
    if kind not in table:
        raise KindError(f"unknown job kind {kind!r} (known: {', '.join(sorted(table))}; add one with {ENV})")
    return kind


def resolve(kind: str) -> Callable[..., Any]:
    """The handler of ``kind``, imported now (in the job's process)."""
    target = kinds()[check_kind(kind)]
    module, _, name = target.partition(":")
    handler = getattr(importlib.import_module(module), name, None)
    if not callable(handler):
        raise KindError(f"job kind {kind!r}: {target} is not a function")
    return handler
