"""Deleting a thread: what goes with it, and the ``thread_deleted`` signal."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from chatkit.types import FileAttachment
from django.db import transaction

from chatkit_django import models
from chatkit_django.context import ChatKitContext
from chatkit_django.deletion import delete_threads
from chatkit_django.signals import thread_deleted
from chatkit_django.store import DjangoStore
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)


async def test_delete_thread_takes_items_feedback_and_attachments(auser_factory: Any) -> None:
    user = await auser_factory()
    ctx = ChatKitContext(user=user)
    store = DjangoStore()
    doomed, kept = make_thread(), make_thread()
    for thread in (doomed, kept):
        await store.save_thread(thread, ctx)
        item = make_user_message(thread.id)
        await store.add_thread_item(thread.id, item, ctx)
        await models.Feedback.objects.acreate(
            thread_id=thread.id, item_id=item.id, user=user, kind="positive"
        )
        await store.save_attachment(
            FileAttachment(
                id=f"atc_{thread.id}", name="a", mime_type="text/plain", thread_id=thread.id
            ),
            ctx,
        )
    await store.save_attachment(FileAttachment(id="atc_loose", name="a", mime_type="x/y"), ctx)

    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    thread_deleted.connect(receiver)
    try:
        await store.delete_thread(doomed.id, ctx)
    finally:
        thread_deleted.disconnect(receiver)

    assert [(r["sender"], r["thread_id"], r["user"]) for r in received] == [
        (models.Thread, doomed.id, user)
    ]
    assert [t async for t in models.Thread.objects.values_list("id", flat=True)] == [kept.id]
    for model in (models.ThreadItem, models.Feedback):
        assert {r async for r in model.objects.values_list("thread_id", flat=True)} == {kept.id}
    assert {a async for a in models.Attachment.objects.values_list("id", flat=True)} == {
        f"atc_{kept.id}",
        "atc_loose",
    }


async def test_denied_delete_sends_nothing(auser_factory: Any) -> None:
    store = DjangoStore()
    owner = ChatKitContext(user=await auser_factory())
    thread = make_thread()
    await store.save_thread(thread, owner)
    received: list[Any] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    thread_deleted.connect(receiver)
    try:
        with pytest.raises(Exception, match="not found"):
            await store.delete_thread(thread.id, ChatKitContext(user=await auser_factory()))
    finally:
        thread_deleted.disconnect(receiver)
    assert received == []
    assert await models.Thread.objects.aexists()


class Rollback(Exception):
    pass


def test_a_rolled_back_delete_is_never_announced(user_factory: Any) -> None:
    """``thread_deleted`` goes out on commit: not for a rollback, not inside the transaction."""
    user = user_factory()
    ctx = ChatKitContext(user=user)
    store = DjangoStore()
    by_store, by_batch = make_thread(), make_thread()
    for thread in (by_store, by_batch):
        async_to_sync(store.save_thread)(thread, ctx)
    received: list[str] = []

    def receiver(thread_id: str, **kwargs: Any) -> None:
        received.append(thread_id)

    thread_deleted.connect(receiver)
    try:
        with pytest.raises(Rollback), transaction.atomic():
            async_to_sync(store.delete_thread)(by_store.id, ctx)
            delete_threads([by_batch.id], user=user)
            assert not models.Thread.objects.exists()  # deleted inside the transaction
            raise Rollback
        assert received == []
        assert models.Thread.objects.count() == 2

        with transaction.atomic():
            async_to_sync(store.delete_thread)(by_store.id, ctx)
            delete_threads([by_batch.id], user=user)
            assert received == []  # not before the commit
        assert received == [by_store.id, by_batch.id]
    finally:
        thread_deleted.disconnect(receiver)


async def test_async_receivers_still_hear_deletes(auser_factory: Any) -> None:
    ctx = ChatKitContext(user=await auser_factory())
    store = DjangoStore()
    thread = make_thread()
    await store.save_thread(thread, ctx)
    received: list[str] = []

    async def receiver(thread_id: str, **kwargs: Any) -> None:
        received.append(thread_id)

    thread_deleted.connect(receiver)
    try:
        await store.delete_thread(thread.id, ctx)
    finally:
        thread_deleted.disconnect(receiver)
    assert received == [thread.id]
