"""Where `emtui summary`'s time goes: each phase of one study's summary run alone, one after the other.

The summary runs its phases side by side (α and the judging rows in threads beside the means), so
a profile of it shows mostly threads waiting. Here the summary's own functions are called in turn
on a database `bench/summary_scale.py` built, and each phase's wall and CPU time printed; CPU time
is the figure a machine shared with others does not inflate.

Usage: python bench/summary_phases.py DB [--study NAME]   (the study defaults to the database's first)
Run it under `python -m cProfile -s tottime` to see the functions inside the phases.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import open_store  # noqa: E402
from engine.results import summary as S  # noqa: E402
from engine.results.judge_failures import judging_rows  # noqa: E402
from engine.stats.agreement import stratified_alphas  # noqa: E402


def clock(name: str, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    t, c = time.perf_counter(), time.process_time()
    out = f(*args, **kwargs)
    print(f"{name:<36} wall {time.perf_counter() - t:6.3f} s   CPU {time.process_time() - c:6.3f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("--study")
    args = ap.parse_args()
    with open_store(args.db, readonly=True) as store:
        name = args.study or store.list_studies(limit=1).rows[0]["name"]
        found = store.find_study(name)
        if found is None:
            sys.exit(f"no study named {name!r} in {args.db}")
        study = store.get_study(int(found["id"]))
        assert study is not None
        spec = json.loads(study.get("spec_json") or "{}")
        opts = S.SummaryOptions()
        seed = S._study_seed(spec, opts)
        how = S.panel_aggregate(spec, opts)[0]
        data = clock("read the scores and answers", S.load_study_data, store, int(study["id"]))
        clock("judging rows (judged, failed, why)", judging_rows, store, study, data.conditions, data.judges)
        rows = S.condition_rows(data)
        clock("α bootstrap", stratified_alphas, {m: x[rows].T for m, x in data.matrices.items()},
              data.cond_of_answer[rows], levels=S.ALPHA_LEVELS, n_resamples=opts.agreement_resamples, ci=opts.ci,
              seed=S._rng(seed, name, "alpha"))
        columns = clock(f"panel ({how}) and EM columns", S.aggregated_columns, store, study, data, how)
        estimate = S._Estimator(seed, name, opts)
        masks = S.condition_masks(data, rows)

        def means() -> dict[tuple[int, str, str], Any]:
            return {(c["id"], col.judge, col.metric): estimate(col.values[masks[c["id"]]], c["name"], col.judge,
                                                                col.metric)[0]
                    for col in columns for c in data.conditions}

        cells = clock("means with their CIs", means)
        clock("breakdowns (auto)", S._breakdowns, store, study, data, columns, None, estimate)
        clock("comparisons", S._comparisons, {"comparisons": []}, data, cells, name, opts)


if __name__ == "__main__":
    main()
