"""What tests build: contexts, SDK threads and items, stored rows, and sample file bytes.

Every ``make_*`` helper and every sample file lives here, so a test module imports its
material from one place and never from conftest.py (fixtures only) or another test module.

The ``store_*`` helpers are sync: they run the store through ``async_to_sync``, so in a sync
test they use the test's thread and see its transaction. From an async test, wrap them in
``sync_to_async``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    ImageAttachment,
    InferenceOptions,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from chatkit_django.agents import DjangoThreadItemConverter
from chatkit_django.attachments import get_attachment_storage
from chatkit_django.context import ChatKitContext
from chatkit_django.ids import generate_id
from chatkit_django.models import Attachment, Feedback
from chatkit_django.models import ThreadItem as ItemRow
from chatkit_django.store import DjangoStore

# Sample bytes. PNG and PDF start with their formats' signatures (what MIME sniffing reads)
# and are big enough to be cut by a lowered read cap; PNG_1X1 is a whole valid picture.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"x" * 500
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)

_counter = itertools.count()


def make_picture() -> bytes:
    """A small, visible picture (a gradient with a disc), for screenshots; needs Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 160))
    draw = ImageDraw.Draw(image)
    for x in range(240):
        draw.line([(x, 0), (x, 160)], fill=(40 + x // 2, 90, 200 - x // 3))
    draw.ellipse([80, 40, 160, 120], fill=(250, 200, 60))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def make_upload(
    name: str = "cat.png", data: bytes = PNG, content_type: str = "image/png"
) -> SimpleUploadedFile:
    """A file as a browser posts it to the direct-upload view."""
    return SimpleUploadedFile(name, data, content_type=content_type)


def make_context(user: Any) -> ChatKitContext:
    return ChatKitContext(user=user)


def make_converter(user: Any) -> DjangoThreadItemConverter:
    """The converter the server would use for ``user``'s request (default store)."""
    return DjangoThreadItemConverter(make_context(user), store=DjangoStore())


def make_thread(thread_id: str | None = None, **kwargs: Any) -> ThreadMetadata:
    kwargs.setdefault("created_at", datetime.now())
    return ThreadMetadata(id=thread_id or f"thr_{next(_counter)}", **kwargs)


def make_user_message(thread_id: str, text: str = "hello", **kwargs: Any) -> UserMessageItem:
    kwargs.setdefault("id", f"msg_{next(_counter)}")
    kwargs.setdefault("created_at", datetime.now())
    return UserMessageItem(
        thread_id=thread_id,
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
        **kwargs,
    )


def make_assistant_message(thread_id: str, text: str = "hi", **kwargs: Any) -> AssistantMessageItem:
    kwargs.setdefault("id", f"msg_{next(_counter)}")
    kwargs.setdefault("created_at", datetime.now())
    return AssistantMessageItem(
        thread_id=thread_id, content=[AssistantMessageContent(text=text)], **kwargs
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
    file_name = get_attachment_storage().save(f"{attachment_id}.png", ContentFile(PNG_1X1))
    Attachment.objects.create(
        id=attachment_id,
        owner=owner,
        thread_id=thread_id,
        name=name,
        mime_type="image/png",
        type="image",
        size=len(PNG_1X1),
        file=file_name,
        uploaded_at=timezone.now(),
        data=attachment.model_dump(mode="json", by_alias=True),
    )
    return attachment


def store_attachment(
    owner: Any, name: str, mime_type: str, content: bytes | None, **kwargs: Any
) -> Attachment:
    """An uploaded attachment row with its bytes on the attachment storage, in no thread yet.

    ``content=None`` leaves the row pointing at bytes that are not there.
    """
    attachment_id = generate_id("attachment")
    file_name = f"chatkit/{attachment_id}"
    if content is not None:
        file_name = get_attachment_storage().save(file_name, ContentFile(content))
    if mime_type.startswith("image/"):
        model: Any = ImageAttachment(
            id=attachment_id,
            name=name,
            mime_type=mime_type,
            preview_url=f"http://testserver/chatkit/attachments/{attachment_id}/content/",
        )
    else:
        model = FileAttachment(id=attachment_id, name=name, mime_type=mime_type)
    return Attachment.objects.create(
        id=attachment_id,
        owner=owner,
        name=name,
        mime_type=mime_type,
        type=model.type,
        size=len(content) if content is not None else 10,
        file=file_name,
        uploaded_at=timezone.now(),
        data=model.model_dump(mode="json", by_alias=True),
        **kwargs,
    )


def give_feedback(user: Any, item_id: str, kind: str = "negative") -> Feedback:
    item = ItemRow.objects.get(pk=item_id)
    return Feedback.objects.create(thread_id=item.thread_id, item=item, user=user, kind=kind)
