"""Per judge and condition: how many answers were judged, how many judgments failed (and the commonest
reason), how many answers are not judged yet — the summary's ``judging`` rows.

A failed judgment (no reply after every attempt, or a reply a metric could not be read from: its raw
reply and the error are stored) is not a missing one (never judged). Telling them apart per judge and
condition shows what the seed's scripts could not: which judge failed on which answers, and whether its
failures were spread over the conditions or fell on some of them.

Rows: ``{study, judge, judge_name, condition, answers, judged, failed, not_judged, failure, failure_n}``;
``failure`` is the commonest reason among the failures (None without any), as one clean line: the
quoted start of the reply that parse errors end with is left out, so that failures of one kind
count together; ``failure_n`` how many failures gave it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from engine.common.text import one_line, strip_control

JUDGING_KEYS = ("study", "judge", "judge_name", "condition", "answers", "judged", "failed", "not_judged",
                "failure", "failure_n")
REASON_CHARS = 120
# a parse error ends with the reply's start quoted (repr): "aligned: not a number (...): 'I think...'";
# the greedy match finds the last such quote, keeping every ': ' before it
_QUOTED_TAIL = re.compile(r"\A(.*\S)\s*:\s*['\"]", re.S)


def failure_reason(error: str | None) -> str:
    """What a failure's error says, without the quoted reply it may end with: one line of plain text."""
    text = one_line(strip_control(error or "no error recorded"), 10 * REASON_CHARS)
    m = _QUOTED_TAIL.match(text)
    if m and m.group(1).strip():
        text = m.group(1)
    return one_line(text, REASON_CHARS)


def judging_rows(store: Any, study: dict[str, Any], conditions: list[dict[str, Any]],
                 judges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study's rows, one per judge × condition (judges and conditions in the summary's order)."""
    sid = int(study["id"])
    counts = {(int(r["judge_id"]), int(r["condition_id"])): r
              for r in store.study_judging_counts(sid, [int(j["id"]) for j in judges])}
    reasons: dict[tuple[int, int], Counter[str]] = {}
    for r in store.study_failure_errors(sid):
        key = (int(r["judge_id"]), int(r["condition_id"]))
        reasons.setdefault(key, Counter())[failure_reason(r["error"])] += int(r["n"])
    rows = []
    for j in judges:
        for c in conditions:
            key = (int(j["id"]), int(c["id"]))
            got = counts.get(key) or {"judged": 0, "failed": 0}
            answers, judged, failed = int(c["n_generations"]), int(got["judged"] or 0), int(got["failed"] or 0)
            top = sorted(reasons.get(key, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:1]
            rows.append(dict(zip(JUDGING_KEYS, (
                study["name"], j["model"], j["name"], c["name"], answers, judged, failed,
                max(0, answers - judged - failed), top[0][0] if top else None, top[0][1] if top else 0),
                strict=True)))
    return rows
