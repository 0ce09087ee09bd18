"""Insertion sequence numbers and keyset (cursor) filters.

Rows are ordered by ``(created_at, seq, id)``. ``seq`` is a process-monotonic nanosecond
clock, so rows created within the same ``created_at`` keep their insertion order, and ``id``
makes the order total even if two processes ever draw the same ``seq``.

Keyset pages compare the row value ``(created_at, seq, id)`` with the cursor row's, in one
statement: the database walks the ``(parent, created_at, seq, id)`` index from the cursor,
so a page deep in a long thread costs what the first page costs. Django has no public
row-value expression, so this builds the comparison as SQL; SQLite (3.15+) and PostgreSQL
both support row values.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import models
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


def keyset_page(
    queryset: models.QuerySet,
    *,
    after: str | None,
    order: str,
    scope: dict[str, object],
) -> models.QuerySet:
    """Order ``queryset`` for paging and, with a cursor, keep only rows past it.

    ``after`` is the primary key of the last row of the previous page; it is looked up
    among rows matching ``scope`` (the same parent), in a subquery of the same statement.
    A cursor that names no such row yields an empty page.
    """
    descending = order == "desc"
    fields = ROW_ORDER
    queryset = queryset.order_by(*(f"-{f}" if descending else f for f in fields))
    if after is None:
        return queryset
    if "\x00" in after:  # PostgreSQL rejects NUL in text; no id has one (see nul.py)
        return queryset.none()
    model = queryset.model
    table = model._meta.db_table
    cursor_rows = model._base_manager.filter(pk=after, **scope).values(*fields)
    sub_sql, sub_params = cursor_rows.query.sql_with_params()
    from django.db import connections

    qn = connections[queryset.db].ops.quote_name
    columns = ", ".join(f"{qn(table)}.{qn(model._meta.get_field(f).column)}" for f in fields)
    op = "<" if descending else ">"
    condition = RawSQL(
        f"({columns}) {op} ({sub_sql})", sub_params, output_field=models.BooleanField()
    )
    return queryset.filter(condition)
