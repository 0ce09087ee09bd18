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
from collections.abc import AsyncIterator, Awaitable, Callable
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
from chatkit_django.asgi import serves_on_shared_threads
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
        events = sse_events(
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
    bytes; ours are bytes already, and an SSE stream has one chunk per event.
    """

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self.is_async:
            return streaming_iterator(self)
        return super().__aiter__()


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
#: thread and the user message, a tool output...). ``sse_events`` does not cancel the stream
#: before it: a client that hangs up earlier still has its message saved.
INPUT_STORED = b'data: {"type":"stream_options"'


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def sse_events(
    result: StreamingResult | AsyncIterator[bytes],
    keepalive: float,
    release: Callable[[], Awaitable[None]] | None = None,
    release_every: float | None = None,
    *,
    max_buffer: int | None = None,
    shield_until: bytes | None = None,
    keeper: AnswerKeeper | None = None,
) -> AsyncIterator[bytes]:
    """The SDK's SSE bytes, with a keep-alive comment after ``keepalive`` seconds of silence.

    Every ``release_every`` seconds, ``release()`` runs between writes (the endpoint gives
    back its database connections there, see ``release_connections``).

    The SDK's generator runs in a task of its own (the producer), so waiting for its next
    event can time out without disturbing it. Events it produces while the client is busy
    are buffered and go out in one write; once ``max_buffer`` bytes wait, the producer stops
    asking the SDK for more until the client has taken them: a slow client holds the model's
    stream back instead of making the server buffer the whole answer.

    When the client goes away, the ASGI server cancels (or closes) us and we cancel the
    producer where it waits inside the SDK, whose ``handle_stream_cancelled`` saves the
    partial message before we return. Not before the producer has passed a chunk starting
    with ``shield_until`` (``INPUT_STORED``), though: until then the SDK is storing the
    request's input, and a hang-up must not lose the user's message or leave a thread
    without it. A producer waiting for buffer space is woken first, so that its
    cancellation, too, lands inside the SDK.

    With a ``keeper`` the producer runs under ``keeper.own()`` and a hang-up cancels nothing:
    the producer reads on, dropping the events, and ``keeper.detach()`` takes it over.

    This runs once per event, so it waits on bare futures and keeps one timer per stream
    rather than ``asyncio.Queue`` and ``asyncio.timeout()``, which cost several times more.
    """
    loop = asyncio.get_running_loop()
    buffer: list[bytes] = []
    buffered = 0  # bytes in buffer
    limit = max_buffer if max_buffer else float("inf")
    outcome: list[Any] = []  # _DONE or the exception that ended the SDK's stream
    waiter: asyncio.Future[None] | None = None  # the reader, waiting for an event
    space: asyncio.Future[None] | None = None  # set while the producer waits for the reader
    shielded = shield_until is not None
    abandoned = False  # the client went away
    stopping = False

    # The SDK's generator itself: StreamingResult's __aiter__ only re-yields it.
    events: Any = getattr(result, "json_events", result)

    def stop_if_abandoned() -> None:
        # The producer cancels itself: the CancelledError lands at the SDK's next wait.
        nonlocal stopping
        if abandoned and not shielded and not stopping:
            stopping = True
            asyncio.current_task().cancel()  # type: ignore[union-attr]  # runs in the producer task

    async def produce() -> None:
        nonlocal buffered, space, shielded
        try:
            async for chunk in events:
                if shielded and chunk.startswith(shield_until):
                    shielded = False
                if abandoned:
                    stop_if_abandoned()
                    continue
                buffer.append(chunk)
                buffered += len(chunk)
                _wake(waiter)
                if buffered >= limit:
                    logger.debug("Slow client: %d bytes wait, holding the stream", buffered)
                    space = loop.create_future()
                    await space
                    space = None
                    stop_if_abandoned()
        except Exception as e:  # noqa: BLE001 - logged below, the stream ends cleanly
            outcome.append(e)
        else:
            outcome.append(_DONE)
        _wake(waiter)

    # One timer for the whole stream, re-armed from the last write, rather than one per wait.
    last_write = loop.time()
    timer: asyncio.TimerHandle | None = None

    def check_silence() -> None:
        nonlocal timer
        due = last_write + keepalive
        if loop.time() >= due:
            _wake(waiter)
            due = loop.time() + keepalive
        timer = loop.call_at(due, check_silence)

    release_due = False
    release_timer: asyncio.TimerHandle | None = None

    def call_for_release() -> None:
        nonlocal release_due, release_timer
        release_due = True
        _wake(waiter)
        release_timer = loop.call_later(release_every, call_for_release)  # type: ignore[arg-type]  # armed only when set

    producer = asyncio.create_task(keeper.own(produce()) if keeper is not None else produce())
    timer = loop.call_at(last_write + keepalive, check_silence)
    if release is not None and release_every:
        release_timer = loop.call_later(release_every, call_for_release)
    try:
        while True:
            if release_due:
                release_due = False
                try:
                    await release()  # type: ignore[misc]  # release_due is set only with release
                except Exception:
                    logger.exception("Releasing database connections during a stream failed")
            if not buffer and not outcome:
                waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    waiter = None
                if release_due:
                    continue
                if not buffer and not outcome:
                    last_write = loop.time()
                    yield SSE_KEEPALIVE
                    continue
            if buffer:
                chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                buffered = 0
                _wake(space)
                last_write = loop.time()
                yield chunk
                continue
            if outcome[0] is _DONE:
                return
            # Raised outside the SDK's own error handling (a row vanished mid-way, say):
            # end the stream with the SDK's error event rather than a broken connection.
            logger.error("ChatKit stream failed", exc_info=outcome[0])
            # A database failure is worth retrying (a restart); anything else is a bug.
            event = ErrorEvent(
                code=ErrorCode.STREAM_ERROR, allow_retry=is_database_unavailable(outcome[0])
            )
            payload = event.model_dump_json(by_alias=True, exclude_none=True).encode()
            yield b"data: " + payload + b"\n\n"
            return
    finally:
        for handle in (timer, release_timer):
            if handle is not None:
                handle.cancel()
        if not producer.done():
            abandoned = True
            buffer.clear()
            if shielded:
                logger.debug("The client went away before its input was stored; storing it")
            if keeper is not None:
                stopping = True  # it never cancels itself: the answer runs to its end
                _wake(space)
                keeper.detach(producer)
            else:
                if space is not None:
                    _wake(space)  # it stops itself once it is back inside the SDK
                elif not shielded:
                    stopping = True
                    producer.cancel()
                # Let the SDK store the input, or finish its cancellation handling, first.
                await asyncio.wait({producer})
