"""Calling the project's ChatKit server the way the endpoint does, without HTTP.

``sdk_call`` is for sync tests: ``async_to_sync`` runs ``get_server().process()`` (the SDK's
request path) with the test's thread as the ORM thread, so it sees the test transaction.
``process`` is its twin for async tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from chatkit.server import NonStreamingResult
from django.test import RequestFactory

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment
from chatkit_django.server import get_server
from chatkit_django.store import AttachmentAdapter
from tests.factories import make_converter


async def process(payload: dict[str, Any], user: Any) -> Any:
    """Run one ChatKit request; a JSON object, or the list of streamed events."""
    result = await get_server().process(json.dumps(payload), ChatKitContext(user=user))
    if isinstance(result, NonStreamingResult):
        return json.loads(result.json)
    events = []
    async for chunk in result:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return events


def sdk_call(user: Any, payload: dict[str, Any]) -> Any:
    """The decoded JSON answer of a non-streaming request, or the list of streamed events."""
    request = RequestFactory().post("/chatkit/")
    request.user = user
    context = ChatKitContext(user=user, request=request)

    async def run() -> Any:
        result = await get_server().process(json.dumps(payload), context)
        if isinstance(result, NonStreamingResult):
            return json.loads(result.json)
        events = []
        async for chunk in result:
            events.append(json.loads(chunk.removeprefix(b"data: ")))
        return events

    return async_to_sync(run)()


def user_input(
    text: str, attachments: Iterable[str] = (), tags: Iterable[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A ``UserMessageInput`` as JSON: the text, then any tag parts; attachment ids."""
    return {
        "content": [{"type": "input_text", "text": text}, *tags],
        "attachments": list(attachments),
        "inference_options": {},
    }


def done_items(events: list[dict[str, Any]], item_type: str) -> list[dict[str, Any]]:
    """The items of type ``item_type`` among the ``thread.item.done`` events."""
    return [
        e["item"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == item_type
    ]


def create_attachment(user: Any, name: str, size: int, mime_type: str) -> dict[str, Any]:
    return sdk_call(
        user,
        {
            "type": "attachments.create",
            "params": {"name": name, "size": size, "mime_type": mime_type},
        },
    )


def create_thread(user: Any, text: str, attachments: list[str]) -> list[dict[str, Any]]:
    return sdk_call(
        user, {"type": "threads.create", "params": {"input": user_input(text, attachments)}}
    )


def add_user_message(
    user: Any, thread_id: str, text: str, attachments: list[str]
) -> list[dict[str, Any]]:
    return sdk_call(
        user,
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread_id, "input": user_input(text, attachments)},
        },
    )


def model_input(user: Any, row: Attachment) -> Any:
    converter = make_converter(user)
    return async_to_sync(converter.attachment_to_message_content)(
        AttachmentAdapter.validate_python(row.data)
    )
