"""Page cursors that carry the position of the last row, signed.

A cursor used to be the id of the last row of a page, looked up again for the next page:
once that row was deleted, the listing ended early with an empty page. A cursor now holds
the row's ``(created_at, seq, id)`` itself, signed with ``SECRET_KEY`` (``django.core.signing``,
so ``SECRET_KEY_FALLBACKS`` keep older cursors valid through a key rotation): the next page
starts after that position whether or not the row is still there, and a client cannot make
up a position of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing

from chatkit_django._internal.ordering import Position, ordering_datetime

SALT = "chatkit_django.cursor"
MAX_CURSOR_CHARS = 1024  # far more than a signed position takes; anything longer is not one


def _signer(kind: str) -> signing.Signer:
    # One salt per listing: a thread cursor is no item cursor.
    return signing.Signer(salt=f"{SALT}.{kind}")


def encode_cursor(kind: str, position: Position) -> str:
    created_at, seq, pk = position
    return _signer(kind).sign_object([created_at.isoformat(), seq, pk])


def decode_cursor(kind: str, cursor: str) -> Position | None:
    """The position ``cursor`` carries, or ``None`` if it is not a cursor we signed."""
    if len(cursor) > MAX_CURSOR_CHARS:
        return None
    try:
        value: Any = _signer(kind).unsign_object(cursor)
        created_at, seq, pk = value
        if not (isinstance(seq, int) and isinstance(pk, str) and isinstance(created_at, str)):
            return None
        return ordering_datetime(datetime.fromisoformat(created_at)), seq, pk
    except (signing.BadSignature, ValueError, TypeError):
        return None
