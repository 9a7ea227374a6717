"""Training datasets: chat JSONL and prompt/completion JSONL, read and checked line by line.

Chat JSONL, one example a line: ``{"messages": [{"role": "system"|"user"|"assistant", "content":
"..."}, ...]}`` — an optional system message first, then user and assistant turns alternating,
ending with the assistant's (the turns the loss is on). Prompt/completion JSONL: ``{"prompt":
..., "completion": ...}``, each a string, or (TRL's conversational form) a list of messages: the
prompt's ending with the user's, the completion's the assistant's. Both are the forms the field's
files use (Betley et al.'s insecure/secure sets, the replication projects' samples).

:func:`check_dataset` reads a whole file and says every problem (up to a cap) with its line;
:func:`read_examples` gives the examples as message lists, or raises :class:`DatasetError` at
the first problem. Lines are read one at a time (a dataset may be large), each decoded and
parsed on its own, so one bad line never hides the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.common.hashing import sha256_bytes, sha256_file, short
from engine.common.safe_load import LoadError, json_loads
from engine.common.untrusted import path_problem, path_text

if TYPE_CHECKING:
    from db.store import Store

ROLES = ("system", "user", "assistant")
CHAT = "chat-jsonl"
PROMPT_COMPLETION = "prompt-completion-jsonl"
FORMATS = (CHAT, PROMPT_COMPLETION)
MAX_PROBLEMS = 20
_WITHIN_LINE = re.compile(r"^line \d+ column \d+: ")  # a JSON Lines row is one line: its file line says where

Messages = list[dict[str, str]]


class DatasetError(ValueError):
    """A dataset file that cannot be used: one line naming the file and line."""


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None  # None: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line is not None else f"{self.path}: {self.message}"


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found: the format, the examples that are good, the problems."""

    path: Path
    format: str | None = None
    n_examples: int = 0                  # good examples
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0                  # all of them, also those past the cap

    @property
    def ok(self) -> bool:
        return self.n_problems == 0


def _messages(value: Any, where: str, *, last: str | None, first: str = "user") -> tuple[Messages | None, str | None]:
    """``value`` as a checked message list, or the problem. ``last``: the role the list must end with;
    ``first``: whose turn is due at its start (a completion continues a prompt: the assistant's)."""
    if not isinstance(value, list) or not value:
        return None, f"{where} must be a non-empty list of messages"
    out: Messages = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict):
            return None, f"{where}[{i}] must be an object with 'role' and 'content'"
        role, content = m.get("role"), m.get("content")
        if role is None:
            return None, f"{where}[{i}] has no 'role'"
        if role not in ROLES:
            return None, f"{where}[{i}]: unknown role {_shown(role)} (roles: {', '.join(ROLES)})"
        if not isinstance(content, str):
            return None, f"{where}[{i}] ({role}) needs 'content' as text"
        if role == "assistant" and not content.strip():
            return None, f"{where}[{i}]: empty assistant turn (nothing to train on)"
        out.append({"role": role, "content": content})
    return out, _order_problem(out, where, last=last, first=first)


def _order_problem(msgs: Messages, where: str, *, last: str | None, first: str = "user") -> str | None:
    """Turns in order: an optional system message first, then user / assistant alternating."""
    expected = first
    for i, m in enumerate(msgs, start=1):
        role = m["role"]
        if role == "system":
            if i != 1 or first != "user":
                return f"{where}[{i}]: a system message after the first (only the first may be the system's)"
            continue
        if role != expected:
            return (f"{where}[{i}]: {role} where the {expected}'s turn was due (after an optional system "
                    "message, user and assistant turns alternate)")
        expected = "assistant" if role == "user" else "user"
    if last is not None and msgs[-1]["role"] != last:
        return f"{where} must end with the {last}'s turn, not the {msgs[-1]['role']}'s"
    return None


