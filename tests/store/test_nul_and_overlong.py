"""Input PostgreSQL would refuse (NUL characters, over-long column values) is no crash."""

from __future__ import annotations

from typing import Any

import pytest
from chatkit.types import FileAttachment, ThreadMetadata

from chatkit_django import models
from chatkit_django._internal.nul import without_nul
from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore
from tests import sdk_items
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)


async def test_nul_in_text_is_dropped_not_a_crash(auser_factory: Any) -> None:
    store = DjangoStore()
    ctx = ChatKitContext(user=await auser_factory())
    thread = ThreadMetadata(
        id="thr_nul", title="ti\x00tle", created_at=sdk_items.NAIVE, metadata={"k\x00": "v\x00"}
    )
    await store.save_thread(thread, ctx)
    item = make_user_message(thread.id, "pasted \x00 text")
    await store.add_thread_item(thread.id, item, ctx)
    await store.save_item(thread.id, item, ctx)
    attachment = FileAttachment(id="atc_nul", name="a\x00.txt", mime_type="text/plain")
    await store.save_attachment(attachment, ctx)

    loaded = await store.load_thread(thread.id, ctx)
    assert (loaded.title, loaded.metadata) == ("title", {"k": "v"})
    assert loaded.created_at == sdk_items.NAIVE
    assert (await store.load_item(thread.id, item.id, ctx)).content[0].text == "pasted  text"
    assert (await models.ThreadItem.objects.aget(pk=item.id)).preview == "pasted  text"
    assert (await store.load_attachment(attachment.id, ctx)).name == "a.txt"


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_without_nul_returns_the_same_model_when_clean() -> None:
    thread = make_thread()
    assert without_nul(thread) is thread
    for build in sdk_items.ITEM_BUILDERS.values():
        item = build("thr")
        assert without_nul(item) is item


async def test_long_attachment_name_and_type(auser_factory: Any) -> None:
    store = DjangoStore()
    ctx = ChatKitContext(user=await auser_factory())
    name = "n" * 400 + ".pdf"
    mime = "application/" + "x" * 300
    attachment = FileAttachment(id="atc_long", name=name, mime_type=mime)
    await store.save_attachment(attachment, ctx)
    assert await store.load_attachment(attachment.id, ctx) == attachment
    row = await models.Attachment.objects.aget(pk=attachment.id)
    assert (row.name, row.mime_type) == (name[:255], mime[:255])
