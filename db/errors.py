"""Errors of the store, importable without loading SQLite helpers."""


class StoreError(Exception):
    """A problem with the database a person can act on (bad path, newer schema, ...)."""
