"""``DjangoStore.save_partial_item``: the message in progress, replaced by its final version.

``ON_DISCONNECT = "finish"`` saves an answer while it runs; the SDK later adds the final
item with the same id (or its cancellation handling adds the copy it kept). Adding replaces
a partial copy, and a partial save never replaces a final item, in whichever order they come.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatkit_django.context import ChatKitContext
from chatkit_django.models import ThreadItem
from chatkit_django.store import PARTIAL_KEY, DjangoStore
from tests.db import assert_queries
from tests.factories import make_assistant_message, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def setup(auser_factory: Any) -> tuple[DjangoStore, ChatKitContext, str]:
    store, ctx = DjangoStore(), ChatKitContext(user=await auser_factory())
    thread = make_thread()
    await store.save_thread(thread, ctx)
    return store, ctx, thread.id


async def stored(item_id: str) -> dict[str, Any]:
    return (await ThreadItem.objects.aget(pk=item_id)).data


async def test_the_final_item_replaces_the_partial_copies(setup: Any, caplog: Any) -> None:
    store, ctx, thread_id = setup
    partial = make_assistant_message(thread_id, "Once upon")
    # First save: the thread touched, no partial copy to update, the insert. Later saves:
    # touched, updated.
    async with assert_queries(3):
        await store.save_partial_item(thread_id, partial, ctx)
    more = partial.model_copy(update={"content": [partial.content[0].model_copy()]})
    more.content[0].text = "Once upon a time"
    async with assert_queries(2):
        await store.save_partial_item(thread_id, more, ctx)
    data = await stored(partial.id)
    assert data[PARTIAL_KEY] is True
    assert data["content"][0]["text"] == "Once upon a time"
    # A reload shows the text so far; the mark is not part of the SDK's item.
    loaded = await store.load_item(thread_id, partial.id, ctx)
    assert loaded.content[0].text == "Once upon a time"
    assert PARTIAL_KEY not in loaded.model_dump()

    final = make_assistant_message(thread_id, "Once upon a time, the end.", id=partial.id)
    with caplog.at_level(logging.WARNING, logger="chatkit_django.store"):
        await store.add_thread_item(thread_id, final, ctx)
    assert not caplog.records  # a partial copy is replaced quietly
    data = await stored(partial.id)
    assert PARTIAL_KEY not in data
    assert data["content"][0]["text"] == "Once upon a time, the end."
    assert await ThreadItem.objects.filter(thread_id=thread_id).acount() == 1


async def test_a_partial_save_after_the_final_item_changes_nothing(setup: Any) -> None:
    store, ctx, thread_id = setup
    final = make_assistant_message(thread_id, "The whole answer.")
    await store.add_thread_item(thread_id, final, ctx)
    late = make_assistant_message(thread_id, "The whole", id=final.id)
    await store.save_partial_item(thread_id, late, ctx)
    data = await stored(final.id)
    assert PARTIAL_KEY not in data
    assert data["content"][0]["text"] == "The whole answer."
