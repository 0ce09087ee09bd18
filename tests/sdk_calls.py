"""Calling the project's ChatKit server the way the endpoint does, from sync tests.

``get_server().process()`` is the SDK's request path; ``async_to_sync`` runs it with the
test's thread as the ORM thread, so it sees the test transaction.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from chatkit.server import NonStreamingResult
from django.test import RequestFactory

from chatkit_django.context import ChatKitContext
from chatkit_django.server import get_server


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


def create_attachment(user: Any, name: str, size: int, mime_type: str) -> dict[str, Any]:
    return sdk_call(
        user,
        {
            "type": "attachments.create",
            "params": {"name": name, "size": size, "mime_type": mime_type},
        },
    )


def user_input(text: str, attachments: list[str]) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments,
        "inference_options": {},
    }


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