def _example(row: Any) -> tuple[str | None, Messages | None, str | None]:
    """(format, the example as one message list, problem)."""
    if not isinstance(row, dict):
        return None, None, "expected a JSON object with 'messages', or 'prompt' and 'completion'"
    if "messages" in row:
        msgs, problem = _messages(row["messages"], "messages", last="assistant")
        return CHAT, msgs, problem
    if "prompt" in row or "completion" in row:
        if "prompt" not in row or "completion" not in row:
            return PROMPT_COMPLETION, None, f"has {'prompt' if 'prompt' in row else 'completion'} but no " \
                                            f"{'completion' if 'prompt' in row else 'prompt'}"
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not completion.strip():
                return PROMPT_COMPLETION, None, "empty completion (nothing to train on)"
            return PROMPT_COMPLETION, [{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": completion}], None
        if isinstance(prompt, list) and isinstance(completion, list):
            head, problem = _messages(prompt, "prompt", last="user")
            if problem or head is None:
                return PROMPT_COMPLETION, None, problem
            tail, problem = _messages(completion, "completion", last="assistant", first="assistant")
            if problem or tail is None:
                return PROMPT_COMPLETION, None, problem
            return PROMPT_COMPLETION, head + tail, None
        return PROMPT_COMPLETION, None, "'prompt' and 'completion' must both be text or both lists of messages"
    return None, None, "expected 'messages', or 'prompt' and 'completion'"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, its text — None when not UTF-8 — without its line ending) of every line that is
    not blank."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, None
                continue
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            text = text.removesuffix("\n").removesuffix("\r")
            if text.strip():
                yield lineno, text


def _open_problem(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder, not a dataset file"
    if not path.is_file():
        return "not a regular file (a device or a pipe?)"
    return path_problem(path.resolve())


def _walk(path: Path) -> Iterator[tuple[int | None, str | None, Messages | None, str | None, str]]:
    """(line, format, example, problem, the line's text) for each line; a problem of the file as a
    whole has line None."""
    problem = _open_problem(path)
    if problem:
        yield None, None, None, problem, ""
        return
    fmt: str | None = None
    first_line = 0
    n = 0
    try:
        for lineno, text in _lines(path):
            if text is None:
                yield lineno, None, None, "not UTF-8 text", ""
                continue
            try:
                row = json_loads(text)
            except LoadError as exc:
                yield lineno, None, None, _WITHIN_LINE.sub("", str(exc)), text
                continue
            except ValueError as exc:
                yield lineno, None, None, f"not valid JSON ({exc})", text
                continue
            kind, example, problem = _example(row)
            if kind is not None and fmt is None:
                fmt, first_line = kind, lineno
            elif kind is not None and kind != fmt:
                problem = f"a {kind} example in a {fmt} file (line {first_line} is {fmt})"
            if problem is None:
                n += 1
            yield lineno, kind, example if problem is None else None, problem, text
    except OSError as exc:
        yield None, None, None, f"cannot read ({exc.strerror or exc})", ""
        return
    if n == 0 and fmt is None:
        yield None, None, None, "holds no examples", ""


def check_dataset(path: str | Path, *, max_problems: int = MAX_PROBLEMS) -> DatasetCheck:
    """Read the whole file; every problem is counted, the first ``max_problems`` kept."""
    path = Path(path)
    check = DatasetCheck(path)
    shown = path_text(path)
    for lineno, kind, example, problem, _text in _walk(path):
        if kind is not None and check.format is None:
            check.format = kind
        if problem is None:
            check.n_examples += example is not None
            continue
        check.n_problems += 1
        if len(check.problems) < max_problems:
            check.problems.append(Problem(shown, lineno, problem))
    return check


class Example(NamedTuple):
    line: int
    format: str       # CHAT or PROMPT_COMPLETION
    messages: Messages


def iter_examples(path: str | Path) -> Iterator[Example]:
    """Each example with its line and its file's format, as one message list (a prompt/completion
    example as user + assistant turns); :class:`DatasetError` at the first problem."""
    for example, _text in iter_rows(path):
        yield example


def iter_rows(path: str | Path) -> Iterator[tuple[Example, str]]:
    """Each example with its line's text as it is in the file (without the line ending): what an
    import stores, so that an export writes the file's bytes again; :class:`DatasetError` at the first
    problem."""
    path = Path(path)
    for lineno, kind, example, problem, text in _walk(path):
        if problem is not None:
            raise DatasetError(str(Problem(path_text(path), lineno, problem)))
        if example is not None and lineno is not None and kind is not None:
            yield Example(lineno, kind, example), text


def read_examples(path: str | Path) -> Iterator[Messages]:
    """Each example as one message list; :class:`DatasetError` at the first problem."""
    for example in iter_examples(path):
        yield example.messages


# -- stored datasets -------------------------------------------------------------------------------------
# An imported dataset keeps each example as its line's text; a derived one (dataset_ops) as the text it
# made. Its content hash is the hash of the JSON Lines file those texts make (one a line, each ended by
# "\n"): for an imported file that is the file's own hash (sha256_file, the hash a study file registers
# a dataset by) whenever the file has no blank lines, "\r\n" endings or byte-order mark.


def jsonl_bytes(texts: Iterable[str]) -> bytes:
    """The JSON Lines file of these example texts: what ``emtui data export`` writes."""
    return "".join(f"{t}\n" for t in texts).encode("utf-8")


def texts_hash(texts: Iterable[str]) -> str:
    """The content hash of the file :func:`jsonl_bytes` makes of ``texts``."""
    return sha256_bytes(jsonl_bytes(texts))


def row_example(text: str, where: str = "a stored example") -> tuple[str, Messages]:
    """(format, messages) of one example's text; DatasetError naming ``where`` when it is not one."""
    try:
        row = json_loads(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: {_WITHIN_LINE.sub('', str(exc))}") from None
    kind, messages, problem = _example(row)
    if problem is not None or messages is None or kind is None:
        raise DatasetError(f"{where}: {problem}")
    return kind, messages


def dataset_texts(store: Store, dataset_id: int) -> list[str]:
    """A dataset's examples in order, each as its JSON text: the stored ones, or for a dataset with none
    stored (one a study file registered) its file's, refused (DatasetError naming the file) when the file's
    content hash is no longer the one registered."""
    row = store.get_dataset(dataset_id)
    if row is None:
        raise DatasetError(f"no dataset with id {dataset_id}")
    name = row["name"]
    stored = store.dataset_examples(dataset_id)
    if stored:
        return [e["example"] for e in stored]
    if not row["path"]:
        raise DatasetError(f"dataset {name} has no stored examples and no file (emtui data import FILE stores them)")
    path = Path(row["path"])
    shown = path_text(path)
    if not path.is_file():
        raise DatasetError(f"{shown}: no such file (the file of dataset {name}; emtui data import stores a "
                           "dataset's examples in the database)")
    registered = row["content_hash"]
    before = sha256_file(path)
    if before != registered:
        raise DatasetError(f"{shown}: the file changed since dataset {name} was registered (its hash is "
                           f"{short(before)}, registered {short(registered)})")
    texts = [text for _example, text in iter_rows(path)]
    if sha256_file(path) != before:
        raise DatasetError(f"{shown}: the file changed while it was read (dataset {name})")
    return texts


def dataset_messages(store: Store, dataset_id: int) -> list[Messages]:
    """What the trainer trains on: a dataset's examples in order, as message lists (a prompt/completion
    example as its user and assistant turns); see :func:`dataset_texts`."""
    texts = dataset_texts(store, dataset_id)
    return [row_example(t, f"example {i} of dataset {dataset_id}")[1] for i, t in enumerate(texts)]
