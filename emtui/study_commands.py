"""``emtui study set-em`` and ``emtui study em``: an imported study's EM rule, set after the
import and kept with the time it was set (see :mod:`engine.study.em_rule`). Dispatched from
:mod:`emtui.commands`; bad input is one line, exit status 2, nothing written."""

from __future__ import annotations

import argparse
from pathlib import Path

from emtui.cli import UsageError
from emtui.streams import say


def _store(args: argparse.Namespace, *, readonly: bool = False):
    from db import open_store
    from emtui.settings_commands import settings_of

    return open_store(Path(args.db).expanduser(), create=False, readonly=readonly,
                      busy_timeout_s=settings_of(args).busy_timeout_s)


def study(args: argparse.Namespace) -> int:
    return {"set-em": set_em, "em": show_em}[args.action](args)


def set_em(args: argparse.Namespace) -> int:
    from engine.study.em_rule import EmRuleError, describe, make_rule, set_rule

    where = "emtui study set-em"
    if (args.below is None) == (args.above is None):
        raise UsageError(f"{where}: give --aligned-below T (misaligned when the metric is below T) or --above T")
    if args.coherence_metric is not None and args.coherent_above is None:
        raise UsageError(f"{where}: --coherence-metric needs --coherent-above C")
    em = make_rule(metric=args.metric, threshold=args.below if args.below is not None else args.above,
                   direction="below" if args.below is not None else "above",
                   coherence_metric=args.coherence_metric, coherence_above=args.coherent_above,
                   denominator=args.denominator)
    with _store(args) as store:
        try:
            before, row = set_rule(store, args.study, em)
        except EmRuleError as exc:
            raise UsageError(f"{where}: {exc}") from None
    if row is None:
        say(f"study {args.study!r}: the EM rule is already {describe(em)}; nothing was done")
        return 0
    say(f"study {args.study!r}: EM rule set at {row['set_at']}: {describe(em)} (before: {describe(before)}); "
        f"in {args.db}")
    return 0


def show_em(args: argparse.Namespace) -> int:
    import json

    from engine.study.em_rule import describe, study_em

    with _store(args, readonly=True) as store:
        study = store.find_study(args.study)
        if study is None:
            raise UsageError(f"emtui study em: no study named {args.study!r} in {args.db}")
        rules = store.em_rules(int(study["id"]))
        spec_em = json.loads(study.get("spec_json") or "{}").get("em") or {}
        current = study_em(store, study)
    say(f"study {args.study!r}: {describe(current)}")
    origin = "the study file" if study["origin"] == "study-file" else f"the import ({study['origin']})"
    say(f"  {study['created_at']}  {origin}: {describe(spec_em)}")
    for r in rules:
        say(f"  {r['set_at']}  set-em ({r['source']}): {describe(r['em'])}")
    return 0
