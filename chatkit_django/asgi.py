"""An ASGI application for streaming workers: requests share a few threads for their sync code.

Django's ``ASGIHandler`` runs each request in a ``ThreadSensitiveContext`` of its own, so the
request's first thread-sensitive ``sync_to_async`` call (a ``request_started`` receiver, the
session, an ORM query) starts a thread that lives until the response ends: for a stream,
until the model is done talking. A thousand open streams hold a thousand OS threads, each
with its own database connection.

``get_asgi_application()`` here returns Django's handler with one change: each request's
thread-sensitive code runs on one of ``CHATKIT['REQUEST_THREADS']`` shared threads (the one
serving the fewest open requests), one call at a time. Django's database connections belong
to a thread, so the requests that share a thread share its connection, one call at a
time: ``REQUEST_THREADS`` bounds the connections a worker uses. This is how asgiref ran all
thread-sensitive code before 3.3 (on one thread), with a few threads instead of one; a call
that blocks (a slow query, a sync view uploading a file) holds up the other requests on its
thread until it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponseBase

from chatkit_django._internal.compat import borrow_thread, return_thread
from chatkit_django.conf import chatkit_settings

#: True while a request is served on the shared threads (``serves_on_shared_threads``).
_shared = ContextVar("chatkit_django.asgi.shared", default=False)

#: The ASGI ``send`` of the response being sent, while it is (``writer``).
_writer: ContextVar[Callable[[dict[str, Any]], Awaitable[None]] | None] = ContextVar(
    "chatkit_django.asgi.writer", default=None
)


def writer() -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    """The ASGI ``send`` a streaming response may write its body to, if the handler says so.

    Set while ``ChatKitASGIHandler`` (or ``ChatKitConsumer``) sends a response, after the
    response has started: an ``EventStreamResponse`` then writes its events itself instead
    of handing each one to the handler's loop (see ``EventStream.send_to``).
    """
    return _writer.get()


@contextmanager
def writing_to(send: Callable[[dict[str, Any]], Awaitable[None]]) -> Iterator[None]:
    """Let the responses sent in this block write their body to ``send`` (see ``writer``)."""
    token = _writer.set(send)
    try:
        yield
    finally:
        _writer.reset(token)


def serves_on_shared_threads() -> bool:
    """Whether the current request runs its sync code on ``ChatKitASGIHandler``'s threads."""
    return _shared.get()


class RequestThreads:
    """``size`` single-thread executors; ``acquire()`` picks the one with the fewest requests.

    Each thread starts with its first call.
    """

    def __init__(self, size: int) -> None:
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chatkit-request-{i}")
            for i in range(size)
        ]
        self.requests = [0] * size

    def acquire(self) -> int:
        index = self.requests.index(min(self.requests))
        self.requests[index] += 1
        return index

    def release(self, index: int) -> None:
        self.requests[index] -= 1


class ChatKitASGIHandler(ASGIHandler):
    """Django's ``ASGIHandler``, with requests' sync code on ``REQUEST_THREADS`` shared threads."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads(self.get_request_threads())

    def get_request_threads(self) -> int:
        """How many threads the requests share (read once, when the application is built)."""
        return chatkit_settings.REQUEST_THREADS

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # Django refuses it
            return
        index = self.threads.acquire()
        token = _shared.set(True)
        try:
            # Django's context, so that code that nests one behaves as under Django's
            # handler; only the executor behind it is ours.
            async with ThreadSensitiveContext() as context:
                borrow_thread(context, self.threads.executors[index])
                try:
                    await self.handle(scope, receive, send)
                finally:
                    # Before the context exits, which would shut the executor down.
                    return_thread(context)
        finally:
            _shared.reset(token)
            self.threads.release(index)

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        with writing_to(send):
            await super().send_response(response, send)


def get_asgi_application() -> ChatKitASGIHandler:
    """``django.core.asgi.get_asgi_application()``, with shared request threads.

    Use it in the project's ``asgi.py`` in place of Django's (see Deploy streaming).
    """
    django.setup(set_prefix=False)
    return ChatKitASGIHandler()
