"""``threads.list`` shows no blank threads: a thread is listed once it holds an item.

The SDK saves a new thread before its first message; if that message is never stored, the
thread must not show up in the user's history as a conversation they never had.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_thread_without_items_is_not_listed(auser_factory: Any) -> None:
    store = DjangoStore()
    ctx = ChatKitContext(user=await auser_factory())
    empty = make_thread()
    started = make_thread()
    for thread in (empty, started):
        await store.save_thread(thread, ctx)
    await store.add_thread_item(started.id, make_user_message(started.id), ctx)

    page = await store.load_threads(10, None, "desc", ctx)
    assert [t.id for t in page.data] == [started.id]
    assert page.has_more is False
    # Still there for whoever knows its id (the stream that is about to add its message).
    assert (await store.load_thread(empty.id, ctx)).id == empty.id

    await store.add_thread_item(empty.id, make_user_message(empty.id), ctx)
    page = await store.load_threads(10, None, "asc", ctx)
    assert sorted(t.id for t in page.data) == sorted([empty.id, started.id])


async def test_pages_skip_blank_threads(auser_factory: Any) -> None:
    store = DjangoStore()
    ctx = ChatKitContext(user=await auser_factory())
    listed = []
    for i in range(6):
        thread = make_thread()
        await store.save_thread(thread, ctx)
        if i % 2:
            await store.add_thread_item(thread.id, make_user_message(thread.id), ctx)
            listed.append(thread.id)
    first = await store.load_threads(2, None, "asc", ctx)
    second = await store.load_threads(2, first.after, "asc", ctx)
    assert [t.id for t in first.data + second.data] == listed
    assert (first.has_more, second.has_more) == (True, False)
