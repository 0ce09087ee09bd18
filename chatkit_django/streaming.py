"""The one code path behind the ChatKit endpoint, shared by the view and the Channels consumer.

``ChatKitEndpointMixin.handle_chatkit(request)`` takes a Django ``HttpRequest`` and returns the
response: JSON for non-streaming requests, an SSE ``StreamingHttpResponse`` for streaming ones.
``ChatKitView`` returns it to Django; ``ChatKitConsumer`` writes it to ASGI ``send``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from chatkit.errors import ErrorCode
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    ChatKitReq,
    ClientToolCallItem,
    ErrorEvent,
    StreamingReq,
    StructuredInputItem,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsRetryAfterItemReq,
    UserMessageItem,
    is_streaming_req,
)
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.core.signals import got_request_exception
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.functional import LazyObject, empty
from pydantic import ValidationError
from rest_framework.exceptions import APIException

from chatkit_django.conf import chatkit_settings
from chatkit_django.context import ChatKitContext
from chatkit_django.exceptions import error_response
from chatkit_django.server import REQUEST_ADAPTER, DjangoChatKitServer, get_server

logger = logging.getLogger(__name__)

SSE_KEEPALIVE = b": keep-alive\n\n"


class AuthenticationError(Exception):
    """The request carries credentials that are wrong (401) or none at all."""

    def __init__(self, detail: str, code: str, www_authenticate: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.www_authenticate = www_authenticate


async def _return(value: Any) -> Any:
    return value


class _CSRFCheck(CsrfViewMiddleware):
    # DRF's trick (rest_framework.authentication.CSRFCheck): the middleware's checks, returning
    # the failure reason instead of a 403 page.
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


class ChatKitEndpointMixin:
    """Authentication, request validation, the SDK call and the SSE response.

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

    def get_allow_anonymous(self) -> bool:
        return chatkit_settings.ALLOW_ANONYMOUS

    def get_authenticators(self) -> list[Any]:
        """DRF authentication instances tried before the session (``AUTHENTICATION_CLASSES``)."""
        return [cls() for cls in chatkit_settings.AUTHENTICATION_CLASSES or ()]

    async def get_context(self, request: HttpRequest) -> ChatKitContext:
        """The context handed to every SDK call.

        ``CHATKIT['CONTEXT_FACTORY']`` (sync or async) builds it when set; otherwise a
        ``ChatKitContext`` for ``request.user``. Override to add tenant, locale...
        """
        factory = chatkit_settings.CONTEXT_FACTORY
        if factory is None:
            return ChatKitContext(user=request.user, request=request)
        if inspect.iscoroutinefunction(factory):
            return await factory(request)
        return await sync_to_async(factory)(request)

    # -- authentication ------------------------------------------------------

    async def authenticate(self, request: HttpRequest) -> None:
        """Set ``request.user``: DRF authenticators first, then Django's session.

        Raises ``AuthenticationError`` for bad credentials, or for none when anonymous
        access is off, and ``PermissionDenied`` when a session request fails CSRF.
        """
        authenticators = self.get_authenticators()
        user = None
        if authenticators:
            # DRF authenticators are synchronous (token lookups hit the database).
            user = await sync_to_async(self._drf_authenticate)(request, authenticators)
        if user is None:
            user = await self.get_session_user(request)
            if user is not None and user.is_authenticated:
                self.enforce_csrf(request)
        if user is None:
            user = AnonymousUser()
        request.user = user
        request.auser = partial(_return, user)
        if not user.is_authenticated and not self.get_allow_anonymous():
            header = next(
                (h for a in authenticators if (h := a.authenticate_header(request))), None
            )
            raise AuthenticationError(
                "Authentication credentials were not provided.", "not_authenticated", header
            )

    def _drf_authenticate(self, request: HttpRequest, authenticators: Sequence[Any]) -> Any:
        from rest_framework import exceptions
        from rest_framework.request import Request

        drf_request = Request(request, authenticators=authenticators)
        for authenticator in authenticators:
            try:
                result = authenticator.authenticate(drf_request)
            except exceptions.AuthenticationFailed as e:
                raise AuthenticationError(
                    str(e.detail),
                    "authentication_failed",
                    authenticator.authenticate_header(request),
                ) from e
            except exceptions.PermissionDenied as e:  # DRF's SessionAuthentication CSRF failure
                raise PermissionDenied(str(e.detail)) from e
            if result is not None:
                request.auth = result[1]
                return result[0]
        return None

    async def get_session_user(self, request: HttpRequest) -> Any:
        """The user of Django's session, if any.

        The session is ``SessionMiddleware``'s when it runs; without it (a project that keeps
        sync middleware off the endpoint's path, see Deploy streaming) it is read from the
        cookie here. Session and user are loaded with the sync ``get_user()`` in one thread
        hop: ``request.auser()`` takes two, and each costs more than the queries.
        """
        user = getattr(request, "user", None)
        if isinstance(user, LazyObject):  # AuthenticationMiddleware's, maybe not loaded yet
            if user._wrapped is not empty:
                return user._wrapped
        elif user is not None:  # set by Channels' AuthMiddlewareStack, or a test
            return user
        if not hasattr(request, "session"):
            session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
            if not session_key or not apps.is_installed("django.contrib.sessions"):
                return None
            engine = import_module(settings.SESSION_ENGINE)
            request.session = engine.SessionStore(session_key)
        return await sync_to_async(get_user)(request)

    def enforce_csrf(self, request: HttpRequest) -> None:
        """Cookie-authenticated requests must carry the CSRF token (``X-CSRFToken``)."""
        check = _CSRFCheck(lambda request: None)  # type: ignore[arg-type,return-value]
        check.process_request(request)
        reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
        if reason:
            raise PermissionDenied(f"CSRF Failed: {reason}")

    # -- the endpoint --------------------------------------------------------

    async def handle_chatkit(self, request: HttpRequest) -> HttpResponseBase:
        """Answer one ChatKit request: the whole endpoint, for the view and the consumer."""
        if request.method != "POST":
            response = error_response(
                f'Method "{request.method}" not allowed.', "method_not_allowed", 405
            )
            response["Allow"] = "POST"
            return response
        try:
            await self.authenticate(request)
        except AuthenticationError as e:
            status = 401 if e.www_authenticate else 403
            response = error_response(e.detail, e.code, status)
            if e.www_authenticate:
                response["WWW-Authenticate"] = e.www_authenticate
            return response
        except PermissionDenied as e:
            return error_response(str(e), "permission_denied", 403)

        body = self.read_body(request)
        if body is None:
            return request_too_large_response(self)
        try:
            parsed = REQUEST_ADAPTER.validate_json(body)
        except ValidationError as e:
            return invalid_request_response(e)

        try:
            context = await self.get_context(request)
            server = self.get_server()
            if is_streaming_req(parsed):
                await self.check_streaming_request(parsed, server, context)
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
        except ValueError as e:
            if isinstance(e, ValidationError):
                # pydantic's errors are ValueErrors too, but the request was validated
                # above: this is the server building an invalid model, a bug of ours.
                return await self.server_error(request, parsed)
            # The SDK raises ValueError for requests that are well-formed but do not apply
            # (a sync action on a non-widget item, for instance).
            return error_response(str(e), "invalid_request", 400)
        except Exception:  # noqa: BLE001 - logged with its traceback by server_error()
            return await self.server_error(request, parsed)

        if isinstance(result, StreamingResult):
            return self.streaming_response(request, result, server)
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

        A ``DjangoChatKitServer`` gets the request already parsed; a server that overrides
        ``process()`` (or is not ours) gets the body, as the SDK intends.
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

    async def check_streaming_request(
        self, request: StreamingReq, server: ChatKitServer[Any], context: Any
    ) -> None:
        """Load what a streaming request names before the stream opens.

        The SDK looks the thread up only once it is streaming, so a missing thread would end
        as a 200 with an error event; raising ``NotFoundError`` here gives a 404 instead.
        """
        if isinstance(request, ThreadsCreateReq):
            thread_id = None
        else:
            thread_id = request.params.thread_id
            await server.store.load_thread(thread_id, context)
        if isinstance(request, ThreadsCreateReq | ThreadsAddUserMessageReq):
            for attachment_id in request.params.input.attachments:
                await server.store.load_attachment(attachment_id, context)
        elif isinstance(request, ThreadsAddStructuredInputReq):
            item = await server.store.load_item(thread_id, request.params.item_id, context)  # type: ignore[arg-type]
            # The SDK would refuse these inside the stream (a 200 with an error event).
            if not isinstance(item, StructuredInputItem):
                raise ValueError(f"Item {item.id} is not a structured input item.")  # noqa: TRY004 (400, as the SDK)
            if item.status != "pending":
                raise ValueError(f"Structured input item {item.id} is not pending.")
        elif isinstance(request, ThreadsAddClientToolOutputReq):
            last = await server.store.load_thread_items(thread_id, None, 1, "desc", context)  # type: ignore[arg-type]
            item = last.data[0] if last.data else None
            if not (isinstance(item, ClientToolCallItem) and item.status == "pending"):
                raise ValueError(
                    f"The last item of thread {thread_id} is not a pending client tool call."
                )
        elif isinstance(request, ThreadsRetryAfterItemReq):
            item = await server.store.load_item(thread_id, request.params.item_id, context)  # type: ignore[arg-type]
            # The SDK would end a 200 stream with an error event, or answer nothing at all.
            if not isinstance(item, UserMessageItem):
                raise ValueError(f"Item {item.id} is not a user message.")  # noqa: TRY004 (400, as the SDK)
        elif isinstance(request, ThreadsCustomActionReq) and request.params.item_id:
            await server.store.load_item(thread_id, request.params.item_id, context)  # type: ignore[arg-type]

    def streaming_response(
        self, request: HttpRequest, result: StreamingResult, server: ChatKitServer[Any]
    ) -> StreamingHttpResponse:
        release_every = self.get_release_connections_seconds()
        events = sse_events(
            result,
            self.get_keepalive_seconds(),
            release=self.release_connections if release_every else None,
            release_every=release_every,
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
            # _iterator is what streaming_content was last set to, by us or a middleware.
            return self._iterator
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


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def sse_events(
    result: StreamingResult,
    keepalive: float,
    release: Callable[[], Awaitable[None]] | None = None,
    release_every: float | None = None,
) -> AsyncIterator[bytes]:
    """The SDK's SSE bytes, with a keep-alive comment after ``keepalive`` seconds of silence.

    Every ``release_every`` seconds, ``release()`` runs between writes (the endpoint gives
    back its database connections there, see ``release_connections``).

    The SDK's generator runs in a task of its own, so waiting for its next event can time
    out without disturbing it. What it produces is buffered without bound on purpose: the
    task then only ever waits inside the SDK's generator, which is where a cancellation must
    land (the buffer holds at most one answer). When the client goes away, the ASGI server
    cancels (or closes) us and we cancel that task: the SDK's ``handle_stream_cancelled``
    saves the partial message before we return. Events already buffered go out in one write.

    This runs once per event, so it waits on a bare future and keeps one timer per stream
    rather than ``asyncio.Queue`` and ``asyncio.timeout()``, which cost several times more.
    """
    loop = asyncio.get_running_loop()
    buffer: list[bytes] = []
    outcome: list[Any] = []  # _DONE or the exception that ended the SDK's stream
    waiter: asyncio.Future[None] | None = None

    # The SDK's generator itself: StreamingResult's __aiter__ only re-yields it.
    events = getattr(result, "json_events", result)

    async def produce() -> None:
        try:
            async for chunk in events:
                buffer.append(chunk)
                _wake(waiter)
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
        release_timer = loop.call_later(release_every, call_for_release)  # type: ignore[arg-type]

    producer = asyncio.create_task(produce())
    timer = loop.call_at(last_write + keepalive, check_silence)
    if release is not None and release_every:
        release_timer = loop.call_later(release_every, call_for_release)
    try:
        while True:
            if release_due:
                release_due = False
                try:
                    await release()  # type: ignore[misc]
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
                last_write = loop.time()
                yield chunk
                continue
            if outcome[0] is _DONE:
                return
            # Raised outside the SDK's own error handling (a row vanished mid-way, say):
            # end the stream with the SDK's error event rather than a broken connection.
            logger.error("ChatKit stream failed", exc_info=outcome[0])
            event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=False)
            payload = event.model_dump_json(by_alias=True, exclude_none=True).encode()
            yield b"data: " + payload + b"\n\n"
            return
    finally:
        for handle in (timer, release_timer):
            if handle is not None:
                handle.cancel()
        if not producer.done():
            producer.cancel()
            # Let the SDK finish its cancellation handling before we go.
            await asyncio.wait({producer})
