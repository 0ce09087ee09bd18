"""A small OpenAI API on 127.0.0.1, for the real ``openai`` client (``base_url``).

It speaks the few endpoints chatkit-django uses:

- ``POST /v1/audio/transcriptions`` (multipart): answers ``{"text": ...}``, or a scripted error;
- ``POST /v1/responses`` with ``stream: true``: streams a scripted Responses API turn as SSE
  (a text message, optionally an image generation call), as the Agents SDK consumes it, or
  answers a scripted error.

Every request is recorded (path, headers, parsed body) so tests can assert what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    json: Any = None
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    """Multipart files: field name → (file name, content type, bytes)."""


@dataclass
class ScriptedTurn:
    """What the next ``/v1/responses`` call streams."""

    text: str = "Hello from the fake model."
    image_b64: str | None = None
    partial_images: list[str] = field(default_factory=list)
    error: tuple[int, str] | None = None
    """``(status, message)``: answer this error instead of a stream."""


class FakeOpenAI:
    """The server and its script. ``url`` is the ``base_url`` to give the client."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.reset()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reset(self) -> None:
        self.requests.clear()
        self.transcription_text = "dictated text"
        self.transcription_error: tuple[int, str] | None = None
        self.turns: list[ScriptedTurn] = []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(api_key="sk-test", base_url=self.url, **kwargs)


# The running server, for ``client_factory`` (a dotted path settings can name).
current: FakeOpenAI | None = None


def client_factory() -> openai.AsyncOpenAI:
    """``CHATKIT['OPENAI_CLIENT_FACTORY']`` for tests: a client of the running fake server."""
    assert current is not None, "the fake_openai fixture is not active"
    return current.client()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded = RecordedRequest(path=self.path, headers=headers)
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                filename = part.get_filename()
                if filename is not None:
                    recorded.files[name] = (filename, part.get_content_type(), payload)
                else:
                    recorded.fields[name] = payload.decode()
        elif body:
            recorded.json = json.loads(body)
        self.fake.requests.append(recorded)

        if self.path == "/v1/audio/transcriptions":
            self.transcription()
        elif self.path == "/v1/responses":
            self.stream_response(recorded.json or {})
        else:
            self.send_json(404, {"error": {"message": f"No route {self.path}", "type": "x"}})

    def send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def transcription(self) -> None:
        if self.fake.transcription_error is not None:
            status, message = self.fake.transcription_error
            self.send_json(
                status, {"error": {"message": message, "type": "server_error", "code": None}}
            )
            return
        self.send_json(200, {"text": self.fake.transcription_text})

    def stream_response(self, request: dict[str, Any]) -> None:
        turn = self.fake.turns.pop(0) if self.fake.turns else ScriptedTurn()
        if turn.error is not None:
            status, message = turn.error
            self.send_json(
                status, {"error": {"message": message, "type": "server_error", "code": None}}
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in response_events(turn, request.get("model", "gpt-test")):
            data = json.dumps(event)
            self.wfile.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
            self.wfile.flush()


def response_events(turn: ScriptedTurn, model: str) -> list[dict[str, Any]]:
    """The Responses API stream for one turn: an optional image, then one text message."""
    response_id = f"resp_{time.monotonic_ns()}"
    base = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": "in_progress",
    }
    events: list[dict[str, Any]] = [{"type": "response.created", "response": base}]
    output: list[dict[str, Any]] = []
    index = 0
    if turn.image_b64 is not None:
        image_id = f"ig_{response_id}"
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {"id": image_id, "type": "image_generation_call", "status": "in_progress"},
            }
        )
        for n, partial in enumerate(turn.partial_images):
            events.append(
                {
                    "type": "response.image_generation_call.partial_image",
                    "output_index": index,
                    "item_id": image_id,
                    "partial_image_index": n,
                    "partial_image_b64": partial,
                }
            )
        done_image = {
            "id": image_id,
            "type": "image_generation_call",
            "status": "completed",
            "result": turn.image_b64,
        }
        events.append(
            {"type": "response.output_item.done", "output_index": index, "item": done_image}
        )
        output.append(done_image)
        index += 1

    message_id = f"msg_{response_id}"
    part = {"type": "output_text", "text": "", "annotations": []}
    events += [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "item_id": message_id,
            "output_index": index,
            "content_index": 0,
            "part": part,
        },
    ]
    for word in _chunks(turn.text):
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": message_id,
                "output_index": index,
                "content_index": 0,
                "delta": word,
                "logprobs": [],
            }
        )
    done_part = {**part, "text": turn.text}
    done_message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [done_part],
    }
    events += [
        {
            "type": "response.output_text.done",
            "item_id": message_id,
            "output_index": index,
            "content_index": 0,
            "text": turn.text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": message_id,
            "output_index": index,
            "content_index": 0,
            "part": done_part,
        },
        {"type": "response.output_item.done", "output_index": index, "item": done_message},
    ]
    output.append(done_message)
    usage = {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 2,
    }
    events.append(
        {
            "type": "response.completed",
            "response": {**base, "status": "completed", "output": output, "usage": usage},
        }
    )
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return events


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
async def fake_openai(fake_openai_server: FakeOpenAI, settings: Any) -> AsyncIterator[FakeOpenAI]:
    """The fake server, reset, with ``CHATKIT['OPENAI_CLIENT_FACTORY']`` pointing at it.

    Async, so that its teardown runs in the test's event loop and closes the client's
    pooled connections there.
    """
    global current
    from chatkit_django.transcription import aclose_openai_client

    fake_openai_server.reset()
    current = fake_openai_server
    settings.CHATKIT = {**settings.CHATKIT, "OPENAI_CLIENT_FACTORY": f"{__name__}.client_factory"}
    yield fake_openai_server
    await aclose_openai_client()
    current = None
