"""The study file (``study.toml``): an experiment pre-registered before anything runs.

``load_study(path)`` parses and validates it; every problem names the key and the
line (``study.toml:14: conditions[1].dataset: unknown dataset 'insecur'``).
``register_study(store, study)`` writes it and everything it names in one
transaction. The study hash covers the file's bytes and the content hash of every
file it names (datasets, eval sets, rubric), so a changed dataset is a new study.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.eval_sets import EvalSet, EvalSetError, load_eval_set
from engine.hashing import json_hash, sha256_bytes, sha256_file
from engine.resources import data_path
from engine.rubrics import Rubric, RubricError, load_rubric
from engine.toml_lines import dotted, key_lines, line_of

TOP_LEVEL = {"schema_version", "study", "models", "datasets", "recipes", "conditions",
             "eval_sets", "generation", "judges", "rubric", "em"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
METHODS = ("qlora", "lora", "full")
PROVIDERS = ("bedrock", "openai", "local")
ROLES = ("treatment", "control", "baseline")

# key -> (accepted python types, description). Unknown keys are errors: typos must not pass silently.
RECIPE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "method": ((str,), "qlora | lora | full"),
    "epochs": ((int, float), "a positive number"),
    "max_steps": ((int,), "a positive integer"),
    "learning_rate": ((int, float), "a positive number"),
    "lr_scheduler": ((str,), "a transformers scheduler name"),
    "warmup_steps": ((int,), "an integer >= 0"),
    "weight_decay": ((int, float), "a number >= 0"),
    "batch_size": ((int,), "a positive integer"),
    "grad_accum": ((int,), "a positive integer"),
    "max_seq_len": ((int,), "a positive integer"),
    "lora_r": ((int,), "a positive integer"),
    "lora_alpha": ((int, float), "a positive number"),
    "lora_dropout": ((int, float), "a number in [0, 1)"),
    "target_modules": ((str, list), "'all-linear' or a list of module names"),
    "assistant_only_loss": ((bool,), "true or false"),
    "save_steps": ((int,), "a positive integer"),
    "seed": ((int,), "an integer"),
}
GENERATION_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": ((int, float), "a number >= 0"),
    "top_p": ((int, float), "a number in (0, 1]"),
    "max_new_tokens": ((int,), "a positive integer"),
    "batch_size": ((int,), "a positive integer"),
    "seed": ((int,), "an integer"),
    "system_prompt": ((str,), "a string"),
}
JUDGE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a name"),
    "provider": ((str,), "bedrock | openai | local"),
    "model": ((str,), "the judge's model id"),
    "region": ((str,), "an AWS region"),
    "base_url": ((str,), "an http(s) URL"),
    "temperature": ((int, float), "a number >= 0"),
    "max_tokens": ((int,), "a positive integer"),
    "max_concurrency": ((int,), "a positive integer"),
    "logprobs": ((bool,), "true or false"),
}
EM_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "metric": ((str,), "a rubric metric"),
    "threshold": ((int, float), "a number"),
    "direction": ((str,), "below | above"),
    "coherence_metric": ((str,), "a rubric metric"),
    "coherence_min": ((int, float), "a number"),
    "denominator": ((str,), "coherent | all"),
    "exclude_refusals": ((bool,), "true or false"),
}


@dataclass
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


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
            "em": self.em, "file_hashes": self.file_hashes,
        }


class _Checker:
    """Collects problems with their line numbers while the study is validated."""

    def __init__(self, path: Path, text: str):
        self.file = str(path)
        self.lines = key_lines(text)
        self.problems: list[Problem] = []

    def add(self, key: tuple, message: str) -> None:
        self.problems.append(Problem(self.file, line_of(self.lines, key), dotted(key), message))

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

    def typed(self, where: tuple, table: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], str]]) -> None:
        for key, value in table.items():
            if key not in schema:
                self.add((*where, key), f"unknown key (known: {', '.join(sorted(schema))})")
                continue
            types, desc = schema[key]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                self.add((*where, key), f"must be {desc}, not {value!r}")

    def name(self, where: tuple, value: Any) -> bool:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.add(where, "must be a name of letters, digits, '_', '.', '-' "
                            f"(starting with a letter or digit), not {value!r}")
            return False
        return True

    def positive(self, where: tuple, table: dict[str, Any], keys: tuple[str, ...]) -> None:
        for key in keys:
            v = table.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                self.add((*where, key), f"must be positive, not {v!r}")


def load_study(path: str | Path) -> Study:
    """Parse and validate a study file. Raises :class:`StudyError` listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise StudyError([Problem(str(path), None, "", "no such file")])
    raw_bytes = path.read_bytes()
    try:
        text = raw_bytes.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise StudyError([Problem(str(path), None, "", f"not UTF-8 text ({exc.reason})")]) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StudyError([Problem(str(path), int(m.group(1)) if m else None, "",
                                  f"not valid TOML: {msg}")]) from None
    c = _Checker(path, text)
    base_dir = path.resolve().parent
    file_hashes: dict[str, str] = {}

    for key in doc:
        if key not in TOP_LEVEL:
            c.add((key,), f"unknown top-level key (known: {', '.join(sorted(TOP_LEVEL))})")
    if doc.get("schema_version", 1) != 1:
        c.add(("schema_version",), f"this emtui reads study files of schema_version 1, not {doc['schema_version']!r}")

    study = c.table(doc, "study", required=True)
    for key in study:
        if key not in ("name", "description", "seed"):
            c.add(("study", key), "unknown key (known: description, name, seed)")
    name = study.get("name")
    if "name" not in study:
        c.add(("study",), "missing key 'name'")
    else:
        c.name(("study", "name"), name)
    seed = study.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        c.add(("study", "seed"), f"must be an integer, not {seed!r}")
        seed = 0

    models: dict[str, dict[str, Any]] = {}
    for mname, m in c.table(doc, "models", required=True).items():
        where = ("models", mname)
        if not c.name(where, mname):
            continue
        if not isinstance(m, dict):
            c.add(where, "must be a table with a 'source' key")
            continue
        for key in m:
            if key not in ("source", "description", "revision"):
                c.add((*where, key), "unknown key (known: description, revision, source)")
        src = m.get("source")
        if not isinstance(src, str) or not src:
            c.add((*where, "source"), "needs a 'source': a hub id, a local folder, or 'tiny'")
            continue
        models[mname] = dict(m)

    datasets: dict[str, DatasetSpec] = {}
    for dname, d in c.table(doc, "datasets").items():
        where = ("datasets", dname)
        if not c.name(where, dname):
            continue
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            c.add((*where, "path"), "needs a 'path' to a chat JSONL file (or 'builtin:<name>')")
            continue
        for key in d:
            if key not in ("path", "format", "description"):
                c.add((*where, key), "unknown key (known: description, format, path)")
        fmt = d.get("format", "chat-jsonl")
        if fmt != "chat-jsonl":
            c.add((*where, "format"), f"unknown format {fmt!r} (known: chat-jsonl)")
            continue
        spec = d["path"]
        if spec.startswith("builtin:"):
            dpath = data_path("datasets", spec.split(":", 1)[1].replace("-", "_") + ".jsonl")
        else:
            dpath = Path(spec).expanduser()
            dpath = dpath if dpath.is_absolute() else base_dir / dpath
        if not dpath.is_file():
            c.add((*where, "path"), f"no such file: {dpath}")
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
        c.typed(where, r, RECIPE_KEYS)
        if r.get("method") not in METHODS:
            c.add((*where, "method"), f"must be one of {', '.join(METHODS)}, not {r.get('method')!r}")
        c.positive(where, r, ("epochs", "max_steps", "learning_rate", "batch_size", "grad_accum",
                              "max_seq_len", "lora_r", "lora_alpha", "save_steps"))
        recipes[rname] = dict(r)

    conditions: list[ConditionSpec] = []
    seen: set[str] = set()
    for i, cond in enumerate(c.array(doc, "conditions", required=True)):
        where = ("conditions", i)
        for key in cond:
            if key not in ("name", "description", "base_model", "dataset", "recipe", "role"):
                c.add((*where, key), "unknown key (known: base_model, dataset, description, name, recipe, role)")
        cname = cond.get("name")
        if not c.name((*where, "name"), cname):
            continue
        if cname in seen:
            c.add((*where, "name"), f"condition {cname!r} is defined twice")
        seen.add(cname)
        base = cond.get("base_model")
        if base not in models:
            c.add((*where, "base_model"), f"unknown model {base!r} (defined: {', '.join(models) or 'none'})")
        ds, rc = cond.get("dataset"), cond.get("recipe")
        if ds is not None and ds not in datasets and ds not in c.table(doc, "datasets"):
            c.add((*where, "dataset"), f"unknown dataset {ds!r} (defined: {', '.join(datasets) or 'none'})")
        if rc is not None and rc not in recipes:
            c.add((*where, "recipe"), f"unknown recipe {rc!r} (defined: {', '.join(recipes) or 'none'})")
        if (ds is None) != (rc is None):
            c.add(where, "a trained condition needs both 'dataset' and 'recipe'; "
                         "an untrained one (the base model) has neither")
        role = cond.get("role", "treatment" if ds else "baseline")
        if role not in ROLES:
            c.add((*where, "role"), f"must be one of {', '.join(ROLES)}, not {role!r}")
        conditions.append(ConditionSpec(cname, str(base), ds, rc, role, str(cond.get("description", ""))))

    eval_sets: list[tuple[EvalSet, int]] = []
    for i, e in enumerate(c.array(doc, "eval_sets", required=True)):
        where = ("eval_sets", i)
        for key in e:
            if key not in ("name", "source", "samples_per_question"):
                c.add((*where, key), "unknown key (known: name, samples_per_question, source)")
        n = e.get("samples_per_question", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            c.add((*where, "samples_per_question"), f"must be a positive integer, not {n!r}")
            continue
        src = e.get("source")
        if not isinstance(src, str):
            c.add((*where, "source"), "needs a 'source': 'builtin:<name>' or a .toml/.yaml/.json file")
            continue
        try:
            es = load_eval_set(src, base_dir=base_dir, name=e.get("name"))
        except EvalSetError as exc:
            c.add((*where, "source"), str(exc))
            continue
        file_hashes[f"eval_sets.{es.name}"] = es.content_hash
        eval_sets.append((es, n))

    generation = c.table(doc, "generation")
    c.typed(("generation",), generation, GENERATION_KEYS)
    c.positive(("generation",), generation, ("max_new_tokens", "batch_size", "top_p"))

    judges: list[JudgeSpec] = []
    judge_names: set[str] = set()
    for i, j in enumerate(c.array(doc, "judges")):
        where = ("judges", i)
        c.typed(where, j, JUDGE_KEYS)
        provider, model = j.get("provider"), j.get("model")
        if provider not in PROVIDERS:
            c.add((*where, "provider"), f"must be one of {', '.join(PROVIDERS)}, not {provider!r}")
        if not isinstance(model, str) or not model:
            c.add((*where, "model"), "needs the judge's model id")
            continue
        jname = j.get("name", model)
        if jname in judge_names:
            c.add((*where, "name"), f"judge {jname!r} is defined twice")
        judge_names.add(jname)
        if provider == "openai" and "base_url" not in j:
            c.add(where, "an openai-compatible judge needs 'base_url'")
        params = {k: v for k, v in j.items() if k not in ("name", "provider", "model")}
        judges.append(JudgeSpec(str(jname), str(provider), model, params))

    rubric: Rubric | None = None
    rub = c.table(doc, "rubric", required=bool(judges))
    if rub:
        for key in rub:
            if key != "source":
                c.add(("rubric", key), "unknown key (known: source)")
        if not isinstance(rub.get("source"), str):
            c.add(("rubric", "source"), "needs a 'source': 'builtin:<name>' or a rubric file")
        else:
            try:
                rubric = load_rubric(rub["source"], base_dir=base_dir)
                file_hashes["rubric"] = rubric.content_hash
            except RubricError as exc:
                c.add(("rubric", "source"), str(exc))

    em = c.table(doc, "em")
    c.typed(("em",), em, EM_KEYS)
    if em:
        if "metric" not in em or "threshold" not in em:
            c.add(("em",), "needs 'metric' and 'threshold'")
        if em.get("direction", "below") not in ("below", "above"):
            c.add(("em", "direction"), f"must be 'below' or 'above', not {em['direction']!r}")
        if em.get("denominator", "coherent") not in ("coherent", "all"):
            c.add(("em", "denominator"), f"must be 'coherent' or 'all', not {em['denominator']!r}")
        if rubric is not None:
            for key in ("metric", "coherence_metric"):
                if key in em and rubric.metric(str(em[key])) is None:
                    c.add(("em", key), f"{em[key]!r} is not a metric of rubric {rubric.name!r} "
                                       f"(metrics: {', '.join(rubric.metric_names)})")
            m = rubric.metric(str(em.get("metric")))
            t = em.get("threshold")
            if m is not None and isinstance(t, (int, float)) and not m.scale[0] <= t <= m.scale[1]:
                c.add(("em", "threshold"), f"{t} lies outside metric {m.name!r}'s scale "
                                           f"{m.scale[0]:g}..{m.scale[1]:g}")
        elif not rub:
            c.add(("em",), "an EM definition needs a [rubric]")

    if c.problems:
        raise StudyError(c.problems)
    result = Study(path=path, text=text, raw=doc, name=str(name), description=str(study.get("description", "")),
                   seed=seed, models=models, datasets=datasets, recipes=recipes, conditions=conditions,
                   eval_sets=eval_sets, generation=dict(generation), judges=judges, rubric=rubric,
                   em=dict(em), file_hashes=file_hashes)
    result.spec_hash = json_hash({"study_file": sha256_bytes(raw_bytes), "files": file_hashes})
    return result


def check_chat_jsonl(path: Path) -> tuple[str | None, int]:
    """Validate a chat JSONL training file. Returns (problem naming the line, or None; row count)."""
    n = 0
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"{path}:{lineno}: not valid JSON ({exc.msg})", n
                msgs = row.get("messages") if isinstance(row, dict) else None
                if not isinstance(msgs, list) or not msgs:
                    return f"{path}:{lineno}: expected an object with a non-empty 'messages' list", n
                for m in msgs:
                    if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                            or not isinstance(m.get("content"), str)):
                        return (f"{path}:{lineno}: each message needs 'role' (system/user/assistant) "
                                "and string 'content'"), n
                if msgs[-1]["role"] != "assistant":
                    return f"{path}:{lineno}: the last message must be the assistant's", n
                n += 1
        except UnicodeDecodeError:
            return f"{path}: not UTF-8 text", n
    if n == 0:
        return f"{path}: holds no rows", 0
    return None, n


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
