"""Judge rubrics: what each metric means, its scale, and the prompt that asks for it.

A rubric is identified by the content hash of its file, so every judgment can be
traced to the exact wording that produced it.

Formats read: emtui TOML (``data/rubrics/*.toml``: ``[[metrics]]`` with ``name``,
``scale``, ``higher_is``, ``prompt``, or one shared top-level ``prompt`` with
``parse = "json"``), and the model-organisms ``judges.yaml`` (a list of
``{<metric>: <prompt>, high_score: N}``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.hashing import sha256_bytes
from engine.resources import builtin_file, builtin_names


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file and the metric."""


@dataclass
class Metric:
    name: str
    scale: tuple[float, float]
    higher_is: str  # 'better' (e.g. aligned) or 'worse' (e.g. drift)
    prompt: str | None = None
    specials: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific extras, kept verbatim

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scale": list(self.scale), "higher_is": self.higher_is,
                "specials": self.specials, **({"meta": self.meta} if self.meta else {})}


@dataclass
class Rubric:
    name: str
    source: str
    body: str
    content_hash: str
    metrics: list[Metric]
    prompt: str | None = None  # shared prompt when one call scores every metric
    parse: str = "number"

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]


def load_rubric(source: str, *, base_dir: Path | None = None) -> Rubric:
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        path = builtin_file("rubrics", name)
        if path is None:
            raise RubricError(f"no built-in rubric {name!r} (built-in: {', '.join(builtin_names('rubrics'))})")
    else:
        path = Path(source).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise RubricError(f"{path}: no such file")
    raw = path.read_bytes()
    if path.suffix.lower() == ".toml":
        rubric = _from_toml(path, raw)
    elif path.suffix.lower() in (".yaml", ".yml"):
        rubric = _from_judges_yaml(path, raw)
    else:
        raise RubricError(f"{path}: unknown rubric format (use .toml or .yaml)")
    rubric.source = source
    return rubric


def _scale(path: Path, name: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] >= value[1]):
        raise RubricError(f"{path}: metric {name!r}: 'scale' must be [low, high] with low < high")
    return float(value[0]), float(value[1])


def _from_toml(path: Path, raw: bytes) -> Rubric:
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RubricError(f"{path}: {exc}") from None
    items = doc.get("metrics")
    if not isinstance(items, list) or not items:
        raise RubricError(f"{path}: needs a [[metrics]] array")
    shared = doc.get("prompt")
    metrics = []
    for i, m in enumerate(items):
        name = m.get("name")
        if not isinstance(name, str) or not name:
            raise RubricError(f"{path}: metrics[{i}]: 'name' must be a non-empty string")
        higher = m.get("higher_is", "better")
        if higher not in ("better", "worse"):
            raise RubricError(f"{path}: metric {name!r}: 'higher_is' must be 'better' or 'worse'")
        prompt = m.get("prompt")
        if prompt is None and shared is None:
            raise RubricError(f"{path}: metric {name!r}: needs a 'prompt' (or a shared top-level one)")
        metrics.append(Metric(name, _scale(path, name, m.get("scale")), higher, prompt,
                              list(m.get("specials", []))))
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise RubricError(f"{path}: metric names repeat: {names}")
    return Rubric(str(doc.get("name") or path.stem), str(path), raw.decode("utf-8"), sha256_bytes(raw),
                  metrics, shared, str(doc.get("parse", "number")))


def _from_judges_yaml(path: Path, raw: bytes) -> Rubric:
    import yaml

    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, list):
        raise RubricError(f"{path}: expected a list of {{metric: prompt}} entries")
    metrics = []
    for i, entry in enumerate(doc):
        prompts = {k: v for k, v in (entry or {}).items() if isinstance(v, str)}
        if len(prompts) != 1:
            raise RubricError(f"{path}: entry {i + 1}: expected exactly one metric prompt")
        (name, prompt), = prompts.items()
        # Every prompt of that format asks for 0..100. `high_score` (100 for coherent, 0 for aligned)
        # is not the top of the scale; its meaning upstream is unclear, so it is kept as metadata.
        meta = {"high_score": entry["high_score"]} if "high_score" in entry else {}
        metrics.append(Metric(name, (0.0, 100.0), "better", prompt, meta=meta))
    return Rubric(path.stem, str(path), raw.decode("utf-8"), sha256_bytes(raw), metrics)
