"""Queries per ``DjangoStore`` call: a small constant, whatever the page size.

The async ORM runs queries on asgiref's sync worker thread, whose connection is not the
test thread's, so queries are captured there (``capture_queries``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from chatkit.types import FileAttachment
from django.contrib.auth.models import Permission

from chatkit_django import models
from chatkit_django._internal.ordering import next_seq
from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore, dump
from tests.db import assert_queries, capture_queries
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 5, 1, 12, 0, 0)


@pytest.fixture
def store() -> DjangoStore:
    return DjangoStore()


@pytest.fixture
async def ctx(auser_factory: Any) -> ChatKitContext:
    return ChatKitContext(user=await auser_factory())


@pytest.fixture
async def big_thread(store: DjangoStore, ctx: ChatKitContext) -> Any:
    """A thread with 250 items, inserted in bulk (the store is not under test here)."""
    thread = make_thread(created_at=T0)
    await store.save_thread(thread, ctx)
    rows = []
    for i in range(250):
        item = make_user_message(thread.id, f"m{i}", created_at=T0 + timedelta(seconds=i))
        rows.append(
            models.ThreadItem(
                id=item.id,
                thread_id=thread.id,
                type=item.type,
                created_at=T0.replace(tzinfo=models_tz()) + timedelta(seconds=i),
                seq=next_seq(),
                data=dump(item),
            )
        )
    await models.ThreadItem.objects.abulk_create(rows)
    return thread


def models_tz() -> Any:
    from django.utils import timezone

    return timezone.get_default_timezone()


@pytest.mark.parametrize("limit", [1, 100])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_load_thread_items(
    store: DjangoStore, ctx: ChatKitContext, big_thread: Any, limit: int, order: str
) -> None:
    async with assert_queries(2):
        first = await store.load_thread_items(big_thread.id, None, limit, order, ctx)
    async with assert_queries(2):
        second = await store.load_thread_items(big_thread.id, first.after, limit, order, ctx)
    assert len(first.data) == len(second.data) == limit


@pytest.mark.parametrize("limit", [1, 100])
async def test_load_threads(store: DjangoStore, ctx: ChatKitContext, limit: int) -> None:
    threads = [
        models.Thread(
            id=f"thr_{i}",
            owner=ctx.user,
            created_at=T0.replace(tzinfo=models_tz()),
            seq=next_seq(),
            data=dump(make_thread(f"thr_{i}", created_at=T0)),
        )
        for i in range(250)
    ]
    await models.Thread.objects.abulk_create(threads)
    # Only threads that hold an item are listed; the check is part of the one query.
    await models.ThreadItem.objects.abulk_create(
        models.ThreadItem(
            id=f"msg_{t.id}_{n}",
            thread=t,
            type="user_message",
            created_at=t.created_at,
            seq=next_seq(),
            data={},
        )
        for t in threads
        for n in range(2)
    )
    async with assert_queries(1):
        first = await store.load_threads(limit, None, "desc", ctx)
    async with assert_queries(1):
        second = await store.load_threads(limit, first.after, "desc", ctx)
    assert len(first.data) == len(second.data) == limit


async def test_single_loads(store: DjangoStore, ctx: ChatKitContext, big_thread: Any) -> None:
    attachment = FileAttachment(id="atc_q", name="a", mime_type="text/plain")
    await store.save_attachment(attachment, ctx)
    item_id = await models.ThreadItem.objects.values_list("id", flat=True).afirst()
    async with assert_queries(1):
        await store.load_thread(big_thread.id, ctx)
    async with assert_queries(1):
        await store.load_item(big_thread.id, item_id, ctx)
    async with assert_queries(1):
        await store.load_attachment(attachment.id, ctx)


async def test_writes(store: DjangoStore, ctx: ChatKitContext, big_thread: Any) -> None:
    thread = make_thread(created_at=T0)
    async with assert_queries(2):
        await store.save_thread(thread, ctx)  # UPDATE finds nothing, INSERT
    async with assert_queries(1):
        await store.save_thread(thread.model_copy(update={"title": "t"}), ctx)
    # threads.create: the SDK saves a thread under an id the store just generated, which
    # cannot exist yet: INSERT only.
    created = make_thread(created_at=T0).model_copy(update={"id": store.generate_thread_id(ctx)})
    async with assert_queries(1):
        await store.save_thread(created, ctx)
    async with assert_queries(1):  # saved again: an UPDATE, as for any stored thread
        await store.save_thread(created.model_copy(update={"title": "t"}), ctx)
    item = make_user_message(big_thread.id)
    async with assert_queries(2):
        await store.add_thread_item(big_thread.id, item, ctx)  # touch thread, INSERT
    async with assert_queries(2):
        await store.save_item(big_thread.id, item, ctx)  # touch thread, UPDATE
    async with assert_queries(4):  # touch thread, then the ORM's cascade: item, feedback, item
        await store.delete_thread_item(big_thread.id, item.id, ctx)
    attachment = FileAttachment(id="atc_w", name="a", mime_type="text/plain")
    async with assert_queries(2):
        await store.save_attachment(attachment, ctx)
    async with assert_queries(1):
        await store.save_attachment(attachment, ctx)
    async with assert_queries(3):  # access check, then the ORM loads the row for post_delete
        await store.delete_attachment(attachment.id, ctx)


async def test_a_generated_id_saved_meanwhile_is_updated_not_lost(
    store: DjangoStore, ctx: ChatKitContext
) -> None:
    # The INSERT-only save of a generated id falls back to the usual path when the id is
    # taken after all (a retried request, a subclass saving it first).
    thread = make_thread(created_at=T0).model_copy(update={"id": store.generate_thread_id(ctx)})
    await models.Thread.objects.acreate(
        id=thread.id,
        owner=ctx.user,
        created_at=T0.replace(tzinfo=models_tz()),
        seq=next_seq(),
        data={},
    )
    await store.save_thread(thread.model_copy(update={"title": "kept"}), ctx)
    row = await models.Thread.objects.aget(pk=thread.id)
    assert row.title == "kept"
    assert (await store.load_thread(thread.id, ctx)).title == "kept"


async def test_delete_thread_is_constant(
    store: DjangoStore, ctx: ChatKitContext, big_thread: Any
) -> None:
    small = make_thread()
    await store.save_thread(small, ctx)
    await store.add_thread_item(small.id, make_user_message(small.id), ctx)
    async with capture_queries() as for_small:
        await store.delete_thread(small.id, ctx)
    async with capture_queries() as for_big:
        await store.delete_thread(big_thread.id, ctx)
    # Access check, feedback, items, then the thread (and its attachments) through the ORM.
    assert len(for_small) == len(for_big) <= 10, str(for_big)
    assert not await models.ThreadItem.objects.aexists()


async def test_non_owner_with_permission_is_constant_too(
    store: DjangoStore, auser_factory: Any, big_thread: Any
) -> None:
    viewer = await auser_factory()
    await viewer.user_permissions.aadd(await Permission.objects.aget(codename="view_thread"))
    vctx = ChatKitContext(user=viewer)
    # The first check loads the user's permissions (2 queries) and caches them on the user.
    async with assert_queries(4):
        page = await store.load_thread_items(big_thread.id, None, 100, "asc", vctx)
    async with assert_queries(2):
        await store.load_thread_items(big_thread.id, page.after, 1, "asc", vctx)
