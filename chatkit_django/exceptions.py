"""Errors, in the one JSON shape every view of the app answers with: DRF's
``{"detail": ..., "code": ...}``.

DRF views get it through ``exception_handler`` (set on our API views); the native async
endpoint builds the same body with ``error_response``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chatkit_django._internal.compat import unwrapped_request
from chatkit_django.reconnect import DATABASE_ERRORS, forget_half_read_session

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger(__name__)

#: ``Retry-After`` (seconds) of a 503 ``database_unavailable``.
DATABASE_RETRY_AFTER = 1


def error_response(detail: StrOrPromise, code: str, status_code: int) -> JsonResponse:
    """A JSON error response for views that are not DRF views."""
    return JsonResponse({"detail": str(detail), "code": code}, status=status_code)


#: ``Retry-After`` (seconds) of a ``server_busy`` answer.
BUSY_RETRY_AFTER = 1


def is_pool_exhausted(error: BaseException) -> bool:
    """Whether ``error`` is psycopg's pool giving up (``PoolTimeout``), or Django's wrapper of it.

    The pool waits its ``timeout`` for a free connection, then raises: the worker has more
    requests to serve than database connections (see Deploy streaming).
    """
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # no pool installed, no pool to exhaust
        return False
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout):
            return True
        seen = seen.__cause__
    return False


def server_busy_response() -> JsonResponse:
    """503 ``server_busy`` with ``Retry-After``: no database connection was free in time."""
    response = error_response(_("The server is busy. Try again in a moment."), "server_busy", 503)
    response["Retry-After"] = str(BUSY_RETRY_AFTER)
    return response


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (down, restarting, no pooled connection in
    time) rather than a bug: such requests are answered 503 ``database_unavailable``."""
    return isinstance(error, DATABASE_ERRORS)


def database_unavailable_response(
    error: BaseException, what: str, request: HttpRequest | None = None
) -> JsonResponse:
    """503 ``database_unavailable`` with ``Retry-After``, for ``error`` raised while ``what``
    ran, and logged with its traceback. The one place a database failure becomes an answer
    for the views that are not DRF views (DRF views: ``exception_handler``). A pool that
    gave no connection in time is ``server_busy_response()`` instead. A session of
    ``request`` whose load failed is not kept (``forget_half_read_session``)."""
    log_database_unavailable(error, what)
    if request is not None:
        forget_half_read_session(request)
    if is_pool_exhausted(error):
        return server_busy_response()
    exc = DatabaseUnavailable()
    response = error_response(str(exc.detail), exc.default_code, exc.status_code)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def log_database_unavailable(error: BaseException, what: str) -> None:
    logger.warning("%s: the database is unavailable, answered 503", what, exc_info=error)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the error ``code`` beside ``detail``.

    Django's own refusals of a request body (too many fields or files, form data over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``) are ``SuspiciousOperation``s, which DRF leaves to
    Django's HTML 400 page; they are answered in our shape here. A database failure is a
    503 ``database_unavailable`` with ``Retry-After`` (``is_database_unavailable``).
    """
    if is_database_unavailable(exc):
        view = context.get("view")
        log_database_unavailable(exc, type(view).__name__ if view is not None else "A view")
        request = context.get("request")
        if request is not None:
            forget_half_read_session(unwrapped_request(request))
        busy = is_pool_exhausted(exc)
        exc = DatabaseUnavailable()
        response = drf_exception_handler(exc, context)
        if response is not None:
            response.data = {"detail": str(exc.detail), "code": exc.default_code}
            if busy:  # as server_busy_response()
                response.data = {
                    "detail": str(_("The server is busy. Try again in a moment.")),
                    "code": "server_busy",
                }
            response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):
        exc = BadRequest(str(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        codes = exc.get_codes()
        if isinstance(response.data, dict) and isinstance(codes, str):
            response.data = {"detail": response.data.get("detail", str(exc.detail)), "code": codes}
        elif isinstance(codes, dict | list):
            response.data = {"detail": exc.detail, "code": "invalid"}
    return response


class NotFound(APIException):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = _("Not found.")
    default_code = "not_found"


class BadRequest(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The request could not be read.")
    default_code = "bad_request"


class InvalidCursor(BadRequest):
    """A page cursor we did not sign, or an old-style cursor (an id) that names no row."""

    default_detail = _("The page cursor is not valid; list again from the start.")
    default_code = "invalid_cursor"


class InvalidScope(BadRequest):
    """The scope the context names cannot be stored (not a string, a NUL, too long)."""

    default_detail = _("The scope of this request is not valid.")
    default_code = "invalid_scope"


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is larger than CHATKIT['MAX_REQUEST_BYTES'].")
    default_code = "request_too_large"


class NoFile(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Send the file as the multipart form field 'file'.")
    default_code = "no_file"


class EmptyFile(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The file is empty.")
    default_code = "empty_file"


class AttachmentTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The file is larger than CHATKIT['MAX_UPLOAD_BYTES'].")
    default_code = "attachment_too_large"


class StoredFileTooLarge(APIException):
    """The stored bytes grew past the limit after they were checked (replaced out of band):
    they are neither read nor served."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _(
        "The stored file is larger than CHATKIT['MAX_UPLOAD_BYTES'] and is not served."
    )
    default_code = "stored_file_too_large"


class UnsupportedAttachmentType(APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = _("This file type is not accepted (see CHATKIT['ALLOWED_MIME_TYPES']).")
    default_code = "unsupported_attachment_type"


class ContentMismatch(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The file's content does not match its declared type.")
    default_code = "content_mismatch"


class InvalidUploadToken(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = _("The upload URL is invalid, expired or already used.")
    default_code = "invalid_upload_token"


class InvalidPreviewSignature(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = _("The link is invalid or expired; reload the conversation for a new one.")
    default_code = "invalid_signature"


class DatabaseUnavailable(APIException):
    """The database could not be reached (down, restarting) or gave no connection in time."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The database is unavailable; try again in a moment.")
    default_code = "database_unavailable"


class StorageUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The file could not be stored; try again.")
    default_code = "storage_unavailable"


class InvalidAttachments(APIException):
    """A message names the same attachment twice, or more than the per-message maximum."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The message names too many attachments.")
    default_code = "too_many_attachments"


class ThreadNotActive(APIException):
    """The thread is locked or closed: it takes no new input (ChatKit.js hides the composer)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("This thread takes no new input.")
    default_code = "thread_not_active"


class AlreadyAnswered(APIException):
    """The pending item was answered already (possibly by a request racing this one)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("This item was answered already.")
    default_code = "already_answered"


class ConversationRefused(APIException):
    """A conversation started or continued from server code was refused before anything was
    saved (``chatkit_django.conversations``). A DRF view that lets it through answers in the
    app's error shape."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_detail = _("The conversation could not be started.")
    default_code = "conversation_refused"


class UnknownUser(ConversationRefused):
    """No user with that primary key (or the user object was never saved, or was deleted)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_detail = _("No such user.")
    default_code = "unknown_user"


class InactiveUser(ConversationRefused):
    """The user exists but ``is_active`` is false: they could not sign in to read it."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = _("The user is inactive.")
    default_code = "inactive_user"


class UnknownThread(ConversationRefused):
    """No thread with that id that the user may change: missing, or someone else's (as for the
    endpoint, the two are not told apart)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_detail = _("No such thread for this user.")
    default_code = "thread_not_found"


class AnswerInProgress(APIException):
    """The thread's last answer is still running in the background (``ON_DISCONNECT``)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("This thread is still answering; send again once the answer is done.")
    default_code = "answer_in_progress"
