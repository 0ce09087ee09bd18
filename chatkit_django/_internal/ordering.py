"""Insertion sequence numbers and keyset (cursor) filters.

Rows are ordered by ``(created_at, seq, id)``. ``seq`` is a process-monotonic nanosecond
clock, so rows created within the same ``created_at`` keep their insertion order, and ``id``
makes the order total even if two processes ever draw the same ``seq``.

Keyset pages compare the row value ``(created_at, seq, id)`` with the position a cursor
carries (``cursors.py``): the database walks the ``(parent, created_at, seq, id)`` index
from there, so a page deep in a long thread costs what the first page costs. Django has no
public row-value expression, so this builds the comparison as SQL; SQLite (3.15+) and
PostgreSQL both support row values.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections, models
from django.db.models.expressions import RawSQL
from django.utils import timezone

#: The order of threads and items everywhere: pages, the admin transcript, exports.
ROW_ORDER = ("created_at", "seq", "id")

_lock = threading.Lock()
_last = 0


def next_seq() -> int:
    """Return a strictly increasing (per process) insertion sequence number."""
    global _last
    with _lock:
        now = time.time_ns()
        _last = now if now > _last else _last + 1
        return _last


def ordering_datetime(value: datetime) -> datetime:
    """The column value for a model datetime: aware under USE_TZ, naive otherwise.

    The SDK stamps items with naive ``datetime.now()``, which is local time in Django's
    ``TIME_ZONE`` (Django sets the process time zone from it), so that is the zone we
    make naive values aware in. The JSON copy keeps the value exactly as given.
    """
    if settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    if not settings.USE_TZ and timezone.is_aware(value):
        return timezone.make_naive(value, timezone.get_default_timezone())
    return value


ModelT = TypeVar("ModelT", bound=models.Model)

Position = tuple[datetime, int, str]
"""Where a row sits in the order: its ``(created_at, seq, id)``, the ``ROW_ORDER`` fields."""


def keyset_page(
    queryset: models.QuerySet[ModelT],
    *,
    after: Position | None,
    order: str,
) -> models.QuerySet[ModelT]:
    """Order ``queryset`` for paging and, with a position, keep only rows past it.

    ``after`` is the position of the last row of the previous page, carried by the cursor
    itself: the row need not exist any more, so deleting it does not end the listing.
    """
    descending = order == "desc"
    queryset = queryset.order_by(*(f"-{f}" if descending else f for f in ROW_ORDER))
    if after is None:
        return queryset
    model = queryset.model
    connection = connections[queryset.db]
    qn = connection.ops.quote_name
    # Concrete fields (the stubs' get_field() also returns relations, without a column).
    fields: list[Any] = [model._meta.get_field(f) for f in ROW_ORDER]
    columns = ", ".join(f"{qn(model._meta.db_table)}.{qn(f.column)}" for f in fields)
    # The values as the ORM would send them (SQLite stores datetimes as UTC text).
    params = [f.get_db_prep_value(v, connection) for f, v in zip(fields, after, strict=True)]
    op = "<" if descending else ">"
    condition = RawSQL(f"({columns}) {op} (%s, %s, %s)", params, output_field=models.BooleanField())
    return queryset.filter(condition)
