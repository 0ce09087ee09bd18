"""Every private name of the SDK, asgiref, Django, DRF or django-storages that we rely on.

Private names carry no compatibility promise, and version pins such as ``openai-chatkit<2``
do not protect them: a patch release may rename one. So each is touched here and nowhere
else, behind a function named for what we need, and ``PRIVATE_NAMES`` lists them all;
``tests/package/test_compat.py`` checks that the installed versions still have every one (with the
signature we call), and that no other module of the package reaches for a private name.

Undocumented internals without an underscore (asgiref's ``context_to_thread_executor``) are
treated the same way. Not listed: Django's documented underscore APIs (``Model._meta``, ``_default_manager``,
``_base_manager``), which are public despite the underscore.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.functional import LazyObject, empty

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from asgiref.sync import ThreadSensitiveContext
    from chatkit.server import ChatKitServer
    from chatkit.types import NonStreamingReq, StreamingReq, ThreadStreamEvent
    from django.core.files.storage import Storage
    from django.http import HttpRequest, StreamingHttpResponse
    from rest_framework.request import Request


@dataclass(frozen=True)
class PrivateName:
    """One private attribute we use: where it lives, and how to get an object that has it."""

    owner: str
    """Dotted path of the class that defines it."""
    name: str
    sample: Callable[[], Any]
    """Builds an object that must have the attribute (instance attributes need an instance)."""
    parameters: tuple[str, ...] | None = None
    """For a method, the parameters we call it with (``self`` included)."""
    used_for: str = ""


# -- the SDK ---------------------------------------------------------------------------------


def process_streaming_events(
    server: ChatKitServer[Any], request: StreamingReq, context: Any
) -> AsyncGenerator[ThreadStreamEvent, None]:
    """The SDK's events for a parsed streaming request, before they become SSE bytes."""
    return server._process_streaming_impl(request, context)


def encode_event(server: ChatKitServer[Any], event: ThreadStreamEvent) -> bytes:
    """One event as the SDK's ``process()`` sends it: an SSE ``data:`` line."""
    return b"data: " + server._serialize(event) + b"\n\n"


async def process_non_streaming(
    server: ChatKitServer[Any], request: NonStreamingReq, context: Any
) -> bytes:
    """The SDK's handler for a parsed non-streaming request."""
    return await server._process_non_streaming(request, context)


def apply_item_update(server: ChatKitServer[Any], pending: dict[str, Any], event: Any) -> None:
    """Apply a ``ThreadItemUpdatedEvent`` to the matching item of ``pending`` (by id), as the
    SDK keeps its own copies of unfinished items up to date."""
    server._update_pending_items(pending, event)


# -- asgiref ---------------------------------------------------------------------------------


def borrow_thread(context: ThreadSensitiveContext, executor: Executor) -> None:
    """Run ``context``'s thread-sensitive calls on ``executor`` (a single-thread executor).

    asgiref keeps the executor of each ``ThreadSensitiveContext`` in this mapping and makes a
    new single-thread one on the context's first call when there is none. (asgiref 3.13 takes
    ``ThreadSensitiveContext(executor=...)``; this works with every version Django allows.)
    """
    SyncToAsync.context_to_thread_executor[context] = executor


def return_thread(context: ThreadSensitiveContext) -> None:
    """Undo ``borrow_thread`` before ``context`` exits, which shuts down its executor."""
    SyncToAsync.context_to_thread_executor.pop(context, None)


# -- Django ----------------------------------------------------------------------------------


class _CSRFCheck(CsrfViewMiddleware):
    # DRF's trick (rest_framework.authentication.CSRFCheck): the middleware's checks, with
    # _reject returning the failure reason instead of a 403 page.
    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _no_response(request: HttpRequest) -> None:
    return None


def csrf_failure(request: HttpRequest) -> str | None:
    """Why ``request`` fails Django's CSRF checks, or ``None`` when it passes."""
    check = _CSRFCheck(_no_response)  # type: ignore[arg-type]  # DRF's CSRFCheck trick: no real view
    check.process_request(request)
    return check.process_view(request, None, (), {})  # type: ignore[arg-type,return-value]  # _reject gives the reason


def lazy_value(obj: LazyObject[Any]) -> Any:
    """What a ``LazyObject`` wraps, or ``None`` while it has not been evaluated."""
    wrapped = obj._wrapped
    return None if wrapped is empty else wrapped


def streaming_iterator(response: StreamingHttpResponse) -> AsyncIterator[bytes]:
    """The iterator ``streaming_content`` was last set to (by the view or a middleware)."""
    # Asked only of an async response, whose chunks the endpoint makes bytes.
    iterator: AsyncIterator[bytes] = response._iterator  # type: ignore[attr-defined]  # private, not in django-stubs
    return iterator


