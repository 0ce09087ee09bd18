"""``ChatKitConsumer``: the ChatKit endpoint as a Channels ``AsyncHttpConsumer``.

For projects that route HTTP through Channels' ``ProtocolTypeRouter``. The request is turned
into a Django ``HttpRequest`` and answered by the same ``ChatKitEndpointMixin`` as the view;
only writing the response to ASGI differs. It reads the session cookie itself, as the view
does without middleware, or uses DRF authenticators (``CHATKIT['AUTHENTICATION_CLASSES']``).
``AuthMiddlewareStack`` works too (``scope["user"]``), but it loads the session before the
consumer runs, where a database failure is Channels' plain-text 500, not our JSON 503.
"""

from __future__ import annotations

import asyncio
import io
from contextlib import aclosing
from typing import Any

from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from chatkit_django.asgi import writing_to
from chatkit_django.streaming import ChatKitEndpointMixin, request_too_large_response


class ChatKitConsumer(ChatKitEndpointMixin, AsyncHttpConsumer):  # type: ignore[misc]  # channels is untyped
    """``path("chatkit/", ChatKitConsumer.as_asgi())``."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Kept to watch for http.disconnect while a stream is being sent: the dispatch loop
        # does not receive while our handler runs (Django's ASGIHandler does the same).
        self._receive = receive
        self._body_size = 0
        await super().__call__(scope, receive, send)

    async def http_request(self, message: dict[str, Any]) -> None:
        chunk = message.get("body", b"")
        self._body_size += len(chunk)
        if self._body_size > self.get_max_request_bytes():
            # Refuse before buffering the rest of an oversized body.
            await self.send_django_response(request_too_large_response(self))
            raise StopConsumer()
        await super().http_request(message)

    def build_request(self, body: bytes) -> HttpRequest:
        """A Django request for the scope, with the user and session Channels put there."""
        request = ASGIRequest(self.scope, io.BytesIO(body))
        if "session" in self.scope:
            request.session = self.scope["session"]
        if "user" in self.scope:
            request.user = self.scope["user"]
        return request

    async def handle(self, body: bytes) -> None:
        request = self.build_request(body)
        response = await self.handle_chatkit(request)
        await self.send_django_response(response)
        await aclose_old_connections()

    async def send_django_response(self, response: HttpResponse | StreamingHttpResponse) -> None:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
        ]
        for cookie in response.cookies.values():
            headers.append((b"Set-Cookie", cookie.output(header="").strip().encode("ascii")))
        await self.send_headers(status=response.status_code, headers=headers)
        if not isinstance(response, StreamingHttpResponse):
            await self.send_body(response.content)
            return
        sender = asyncio.create_task(self._send_stream(response))
        listener = asyncio.create_task(self._wait_for_disconnect())
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, sender):
            if not task.done():
                # Cancelling the sender runs the SDK's cancellation handling (see EventStream).
                task.cancel()
                await asyncio.wait({task})
        if not sender.cancelled():
            sender.result()

    async def _send_stream(self, response: StreamingHttpResponse) -> None:
        # An EventStreamResponse writes its events itself (chatkit_django.asgi.writer).
        with writing_to(self.send):
            # Django's __aiter__ is an async generator (the stubs say AsyncIterator).
            async with aclosing(aiter(response)) as content:  # type: ignore[type-var]  # see above
                async for part in content:
                    await self.send_body(part, more_body=True)
        await self.send_body(b"")

    async def _wait_for_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
