"""Threads stored through ``DjangoStore``, for the admin and lifecycle tests (sync tests)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from chatkit.types import ImageAttachment, ThreadItem, ThreadMetadata
from django.core.files.base import ContentFile

from chatkit_django.attachments import get_attachment_storage
from chatkit_django.models import Attachment, Feedback
from chatkit_django.models import ThreadItem as ItemRow
from chatkit_django.store import DjangoStore
from tests.conftest import make_context, make_thread

# The smallest valid PNG (1x1, transparent).
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)


def store_thread(
    owner: Any,
    items: Iterable[ThreadItem] = (),
    *,
    thread: ThreadMetadata | None = None,
    **thread_kwargs: Any,
) -> ThreadMetadata:
    """Save a thread and its items as the endpoint would; items' thread ids are rewritten."""
    store = DjangoStore()
    ctx = make_context(owner)
    thread = thread or make_thread(**thread_kwargs)
    async_to_sync(store.save_thread)(thread, ctx)
    for item in items:
        item = item.model_copy(update={"thread_id": thread.id})
        async_to_sync(store.add_thread_item)(thread.id, item, ctx)
    return thread


def send_message(user: Any, thread_id: str, item: ThreadItem) -> ThreadItem:
    """Add ``item`` to a thread as ``user`` through the store (another user needs change access)."""
    item = item.model_copy(update={"thread_id": thread_id})
    async_to_sync(DjangoStore().add_thread_item)(thread_id, item, make_context(user))
    return item


def store_image(owner: Any, thread_id: str, name: str = "cat.png") -> ImageAttachment:
    """An image attachment with bytes on the attachment storage, linked to a thread."""
    attachment_id = f"atc_{abs(hash((thread_id, name))) % 10**12}"
    attachment = ImageAttachment(
        id=attachment_id,
        name=name,
        mime_type="image/png",
        thread_id=thread_id,
        preview_url="https://testserver/preview.png",
    )
    file_name = get_attachment_storage().save(f"{attachment_id}.png", ContentFile(PNG_BYTES))
    Attachment.objects.create(
        id=attachment_id,
        owner=owner,
        thread_id=thread_id,
        name=name,
        mime_type="image/png",
        type="image",
        size=len(PNG_BYTES),
        file=file_name,
        uploaded_at=datetime.now().astimezone(),
        data=attachment.model_dump(mode="json", by_alias=True),
    )
    return attachment


def give_feedback(user: Any, item_id: str, kind: str = "negative") -> Feedback:
    item = ItemRow.objects.get(pk=item_id)
    return Feedback.objects.create(thread_id=item.thread_id, item=item, user=user, kind=kind)
