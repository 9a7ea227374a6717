"""What a study's answers can be grouped by besides their condition: the model that answered,
the training checkpoint, the question, the question's category, and whether a trigger was in
the prompt (``settings.trigger`` of the generation).

:func:`answer_groups` turns one dimension into a label per answer and the labels' order;
the summary computes the same statistics per group as per condition (``breakdowns`` rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BREAKDOWNS = ("model", "checkpoint", "question", "category", "trigger")
# shown without being asked when they vary within a condition (questions are many: on request)
AUTO_BREAKDOWNS = ("model", "checkpoint", "category", "trigger")
FINAL = "final"  # the group of answers from a model's final weights (no checkpoint)


def parse_breakdowns(text: str | None) -> tuple[str, ...] | None:
    """``"question,category"`` -> the dimensions; ``"auto"``/None -> None (the automatic choice);
    ``"none"`` -> (). Raises ValueError naming an unknown dimension."""
    if text is None or text.strip() == "auto":
        return None
    if text.strip() == "none":
        return ()
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    bad = [d for d in dims if d not in BREAKDOWNS]
    if bad:
        raise ValueError(f"unknown breakdown {bad[0]!r} (choose from {', '.join(BREAKDOWNS)}, auto, none)")
    return dims


def answer_groups(data: Any, labels: dict[str, dict[int, Any]], dim: str) -> tuple[np.ndarray, list[str]]:
    """(group label per answer as an object array, the labels in display order) for one dimension.

    ``data`` is the summary's study data (``model_of_answer`` etc.); ``labels`` comes from
    ``store.answer_group_labels``. Checkpoints are ordered by step with the final weights last."""
    if dim == "model":
        ids = data.model_of_answer
        names = {i: labels["models"].get(i, f"model {i}") for i in np.unique(ids).tolist()}
        order = sorted(names.values())
    elif dim == "checkpoint":
        ids = data.checkpoint_of_answer
        steps = {i: labels["checkpoints"].get(i) for i in np.unique(ids).tolist()}
        names = {i: FINAL if not i or steps[i] is None else f"step {steps[i]}" for i in steps}
        order = [names[i] for i in sorted(steps, key=lambda i: (not i, steps[i] if i else 0))]
    elif dim in ("question", "category"):
        ids = data.question_of_answer
        q = labels["questions"]
        pos = 0 if dim == "question" else 1
        names = {i: (q[i][pos] if i in q else f"question {i}") or "(none)" for i in np.unique(ids).tolist()}
        order = sorted(set(names.values()))
    elif dim == "trigger":
        ids = data.trigger_of_answer
        names = {0: "off", 1: "on"}
        order = [n for i, n in names.items() if (ids == i).any()]
    else:
        raise ValueError(f"unknown breakdown {dim!r}")
    lookup = np.empty(max([int(ids.max()) if ids.size else -1, *names]) + 1, dtype=object)
    for i, n in names.items():
        lookup[i] = n
    return lookup[ids] if ids.size else np.empty(0, dtype=object), list(dict.fromkeys(order))
