"""The engines' packages before they are filled (issue 14): their sketched interface imports
cheaply and says which issue fills it, and no job kind points at code that does not run. Every kind
the table lists resolves to a handler — adding a kind is one handler and one line."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from engine import judging
from engine.runs.kinds import KINDS, KindError, check_kind, kinds, resolve

STUBS = [
    (judging, "issue 14", ["make_backend", "judge_panel", "judge_job"]),
]


def call(fn):
    """Call a stub with placeholder arguments (awaited when it is a coroutine function)."""
    params = inspect.signature(fn).parameters.values()
    args = [None for p in params if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: None for p in params if p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY}
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.parametrize(("package", "issue", "names"), STUBS, ids=lambda x: getattr(x, "__name__", None))
def test_a_stub_raises_naming_its_issue(package, issue, names):
    for name in names:
        with pytest.raises(NotImplementedError, match=issue):
            call(getattr(package, name))


@pytest.mark.parametrize("kind", ["judge"])
def test_no_kind_points_at_a_stub(kind):
    # a listed kind is one a worker can run: the engines list theirs when their handler works
    assert kind not in kinds({})
    with pytest.raises(KindError, match=f"unknown job kind '{kind}'"):
        check_kind(kind, {})


def test_every_listed_kind_resolves_to_a_handler():
    for kind, target in KINDS.items():
        handler = resolve(kind)
        assert callable(handler) and f"{handler.__module__}:{handler.__name__}" == target
        assert list(inspect.signature(handler).parameters) == ["ctx"], kind  # one argument: the JobContext
