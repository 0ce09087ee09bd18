"""The one code path behind the ChatKit endpoint, shared by the view and the Channels consumer.

``ChatKitEndpointMixin.handle_chatkit(request)`` takes a Django ``HttpRequest`` and returns the
response: JSON for non-streaming requests, an SSE ``StreamingHttpResponse`` for streaming ones.
``ChatKitView`` returns it to Django; ``ChatKitConsumer`` writes it to ASGI ``send``.

The layers below do the rest: ``chatkit_django.authentication`` finds the user, the server
(``DjangoChatKitServer``) checks and answers the parsed request. This module knows HTTP
(methods, body size, JSON errors, SSE) and nothing of the SDK's request types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from chatkit.errors import ErrorCode
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ChatKitReq, ErrorEvent
from django.core.exceptions import PermissionDenied
from django.core.signals import got_request_exception
from django.db import DatabaseError, close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from rest_framework.exceptions import APIException

from chatkit_django._internal.compat import streaming_iterator
from chatkit_django.asgi import serves_on_shared_threads, writer
from chatkit_django.authentication import AuthenticationMixin
from chatkit_django.background import AnswerKeeper, get_answer_keeper
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import ChatKitContext, make_context
from chatkit_django.exceptions import (
    database_unavailable_response,
    error_response,
    is_database_unavailable,
    is_pool_exhausted,
    server_busy_response,
)
from chatkit_django.reconnect import DATABASE_ERRORS
from chatkit_django.server import REQUEST_ADAPTER, DjangoChatKitServer, get_server
from chatkit_django.throttling import ThrottledEndpointMixin

logger = logging.getLogger(__name__)

SSE_KEEPALIVE = b": keep-alive\n\n"


class ChatKitEndpointMixin(ThrottledEndpointMixin, AuthenticationMixin):
    """The endpoint: authentication (the mixin's), the body, the server call, the response.

    Override the ``get_*`` methods to change a policy for one endpoint; settings in
    ``CHATKIT`` set the defaults for all of them.
    """

    # -- policies ------------------------------------------------------------

    def get_server(self) -> ChatKitServer[Any]:
        """The ``ChatKitServer`` that answers; by default the project's ``SERVER_CLASS``."""
        return get_server()

    def get_max_request_bytes(self) -> int:
        return chatkit_settings.MAX_REQUEST_BYTES

    def get_keepalive_seconds(self) -> float:
        return chatkit_settings.KEEPALIVE_SECONDS

    def get_stream_buffer_bytes(self) -> int:
        """How many bytes of events may wait for a slow client before the model is held back."""
        return chatkit_settings.STREAM_BUFFER_BYTES

    def get_release_connections_seconds(self) -> float | None:
        return chatkit_settings.RELEASE_CONNECTIONS_SECONDS

    async def release_connections(self) -> None:
        """Give back this request's idle database connections (to the pool, if any).

        Under ASGI a request keeps its thread's connection until it finishes, which for a
        stream is when the model is done talking. Django's own ``close_old_connections``
        closes only what ``CONN_MAX_AGE`` lets it close and never inside a transaction;
        the next query of the request opens a connection again.
        """
        await sync_to_async(close_old_connections)()

    async def get_context(self, request: HttpRequest) -> ChatKitContext:
        """The context handed to every SDK call.

        ``context.make_context``, as the attachment views use: ``CHATKIT['CONTEXT_FACTORY']``
        when set, else a ``ChatKitContext`` for ``request.user``. Override for one endpoint.
        """
        return await make_context(request)

    # -- the endpoint --------------------------------------------------------

    async def handle_chatkit(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """Answer one ChatKit request: the whole endpoint, for the view and the consumer.

        A database failure anywhere before the response starts (reading the user, the
        throttles, the server) is a 503 ``database_unavailable`` with ``Retry-After``; one
        during a stream ends it with the SDK's error event, ``allow_retry`` true.
        """
        try:
            return await self.answer_chatkit(request)
        except DATABASE_ERRORS as e:
            return database_unavailable_response(e, "ChatKit request", request)

    async def answer_chatkit(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """``handle_chatkit()`` but for database failures, which it answers."""
        if request.method != "POST":
            response = error_response(
                f'Method "{request.method}" not allowed.', "method_not_allowed", 405
            )
            response["Allow"] = "POST"
            return response
        try:
            refused = await self.check_authentication(request)
        except DatabaseError as e:  # the session or a token, read from the database
            if not is_pool_exhausted(e):
                raise
            return server_busy_response()
        if refused is not None:
            return refused

        body = self.read_body(request)
        if body is None:
            return request_too_large_response(self)
        try:
            parsed = REQUEST_ADAPTER.validate_json(body)
        except ValidationError as e:
            return invalid_request_response(e)
        if refused := await self.check_throttles(request, parsed):
            return refused

        try:
            context = await self.get_context(request)
            server = self.get_server()
            result = await self.process(server, parsed, body, context)
        except NotFoundError as e:
            return error_response(str(e) or "Not found.", "not_found", 404)
        except PermissionDenied as e:
            return error_response(str(e) or "Permission denied.", "permission_denied", 403)
        except NotImplementedError as e:
            return error_response(str(e), "not_implemented", 501)
        except APIException as e:
            # Errors that carry their own status and code (attachment and transcription
            # refusals...), answered in the same shape.
            codes = e.get_codes()
            return error_response(
                str(e.detail), codes if isinstance(codes, str) else "invalid", e.status_code
            )
        except DATABASE_ERRORS:
            raise  # 503, in handle_chatkit
        except ValueError as e:
            if isinstance(e, (ValidationError, PydanticSerializationError)):
                # pydantic's errors are ValueErrors too, but the request was validated
                # above: this is the server building an invalid model (or one it cannot
                # serialize), a bug of ours: a 500, logged, not the client's 400.
                return await self.server_error(request, parsed)
            # The SDK raises ValueError for requests that are well-formed but do not apply
            # (a sync action on a non-widget item, for instance).
            return error_response(str(e), "invalid_request", 400)
        except Exception as e:  # noqa: BLE001 - logged with its traceback by server_error()
            if is_pool_exhausted(e):
                return server_busy_response()
            return await self.server_error(request, parsed)

        if isinstance(result, StreamingResult):
            keeper = get_answer_keeper(server, context, getattr(parsed.params, "thread_id", None))
            return self.streaming_response(request, result, server, keeper)
        return HttpResponse(result.json, content_type="application/json")

    async def server_error(self, request: HttpRequest, parsed: ChatKitReq) -> HttpResponse:
        """500, logged with the traceback and sent as ``got_request_exception`` (Sentry...)."""
        logger.exception("ChatKit request %s failed", parsed.type)
        # send(), in a thread: asgiref re-raises the exception there, so receivers see it in
        # sys.exc_info(). asend() runs them in a new task, where it is gone.
        await sync_to_async(got_request_exception.send)(sender=type(self), request=request)
        return error_response("The server failed to answer.", "server_error", 500)

    async def process(
        self, server: ChatKitServer[Any], request: ChatKitReq, body: bytes, context: Any
    ) -> StreamingResult | NonStreamingResult:
        """Hand the request to the server.

        A ``DjangoChatKitServer`` gets the request already parsed (``process_request``, which
        checks a streaming request before it streams); a server that overrides ``process()``
        (or is not ours) gets the body, as the SDK intends.
        """
        if (
            isinstance(server, DjangoChatKitServer)
            and type(server).process is DjangoChatKitServer.process
        ):
            return await server.process_request(request, context)
        return await server.process(body, context)

    def read_body(self, request: HttpRequest) -> bytes | None:
        """The body, or ``None`` when it exceeds ``get_max_request_bytes()``."""
        limit = self.get_max_request_bytes()
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return None
        # read(), not .body: .body enforces DATA_UPLOAD_MAX_MEMORY_SIZE, ours is MAX_REQUEST_BYTES.
        body = request.read(limit + 1)
        return None if len(body) > limit else body

    def streaming_response(
        self,
        request: HttpRequest,
        result: StreamingResult,
        server: ChatKitServer[Any],
        keeper: AnswerKeeper | None = None,
    ) -> StreamingHttpResponse:
        """The SSE response; with a ``keeper`` (``ON_DISCONNECT = "finish"``) a hang-up
        leaves the answer running (see ``chatkit_django.background``)."""
        # On chatkit_django.asgi's shared threads a connection belongs to a thread, not to
        # this request: an idle stream holds none, and there is nothing to give back.
        release_every = (
            None if serves_on_shared_threads() else self.get_release_connections_seconds()
        )
        events = EventStream(
            keeper.watch(result.json_events) if keeper is not None else result,
            self.get_keepalive_seconds(),
            release=self.release_connections if release_every else None,
            release_every=release_every,
            max_buffer=self.get_stream_buffer_bytes(),
            shield_until=INPUT_STORED,
            keeper=keeper,
        )
        response = EventStreamResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        # This is a hack: GZipMiddleware compresses streaming responses too, and a gzip stream
        # is flushed in blocks, which holds events back. It reads Accept-Encoding from the
        # request when the response passes by, so hiding it keeps the stream uncompressed.
        request.META.pop("HTTP_ACCEPT_ENCODING", None)
        return response


class EventStreamResponse(StreamingHttpResponse):
    """A ``StreamingHttpResponse`` that hands its chunks to the ASGI handler as they are.

    Django's ``__aiter__`` passes every chunk through two more generators to coerce it to
    bytes; ours are bytes already, and an SSE stream has one chunk per event. Given an
    ``EventStream`` and iterated where ``chatkit_django.asgi.writer()`` is set (our ASGI
    handler, ``ChatKitConsumer``), it lets the stream write itself (``EventStream.send_to``),
    unless a middleware has put other content in its place.
    """

    def __init__(self, streaming_content: Any = (), *args: Any, **kwargs: Any) -> None:
        super().__init__(streaming_content, *args, **kwargs)
        self.event_stream = (
            streaming_content if isinstance(streaming_content, EventStream) else None
        )
        # What __aiter__ would serve: a middleware that wraps the content replaces it.
        self._served = streaming_iterator(self) if self.is_async else None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if not self.is_async:
            return super().__aiter__()
        served = streaming_iterator(self)
        send = writer()
        if send is not None and self.event_stream is not None and served is self._served:
            return self.event_stream.written_to(send)
        return served


def request_too_large_response(endpoint: ChatKitEndpointMixin) -> HttpResponse:
    limit = endpoint.get_max_request_bytes()
    return error_response(
        f"The request body is larger than CHATKIT['MAX_REQUEST_BYTES'] ({limit} bytes).",
        "request_too_large",
        413,
    )


def invalid_request_response(error: ValidationError) -> HttpResponse:
    """400 naming what is wrong with the body, in the app's error shape."""
    errors = error.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(f"Malformed JSON: {errors[0]['msg']}.", "parse_error", 400)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]
    )
    return error_response(f"Invalid ChatKit request. {problems}", "invalid_request", 400)


_DONE = object()

#: How the SDK's stream announces its options: ``ChatKitServer`` sends this event when it hands
#: over to ``respond()`` (or ``action()``), after it has stored the request's input (the new
#: thread and the user message, a tool output...). ``EventStream`` does not cancel the stream
#: before it: a client that hangs up earlier still has its message saved.
INPUT_STORED = b'data: {"type":"stream_options"'


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class EventStream:
    """The SDK's SSE bytes, with a keep-alive comment after ``keepalive`` seconds of silence.

    Every ``release_every`` seconds, ``release()`` runs between writes (the endpoint gives
    back its database connections there, see ``release_connections``).

    The SDK's generator runs in a task of its own (the producer), so that waiting for its
    next event can time out without disturbing it. There are two ways to take its events:

    - **read it** (``async for``, ``chunks()``): the producer hands each event to the
      reader. Events it produces while the reader is busy are buffered and go out in one
      write; once ``max_buffer`` bytes wait, the producer stops asking the SDK for more
      until the reader has taken them: a slow client holds the model's stream back instead
      of making the server buffer the whole answer.
    - **let it write** (``send_to(send)``, given the ASGI ``send``): the producer writes each
      event itself, and the ASGI server's flow control holds it back for a slow client. No
      event is handed from task to task; the caller only waits, writing the keep-alives.
      ``chatkit_django.asgi``'s handler and ``ChatKitConsumer`` do this.

    When the client goes away, the ASGI server cancels (or closes) the reader and we cancel
    the producer where it waits inside the SDK, whose ``handle_stream_cancelled`` saves the
    partial message before we return. Not before the producer has passed a chunk starting
    with ``shield_until`` (``INPUT_STORED``), though: until then the SDK is storing the
    request's input, and a hang-up must not lose the user's message or leave a thread
    without it. A producer waiting for buffer space, or inside ``send``, is let go back into
    the SDK first, so that its cancellation, too, lands there.

    With a ``keeper`` the producer runs under ``keeper.own()`` and a hang-up cancels nothing:
    the producer reads on, dropping the events, and ``keeper.detach()`` takes it over.

    This runs once per event, so it waits on bare futures and keeps one timer per stream
    rather than ``asyncio.Queue`` and ``asyncio.timeout()``, which cost several times more.
    """

    def __init__(
        self,
        result: StreamingResult | AsyncIterator[bytes],
        keepalive: float,
        release: Callable[[], Awaitable[None]] | None = None,
        release_every: float | None = None,
        *,
        max_buffer: int | None = None,
        shield_until: bytes | None = None,
        keeper: AnswerKeeper | None = None,
    ) -> None:
        # The SDK's generator itself: StreamingResult's __aiter__ only re-yields it.
        self.events = result.json_events if isinstance(result, StreamingResult) else result
        self.keepalive = keepalive
        self.release = release if release_every else None
        self.release_every = release_every
        self.limit = max_buffer if max_buffer else float("inf")
        self.shield_until = shield_until
        self.keeper = keeper
        self.buffer: list[bytes] = []
        self.buffered = 0  # bytes in buffer
        self.outcome: list[Any] = []  # _DONE or the exception that ended the SDK's stream
        self.waiter: asyncio.Future[None] | None = None  # the reader, waiting for news
        self.space: asyncio.Future[None] | None = None  # set while the producer waits for room
        self.shielded = shield_until is not None
        self.abandoned = False  # the client went away
        self.stopping = False
        self.send: Any = None  # the ASGI send, when the producer writes itself
        self.sending = False  # the producer is inside send()
        self.release_due = False
        self.handles: list[asyncio.TimerHandle] = []
        self.last_write = 0.0
        self.producer: asyncio.Task[None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks()

    # -- the producer ------------------------------------------------------------

    def stop_if_abandoned(self) -> None:
        # The producer cancels itself: the CancelledError lands at the SDK's next wait.
        if self.abandoned and not self.shielded and not self.stopping:
            self.stopping = True
            asyncio.current_task().cancel()  # type: ignore[union-attr]  # runs in the producer task

    async def produce(self) -> None:
        try:
            await (self.write_events() if self.send is not None else self.hand_over_events())
        except Exception as e:  # noqa: BLE001 - logged by the reader, the stream ends cleanly
            self.outcome.append(e)
        else:
            self.outcome.append(_DONE)
        _wake(self.waiter)

    def passes_shield(self, chunk: bytes) -> None:
        if chunk.startswith(self.shield_until):  # type: ignore[arg-type]  # shielded only with shield_until
            self.shielded = False

    async def hand_over_events(self) -> None:
        """Each event into the buffer, for the reader; wait for room when it is full."""
        async for chunk in self.events:
            if self.shielded:
                self.passes_shield(chunk)
            if self.abandoned:
                self.stop_if_abandoned()
                continue
            self.buffer.append(chunk)
            self.buffered += len(chunk)
            _wake(self.waiter)
            if self.buffered >= self.limit:
                logger.debug("Slow client: %d bytes wait, holding the stream", self.buffered)
                self.space = self.loop.create_future()
                await self.space
                self.space = None
                self.stop_if_abandoned()

    async def write_events(self) -> None:
        """Each event to ``send``; the server's flow control holds us back for a slow client."""
        send, clock = self.send, self.loop.time
        async for chunk in self.events:
            if self.shielded:
                self.passes_shield(chunk)
            if self.abandoned:
                self.stop_if_abandoned()
                continue
            self.sending = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.sending = False
            self.last_write = clock()
            self.stop_if_abandoned()  # the client went away while we wrote

    # -- the reader --------------------------------------------------------------

    def start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.last_write = loop.time()
        body = self.produce()
        self.producer = loop.create_task(self.keeper.own(body) if self.keeper else body)
        # One timer for the whole stream, re-armed from the last write, not one per wait.
        self.handles.append(loop.call_at(self.last_write + self.keepalive, self.check_silence))
        if self.release is not None:
            self.handles.append(loop.call_later(self.release_every, self.call_for_release))  # type: ignore[arg-type]  # set with release

    def check_silence(self) -> None:
        due = self.last_write + self.keepalive
        if self.loop.time() >= due:
            _wake(self.waiter)
            due = self.loop.time() + self.keepalive
        self.handles[0] = self.loop.call_at(due, self.check_silence)

    def call_for_release(self) -> None:
        self.release_due = True
        _wake(self.waiter)
        self.handles[1] = self.loop.call_later(self.release_every, self.call_for_release)  # type: ignore[arg-type]  # armed only when set

    async def wait(self) -> None:
        """Until the producer has news, a silence is due, or a release."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def release_if_due(self) -> None:
        if self.release_due:
            self.release_due = False
            try:
                await self.release()  # type: ignore[misc]  # release_due is set only with release
            except Exception:
                logger.exception("Releasing database connections during a stream failed")

    def error_event(self) -> bytes:
        # Raised outside the SDK's own error handling (a row vanished mid-way, say): end the
        # stream with the SDK's error event rather than a broken connection.
        logger.error("ChatKit stream failed", exc_info=self.outcome[0])
        # A database failure is worth retrying (a restart); anything else is a bug.
        event = ErrorEvent(
            code=ErrorCode.STREAM_ERROR, allow_retry=is_database_unavailable(self.outcome[0])
        )
        return (
            b"data: " + event.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n\n"
        )

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The events, read: what ``async for`` over the stream runs."""
        self.start()
        try:
            while True:
                await self.release_if_due()
                if not self.buffer and not self.outcome:
                    await self.wait()
                    if self.release_due:
                        continue
                    if not self.buffer and not self.outcome:
                        self.last_write = self.loop.time()
                        yield SSE_KEEPALIVE
                        continue
                if self.buffer:
                    buffer = self.buffer
                    chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                    buffer.clear()
                    self.buffered = 0
                    _wake(self.space)
                    self.last_write = self.loop.time()
                    yield chunk
                    continue
                if self.outcome[0] is not _DONE:
                    yield self.error_event()
                return
        finally:
            await self.stop()

    async def send_to(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Write the events to the ASGI ``send`` as ``http.response.body`` messages.

        The response has started; the caller sends the closing message. The producer writes
        the events; this waits for its end, writing the keep-alives.
        """
        self.send = send
        self.start()
        try:
            while not self.outcome:
                await self.wait()
                await self.release_if_due()
                if (
                    not self.outcome
                    and not self.sending  # held back by flow control: no use in more
                    and self.loop.time() >= self.last_write + self.keepalive
                ):
                    self.last_write = self.loop.time()
                    await send(
                        {"type": "http.response.body", "body": SSE_KEEPALIVE, "more_body": True}
                    )
            if self.outcome[0] is not _DONE:
                await send(
                    {"type": "http.response.body", "body": self.error_event(), "more_body": True}
                )
        finally:
            await self.stop()

    async def written_to(
        self, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> AsyncGenerator[bytes, None]:
        """``send_to(send)`` as an iterator with nothing to yield, for an ASGI handler that
        iterates the response (``EventStreamResponse``)."""
        await self.send_to(send)
        return
        yield b""  # type: ignore[unreachable]  # only makes this an async generator

    async def stop(self) -> None:
        for handle in self.handles:
            handle.cancel()
        producer = self.producer
        if producer is None or producer.done():
            return
        self.abandoned = True
        self.buffer.clear()
        if self.shielded:
            logger.debug("The client went away before its input was stored; storing it")
        if self.keeper is not None:
            self.stopping = True  # it never cancels itself: the answer runs to its end
            _wake(self.space)
            self.keeper.detach(producer)
            return
        if self.space is not None:
            _wake(self.space)  # it stops itself once it is back inside the SDK
        elif self.sending:
            pass  # likewise, once send() returns (at once: the client has gone)
        elif not self.shielded:
            self.stopping = True
            producer.cancel()
        # Let the SDK store the input, or finish its cancellation handling, first.
        await asyncio.wait({producer})
