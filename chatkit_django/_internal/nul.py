"""U+0000 (NUL), which PostgreSQL cannot store in text or ``jsonb`` columns.

Without care, a NUL pasted into a message, or sent in an id, makes PostgreSQL raise
``DataError``: a 500 for what is merely odd input. Ids with a NUL name nothing (the store
treats them as not found), and NULs are dropped from what is saved. ChatKit text has no use
for them, and dropping them on every database keeps SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

NUL = "\x00"

M = TypeVar("M", bound=BaseModel)


def has_nul(*values: str | None) -> bool:
    return any(value is not None and NUL in value for value in values)


def names_nothing(*keys: str) -> bool:
    """Whether any of ``keys`` is a key no row can have (a NUL, or longer than our
    255-character id columns): answer "not found" without asking the database, which may
    refuse it. Every id a client sends goes through here before it reaches a query."""
    return any(NUL in key or len(key) > 255 for key in keys)


def _strip(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (value.replace(NUL, ""), True) if NUL in value else (value, False)
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            key, key_changed = _strip(key)
            item, item_changed = _strip(item)
            out[key] = item
            changed = changed or key_changed or item_changed
        return (out, True) if changed else (value, False)
    if isinstance(value, list):
        pairs = [_strip(item) for item in value]
        if any(changed for _, changed in pairs):
            return [item for item, _ in pairs], True
        return value, False
    return value, False


def without_nul(model: M) -> M:
    """``model`` itself, or a copy without NUL characters if it had any."""
    data, changed = _strip(model.model_dump(mode="json", by_alias=True))
    return type(model).model_validate(data) if changed else model
