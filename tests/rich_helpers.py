"""Helpers for rich-input tests: stored attachments and SDK requests through process()."""

import json
from typing import Any

from chatkit.types import FileAttachment, ImageAttachment
from django.core.files.base import ContentFile
from django.utils import timezone

from chatkit_django.attachments import get_attachment_storage
from chatkit_django.context import ChatKitContext
from chatkit_django.ids import generate_id
from chatkit_django.models import Attachment
from chatkit_django.server import get_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PDF = b"%PDF-1.4\n%fake\n"


def store_attachment(
    owner: Any, name: str, mime_type: str, content: bytes | None, **kwargs: Any
) -> Attachment:
    """An uploaded attachment row with its bytes on the attachment storage.

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


async def process(payload: dict[str, Any], user: Any) -> Any:
    """Run one ChatKit request; a JSON object, or the list of streamed events."""
    result = await get_server().process(json.dumps(payload), ChatKitContext(user=user))
    if hasattr(result, "json"):
        return json.loads(result.json)
    events = []
    async for chunk in result:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return events


def user_input(text: str, *, attachments: list[str] = (), tags: list[dict] = ()) -> dict:
    return {
        "content": [{"type": "input_text", "text": text}, *tags],
        "attachments": list(attachments),
        "inference_options": {},
    }


def done_items(events: list[dict], item_type: str) -> list[dict]:
    return [
        e["item"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == item_type
    ]
