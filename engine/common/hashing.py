"""Content hashes: how every stored input (study file, dataset, rubric, settings) is identified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def json_hash(value: Any) -> str:
    """Hash of a JSON-able value, independent of key order."""
    return sha256_text(json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def short(digest: str, n: int = 12) -> str:
    """The first ``n`` hex digits, for display."""
    return digest.split(":", 1)[-1][:n]
