"""emtui's SQLite store. Owns the schema and every query; imports neither textual nor torch.

Names are loaded on first use so that ``emtui --help`` does not pay for sqlite-utils.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db.errors import StoreError
from db.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from db.store import Page, Store, dumps, open_store, utc_now

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Page", "Store", "StoreError", "dumps", "open_store", "utc_now"]


def __getattr__(name: str) -> Any:
    if name in ("Page", "Store", "dumps", "open_store", "utc_now"):
        from db import store

        return getattr(store, name)
    raise AttributeError(f"module 'db' has no attribute {name!r}")