def files_parsed(request: HttpRequest) -> bool:
    """Whether the body was parsed into ``POST``/``FILES`` (upload handlers are then fixed)."""
    return hasattr(request, "_files")


def storage_key(storage: Storage, name: str) -> str:
    """The object key django-storages' S3 backend uses for ``name`` (``location`` applied)."""
    key: str = storage._normalize_name(name)  # type: ignore[attr-defined]  # S3Storage's, not Storage's
    return key


# -- DRF -------------------------------------------------------------------------------------


def django_request(request: Request) -> HttpRequest:
    """The ``HttpRequest`` a DRF ``Request`` wraps."""
    return request._request


def unwrapped_request(request: Request | HttpRequest) -> HttpRequest:
    """``django_request`` for a DRF ``Request``; a plain ``HttpRequest`` as it is."""
    inner: HttpRequest = getattr(request, "_request", request)
    return inner


# -- Django's sessions -----------------------------------------------------------------------


def session_loaded(session: Any) -> bool:
    """Whether a ``SessionStore`` holds the data of a finished load (``_session_cache`` is set
    by a load that succeeded; one that raised leaves it missing)."""
    return hasattr(session, "_session_cache")


# -- the list the test checks ----------------------------------------------------------------


def _chatkit_server() -> Any:
    from chatkit.server import ChatKitServer

    return ChatKitServer


def _streaming_response() -> Any:
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(iter(()))


def _parsed_request() -> Any:
    from django.test import RequestFactory

    request = RequestFactory().post("/", {"field": "value"})
    request.FILES  # noqa: B018 - parses the body
    return request


def _s3_storage() -> Any:
    from storages.backends.s3 import S3Storage

    return S3Storage


def _loaded_session() -> Any:
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    session = SessionStore()
    session.get("any")  # a read loads it (an empty session here, no database needed)
    return session


def _drf_request() -> Any:
    from django.http import HttpRequest
    from rest_framework.request import Request

    return Request(HttpRequest())


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(
        "asgiref.sync.SyncToAsync",
        "context_to_thread_executor",
        lambda: SyncToAsync,
        None,
        "running requests' sync code on shared threads (borrow_thread, chatkit_django.asgi)",
    ),
    PrivateName(
        "chatkit.server.ChatKitServer",
        "_process_streaming_impl",
        _chatkit_server,
        ("self", "request", "context"),
        "the events of a streaming answer, to add the thread's title (process_streaming_events)",
    ),
    PrivateName(
        "chatkit.server.ChatKitServer",
        "_serialize",
        _chatkit_server,
        ("self", "obj"),
        "encoding the events as the SDK does (encode_event)",
    ),
    PrivateName(
        "chatkit.server.ChatKitServer",
        "_process_non_streaming",
        _chatkit_server,
        ("self", "request", "context"),
        "answering a request the endpoint already parsed (process_non_streaming)",
    ),
    PrivateName(
        "chatkit.server.ChatKitServer",
        "_update_pending_items",
        _chatkit_server,
        ("self", "pending_items", "event"),
        "the text so far of an answer still running, for partial saves (apply_item_update)",
    ),
    PrivateName(
        "django.middleware.csrf.CsrfViewMiddleware",
        "_reject",
        lambda: CsrfViewMiddleware,
        ("self", "request", "reason"),
        "CSRF checks that return the reason instead of a 403 page (csrf_failure)",
    ),
    PrivateName(
        "django.utils.functional.LazyObject",
        "_wrapped",
        lambda: LazyObject,
        None,
        "reading request.user only if AuthenticationMiddleware already loaded it (lazy_value)",
    ),
    PrivateName(
        "django.http.StreamingHttpResponse",
        "_iterator",
        _streaming_response,
        None,
        "handing SSE chunks to the ASGI handler unwrapped (streaming_iterator)",
    ),
    PrivateName(
        "django.http.HttpRequest",
        "_files",
        _parsed_request,
        None,
        "adding an upload handler only while the body is unread (files_parsed)",
    ),
    PrivateName(
        "storages.backends.s3.S3Storage",
        "_normalize_name",
        _s3_storage,
        ("self", "name"),
        "the S3 key of a stored name, for ranged reads and presigned PUTs (storage_key)",
    ),
    PrivateName(
        "rest_framework.request.Request",
        "_request",
        _drf_request,
        None,
        "the HttpRequest behind a DRF request, for contexts and URLs (django_request)",
    ),
    PrivateName(
        "django.contrib.sessions.backends.base.SessionBase",
        "_session_cache",
        _loaded_session,
        None,
        "telling a half-read session from a loaded one after a database error (session_loaded)",
    ),
)
