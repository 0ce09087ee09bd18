"""Helpers to speak ChatKit's wire protocol in tests, built from the SDK's own request models."""

from __future__ import annotations

import json
from typing import Any

from chatkit.types import (
    InferenceOptions,
    ThreadAddUserMessageParams,
    ThreadCreateParams,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    UserMessageInput,
    UserMessageTextContent,
)
from pydantic import BaseModel

ENDPOINT = "/chatkit/"


def user_input(text: str = "hello", attachments: list[str] | None = None) -> UserMessageInput:
    return UserMessageInput(
        content=[UserMessageTextContent(text=text)],
        attachments=attachments or [],
        inference_options=InferenceOptions(),
    )


def create_req(text: str = "hello", **kwargs: Any) -> ThreadsCreateReq:
    return ThreadsCreateReq(params=ThreadCreateParams(input=user_input(text, **kwargs)))


def add_message_req(thread_id: str, text: str = "hello") -> ThreadsAddUserMessageReq:
    return ThreadsAddUserMessageReq(
        params=ThreadAddUserMessageParams(thread_id=thread_id, input=user_input(text))
    )


def body(request: BaseModel) -> str:
    """The JSON ChatKit.js would POST for ``request``."""
    return request.model_dump_json(by_alias=True, exclude_none=True)


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """The ``data:`` events of an SSE body, decoded; comments are skipped."""
    events = []
    for block in raw.split(b"\n\n"):
        data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
        if data:
            events.append(json.loads(b"\n".join(data)))
    return events


async def read_stream(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


async def post(client: Any, request: BaseModel | str | bytes, **extra: Any) -> Any:
    payload = request if isinstance(request, str | bytes) else body(request)
    return await client.post(ENDPOINT, payload, content_type="application/json", **extra)
