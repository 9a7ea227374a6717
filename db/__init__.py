"""emtui's SQLite store. Owns the schema and every query; imports neither textual nor torch."""

from db.schema import MIGRATIONS, SCHEMA_VERSION
from db.store import Page, Store, StoreError, dumps, open_store, utc_now

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Page", "Store", "StoreError", "dumps", "open_store", "utc_now"]
