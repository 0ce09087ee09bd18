"""Scopes cost nothing extra: the same queries, an index walk, and the tools around them.

The scoped ``threads.list`` walks ``chatkit_thread_scope_order`` without a sort (read from
the database's own plan, as ``tests/store/test_plans.py`` does); every store call makes as
many queries in a scope as unscoped. The admin filters by scope, ``chatkit_export_user``
exports one scope, and the widget and the example project pass the scope along.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from chatkit.types import FileAttachment
from django.core.management import call_command
from django.db import connection
from django.template import TemplateSyntaxError
from django.test import Client
from django.utils import timezone

from chatkit_django import models
from chatkit_django._internal.ordering import ROW_ORDER, keyset_page, next_seq
from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.context import SCOPE_HEADER, ChatKitContext
from chatkit_django.store import DjangoStore
from tests.chatkit_client import config_of, render
from tests.db import assert_index_walk, capture_queries
from tests.factories import make_thread, make_user_message

T0 = datetime(2026, 5, 1, 12, 0, 0)


# -- the plan ------------------------------------------------------------------------


@pytest.fixture
def scoped_rows(user_factory: Any) -> Any:
    user = user_factory()
    now = timezone.make_aware(datetime(2026, 5, 1, 12, 0))
    for n, scope in enumerate(["sales", "support", "sales", ""]):
        thread = models.Thread.objects.create(
            id=f"thr_{n}", owner=user, scope=scope, created_at=now, seq=next_seq(), data={}
        )
        models.ThreadItem.objects.create(
            id=f"msg_{n}", thread=thread, type="user_message", created_at=now, seq=next_seq(),
            data={},
        )  # fmt: skip
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_sort = off")
    return user


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("after", [None, "thr_0"])
def test_a_scoped_threads_page_walks_the_scope_index(
    scoped_rows: Any, order: str, after: Any
) -> None:
    position = after and models.Thread.objects.values_list(*ROW_ORDER).get(pk=after)
    queryset = keyset_page(
        DjangoStore().listed_threads(scoped_rows, "sales"), after=position, order=order
    ).values_list("data", *ROW_ORDER)[:21]
    expected = {
        (None, "asc"): ["thr_0", "thr_2"],
        (None, "desc"): ["thr_2", "thr_0"],
        ("thr_0", "asc"): ["thr_2"],
        ("thr_0", "desc"): [],
    }
    assert [r[-1] for r in queryset] == expected[after, order]
    text = queryset.explain()
    assert_index_walk(text, "chatkit_thread_scope_order")
    assert "chatkit_item_thread_order" in text, text


# -- query counts --------------------------------------------------------------------


async def count(call: Any) -> int:
    async with capture_queries() as captured:
        await call()
    return len(captured)


@pytest.mark.django_db(transaction=True)
async def test_a_scope_adds_no_query(auser_factory: Any) -> None:
    user = await auser_factory()
    store = DjangoStore()
    counts: dict[str | None, list[int]] = {}
    for scope in ("sales", None):
        ctx = ChatKitContext(user=user, scope=scope)
        thread = make_thread(created_at=T0)
        item = make_user_message(thread.id)
        attachment = FileAttachment(id=f"atc_{scope}", name="a", mime_type="text/plain")
        for n in range(30):  # pages of 1 and of 30 cost the same
            other = make_thread(created_at=T0 + timedelta(seconds=n))
            await store.save_thread(other, ctx)
            await store.add_thread_item(other.id, make_user_message(other.id), ctx)
        counts[scope] = [
            await count(lambda: store.save_thread(thread, ctx)),  # noqa: B023
            await count(lambda: store.add_thread_item(thread.id, item, ctx)),  # noqa: B023
            await count(lambda: store.load_thread(thread.id, ctx)),  # noqa: B023
            await count(lambda: store.load_item(thread.id, item.id, ctx)),  # noqa: B023
            await count(lambda: store.load_thread_items(thread.id, None, 20, "asc", ctx)),  # noqa: B023
            await count(lambda: store.load_threads(1, None, "desc", ctx)),  # noqa: B023
            await count(lambda: store.load_threads(30, None, "desc", ctx)),  # noqa: B023
            await count(lambda: store.save_attachment(attachment, ctx)),  # noqa: B023
            await count(lambda: store.load_attachments([attachment.id], ctx)),  # noqa: B023
            await count(lambda: store.delete_thread(thread.id, ctx)),  # noqa: B023
        ]
    assert counts["sales"] == counts[None], counts
    assert counts["sales"][5] == counts["sales"][6] == 1


# -- admin, export ---------------------------------------------------------------------


@pytest.fixture
def two_scopes(user_factory: Any) -> Any:
    alice = user_factory(username="alice", is_staff=True, is_superuser=True)
    now = timezone.now()
    for scope, title in (("support", "Printer on fire"), ("sales", "Volume discount")):
        thread = models.Thread.objects.create(
            id=f"thr_{scope}", owner=alice, scope=scope, title=title, created_at=now,
            seq=next_seq(), data=make_thread(f"thr_{scope}", title=title).model_dump(mode="json"),
        )  # fmt: skip
        models.Attachment.objects.create(
            id=f"atc_{scope}", owner=alice, thread=thread, scope=scope, name=f"{scope}.txt",
            mime_type="text/plain", type="file", data={"id": f"atc_{scope}"},
        )  # fmt: skip
    return alice


@pytest.mark.django_db
def test_the_admin_filters_threads_and_attachments_by_scope(two_scopes: Any) -> None:
    client = Client()
    client.force_login(two_scopes)
    page = client.get("/admin/chatkit_django/thread/?scope=sales").content.decode()
    assert "Volume discount" in page
    assert "Printer on fire" not in page
    all_threads = client.get("/admin/chatkit_django/thread/").content.decode()
    assert "?scope=support" in all_threads  # the filter offers each scope
    files = client.get("/admin/chatkit_django/attachment/?scope=support").content.decode()
    assert "support.txt" in files
    assert "sales.txt" not in files


@pytest.mark.django_db
def test_export_user_of_one_scope(two_scopes: Any) -> None:
    out = StringIO()
    call_command("chatkit_export_user", "alice", "--scope", "sales", stdout=out)
    document = json.loads(out.getvalue())
    assert document["scope"] == "sales"
    assert [t["id"] for t in document["threads"]] == ["thr_sales"]
    assert document["attachments"] == [{"id": "atc_sales"}]

    out = StringIO()
    call_command("chatkit_export_user", "alice", "--format", "markdown", stdout=out)
    text = out.getvalue()
    assert "- Scope: `sales`" in text
    assert "- Scope: `support`" in text


# -- widget and example --------------------------------------------------------------


def test_the_widget_sends_the_scope_header() -> None:
    config = config_of(render("{% chatkit_widget scope='sales' %}"))
    assert config["headers"] == {SCOPE_HEADER: "sales"}
    assert config_of(render("{% chatkit_widget %}"))["headers"] == {}
    with pytest.raises(TemplateSyntaxError, match="printable ASCII"):
        render("{% chatkit_widget scope=bad %}", bad="sal\nes")


@pytest.mark.django_db
def test_the_example_page_talks_to_one_agent_at_a_time(user_factory: Any, settings: Any) -> None:
    settings.ROOT_URLCONF = "example_project.urls"
    client = Client()
    client.force_login(user_factory())
    for query, agent in (("?agent=sales", "sales"), ("", "support"), ("?agent=nope", "support")):
        config = config_of(client.get("/" + query).content.decode())
        assert config["headers"] == {SCOPE_HEADER: agent}


@pytest.mark.django_db
def test_a_generated_file_takes_its_threads_scope(two_scopes: Any) -> None:
    # A generated image of an unscoped context (a task) goes where its thread is.
    store = DjangoAttachmentStore()
    unscoped = ChatKitContext(user=two_scopes)
    assert store.new_scope(unscoped, "thr_sales") == "sales"
    assert store.new_scope(unscoped, None) == ""
    assert store.new_scope(ChatKitContext(user=two_scopes, scope="support"), "thr_sales") == (
        "support"  # a scoped context never reaches another scope's thread in the first place
    )
