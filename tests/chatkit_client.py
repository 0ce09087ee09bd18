"""Helpers to speak ChatKit's wire protocol in tests, built from the SDK's own request models."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from chatkit.types import (
    InferenceOptions,
    ThreadAddUserMessageParams,
    ThreadCreateParams,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    UserMessageInput,
    UserMessageTextContent,
)
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from pydantic import BaseModel

from chatkit_django.models import Attachment
from tests.factories import PNG, make_upload

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


async def exchange(client: Any, request: BaseModel | dict[str, Any] | str) -> tuple[int, Any]:
    """POST ``request`` to the endpoint: the status, and the JSON answer or the SSE events."""
    response = await post(client, json.dumps(request) if isinstance(request, dict) else request)
    if response.get("Content-Type") == "text/event-stream":
        return response.status_code, parse_sse(await read_stream(response))
    return response.status_code, json.loads(response.content)


async def answer(client: Any, request: BaseModel | dict[str, Any] | str) -> Any:
    """``exchange`` for a request that must succeed: the JSON answer or the SSE events."""
    status, decoded = await exchange(client, request)
    assert status == 200, decoded
    return decoded


def upload(client, name="cat.png", data=PNG, content_type="image/png", **extra):
    """POST a file to the direct-upload view (a sync test client)."""
    return client.post(
        reverse("chatkit:upload"), {"file": make_upload(name, data, content_type)}, **extra
    )


async def aupload(client, name="cat.png", data=PNG, content_type="image/png", **extra):
    """``upload`` through an ``AsyncClient``."""
    return await client.post(
        reverse("chatkit:upload"), {"file": make_upload(name, data, content_type)}, **extra
    )


def content(client, url_or_attachment_id, **params):
    """GET the content view; on S3 follow the redirect to the presigned URL with httpx."""
    url = url_or_attachment_id
    if not url.startswith("http") and not url.startswith("/"):
        url = reverse("chatkit:attachment-content", kwargs={"attachment_id": url})
    response = client.get(url, params)
    if response.status_code == 302:
        redirected = httpx.get(response["Location"])
        return redirected.status_code, redirected.content, redirected.headers
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response.headers


def transcribe_request(audio: bytes, mime_type: str) -> dict[str, Any]:
    return {
        "type": "input.transcribe",
        "params": {"audio_base64": base64.b64encode(audio).decode(), "mime_type": mime_type},
    }


def config_of(html: str, element_id: str = "chatkit") -> dict:
    match = re.search(
        rf'<script id="{element_id}-config" type="application/json">(.*?)</script>', html, re.DOTALL
    )
    assert match, html
    return json.loads(match.group(1))


def stored(client: Any, user: Any, data: bytes, name: str, mime: str) -> Attachment:
    """An attachment uploaded under the default limit."""
    client.force_login(user)
    response = upload(client, name=name, data=data, content_type=mime)
    assert response.status_code == 201
    return Attachment.objects.get(pk=response.json()["id"])


def target_path(descriptor_url: str) -> str:
    """The descriptor's absolute URL as a path for Django's test client."""
    parts = urlsplit(descriptor_url)
    assert parts.scheme == "http" and parts.netloc == "testserver"
    return f"{parts.path}?{parts.query}"


def put(client, url, data=PNG, content_type="image/png"):
    return client.put(target_path(url), data, content_type=content_type)


def render(source: str, **context) -> str:
    request = context.pop("request", None) or RequestFactory().get("/")
    return Template("{% load chatkit %}" + source).render(Context({"request": request, **context}))
