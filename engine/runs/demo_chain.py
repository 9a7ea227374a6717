"""The offline demo's chain (``emtui demo``, ``make run``): the two studies shipped in data/studies registered
and the demo's chain queued by :func:`engine.runs.study_chain.queue_study`, as ``emtui run`` queues any study's.

``demo-judge`` trains the judge adapter (one condition, ``scorer``) and ``demo`` is the experiment (insecure,
secure, base on the tiny model). The demo's local judge names the adapter ``trained:demo-judge/scorer``, so
``queue_study`` queues that training too and its judge stage waits for it (engine/runs/judge_adapters.py).
Run again, it queues only what is missing: nothing while the chain runs or once it is done.
"""

from __future__ import annotations

from typing import Any

from engine.runs.study_chain import ChainPlan

DEMO_STUDY = "builtin:demo"
JUDGE_STUDY = "builtin:demo-judge"


class OtherDemo(ValueError):
    """The database holds another version of a demo study (emtui's shipped files changed since)."""


def register_builtin(store: Any, source: str) -> tuple[str, bool]:
    """Register the built-in study ``source`` unless it is there already: (its name, registered now)."""
    from engine.study.study_file import AlreadyRegistered, load_study, register_study

    study = load_study(source)
    found = store.find_study(study.name)
    if found is not None and found["spec_hash"] != study.spec_hash:
        raise OtherDemo(f"{store.path} holds another version of study {study.name!r} (this emtui ships a changed "
                        f"one): delete {store.path} and {store.path}.runs/ to run the demo again")
    try:
        register_study(store, study)
    except AlreadyRegistered:
        return study.name, False
    return study.name, True


def queue_demo(store: Any) -> ChainPlan:
    """Register the demo studies (each checked against the shipped version) and queue the demo's chain, all in
    one transaction. Raises :class:`OtherDemo` and the chain's one-line errors (nothing written then)."""
    from engine.runs.study_chain import queue_study

    with store.transaction():
        registered = []
        for source in (JUDGE_STUDY, DEMO_STUDY):
            name, new = register_builtin(store, source)
            registered += [name] if new else []
        plan = queue_study(store, name)
        plan.registered = registered + plan.registered
    return plan
