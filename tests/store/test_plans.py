"""The two listings walk their index: no sort step, no scan of the whole table.

The plans are read from the database itself (``QuerySet.explain()``) for the very querysets
``DjangoStore`` builds, so dropping or reordering an index column fails here. On PostgreSQL,
sequential scans and sorts are discouraged for the session: the test tables are tiny, where a
planner rightly prefers a scan and a sort, and the question is whether the index *can* serve
the query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from chatkit_django import models
from chatkit_django._internal.ordering import ROW_ORDER, keyset_page, next_seq
from chatkit_django.store import DjangoStore

pytestmark = pytest.mark.django_db
from tests.db import assert_index_walk


@pytest.fixture
def rows(user_factory: Any) -> dict[str, Any]:
    user = user_factory()
    now = timezone.make_aware(datetime(2026, 5, 1, 12, 0))
    thread = models.Thread.objects.create(
        id="thr_plan", owner=user, created_at=now, seq=next_seq(), data={}
    )
    for i in range(3):
        models.ThreadItem.objects.create(
            id=f"msg_{i}",
            thread=thread,
            type="user_message",
            created_at=now,
            seq=next_seq(),
            data={},
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Penalties, not bans: a sort or a scan still appears if no index can avoid it.
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_sort = off")
    return {"user": user, "thread": thread}


def plan(queryset: Any) -> str:
    return queryset.explain()


def position(model: Any, pk: str) -> Any:
    return model.objects.values_list(*ROW_ORDER).get(pk=pk)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("after", [None, "msg_1"])
def test_items_page_walks_the_thread_index(rows: dict[str, Any], order: str, after: Any) -> None:
    thread = rows["thread"]
    queryset = keyset_page(
        models.ThreadItem.objects.filter(thread_id=thread.id),
        after=after and position(models.ThreadItem, after),
        order=order,
    ).values_list("data", *ROW_ORDER)[:21]
    expected = {
        (None, "asc"): ["msg_0", "msg_1", "msg_2"],
        (None, "desc"): ["msg_2", "msg_1", "msg_0"],
        ("msg_1", "asc"): ["msg_2"],
        ("msg_1", "desc"): ["msg_0"],
    }
    assert [r[-1] for r in queryset] == expected[after, order]
    assert_index_walk(plan(queryset), "chatkit_item_thread_order")


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("after", [None, "thr_plan"])
def test_threads_page_walks_the_owner_index(rows: dict[str, Any], order: str, after: Any) -> None:
    user = rows["user"]
    # The queryset the store lists threads with: only threads that hold an item.
    queryset = keyset_page(
        DjangoStore().listed_threads(user),
        after=after and position(models.Thread, after),
        order=order,
    ).values_list("data", *ROW_ORDER)[:21]
    assert len(list(queryset)) == (0 if after else 1)
    text = plan(queryset)
    assert_index_walk(text, "chatkit_thread_owner_order")
    # Whether a thread has items is answered by the items' index, not a scan.
    assert "chatkit_item_thread_order" in text, text
