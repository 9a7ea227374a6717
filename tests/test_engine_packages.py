"""The engines' job kinds: every kind the table lists resolves to a handler — adding a kind is one handler
and one line — and the engine packages import cheaply (no torch, transformers or boto3 at import)."""

from __future__ import annotations

import inspect
import subprocess
import sys

from engine.runs.kinds import KINDS, resolve


def test_every_listed_kind_resolves_to_a_handler():
    for kind, target in KINDS.items():
        handler = resolve(kind)
        assert callable(handler) and f"{handler.__module__}:{handler.__name__}" == target
        assert list(inspect.signature(handler).parameters) == ["ctx"], kind  # one argument: the JobContext


def test_the_engines_import_without_the_heavy_libraries():
    code = ("import sys, engine.generation, engine.judging, engine.training; "
            "print(sorted(m for m in ('torch', 'transformers', 'boto3', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
