"""DRF views for attachment bytes: direct upload, two-phase upload target, content.

- ``upload`` (``DirectUploadView``): ChatKit.js' direct strategy POSTs multipart ``file``;
  we store the bytes, save the row and answer the Attachment JSON.
- ``upload-target`` (``UploadTargetView``): where ``attachments.create`` tells the client to
  send the bytes (PUT raw body, or POST multipart ``file``), authorised by the signed
  single-use token in the URL.
- ``attachment-content`` (``AttachmentContentView``): the bytes, to a user with access or to
  the holder of a fresh preview link; a redirect to a presigned URL on S3.

Bodies are streamed: multipart through Django's upload handlers (memory up to
``FILE_UPLOAD_MAX_MEMORY_SIZE``, then a temporary file), raw bodies chunk by chunk straight
to the storage. Nothing is read whole into memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, NoReturn

from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.utils.http import content_disposition_header
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatkit_django import exceptions
from chatkit_django._internal.compat import django_request, files_parsed
from chatkit_django._internal.files import (
    CappedFile,
    LimitedReader,
    LimitedUploadHandler,
    is_image,
)
from chatkit_django.attachments import (
    DjangoAttachmentStore,
    can_presign,
    find_attachment,
    get_django_attachment_store,
    preview_signature_valid,
    read_upload_token,
)
from chatkit_django.authentication import find_session_user, get_authenticators
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import make_context
from chatkit_django.models import Attachment
from chatkit_django.permissions import (
    HasAttachmentAccess,
    HasPreviewSignature,
    IsAuthenticatedUploader,
    user_has_access,
)
from chatkit_django.throttling import ChatKitThrottle
from chatkit_django.upload_limits import (
    largest_upload_bytes,
    max_upload_bytes,
    stored_file_too_large,
    upload_too_large,
)

logger = logging.getLogger(__name__)


class ChatKitSessionAuthentication(SessionAuthentication):
    """DRF's session authentication, also without ``AuthenticationMiddleware``.

    DRF reads the user ``AuthenticationMiddleware`` put on the request; a project that keeps
    sync middleware off its ChatKit workers (Deploy streaming) has none, so the user is found
    the way the endpoint finds it (``authentication.find_session_user``). CSRF as DRF's.
    """

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        user = getattr(django_request(request), "user", None)
        if user is None:
            user = find_session_user(django_request(request))
        if not user or not user.is_active:
            return None
        self.enforce_csrf(request)
        return (user, None)


class TokenOnlySessionAuthentication(ChatKitSessionAuthentication):
    """Session authentication without DRF's CSRF check, for the two-phase upload target.

    The URL's signed single-use token is unguessable and bound to the attachment and its
    owner, so it already does what a CSRF token would; ChatKit.js sends no CSRF header there.
    """

    def enforce_csrf(self, request: Any) -> None:
        return None


class AttachmentAPIView(APIView):
    """Shared plumbing: authentication from ``CHATKIT``, our error shape, JSON only."""

    renderer_classes = [JSONRenderer]
    throttle_classes = [ChatKitThrottle]  # scope: throttle_scope, else "other"
    session_authentication_class: type[SessionAuthentication] = ChatKitSessionAuthentication

    def get_authenticators(self) -> list[Any]:
        # The endpoint's authenticators (chatkit_django.authentication), then DRF's session.
        return [*get_authenticators(), self.session_authentication_class()]

    def get_exception_handler(self) -> Any:
        return exceptions.exception_handler

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # JSON is all these views speak, whatever the Accept header: a browser's
        # ``Accept: text/html`` gets the real answer (405, 403...), not 406.
        return super().perform_content_negotiation(request, force=True)

    def get_attachment_store(self) -> DjangoAttachmentStore:
        """The server's attachment store (``get_server().attachment_store``)."""
        return get_django_attachment_store()

    def get_context(self, request: Request) -> Any:
        """The endpoint's context for this request (``CHATKIT['CONTEXT_FACTORY']``)."""
        return async_to_sync(make_context)(django_request(request))

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body (DRF's CSRF check reads request.POST): the limit
        # must be the first upload handler to see the bytes.
        # Until a file part says its type, the largest limit of any type; then that type's.
        self.upload_limit = LimitedUploadHandler(
            largest_upload_bytes(), request, limit_for=max_upload_bytes
        )
        if not files_parsed(request):
            request.upload_handlers.insert(0, self.upload_limit)
        return super().initialize_request(request, *args, **kwargs)

    def multipart_file(self, request: Request) -> Any:
        """The uploaded ``file`` part, or the right error."""
        upload = request.FILES.get("file")
        if self.upload_limit.exceeded:
            raise upload_too_large(self.upload_limit.mime_type)
        if upload is None:
            raise exceptions.NoFile
        return upload

    def check_content_length(self, request: Request, mime_type: str) -> None:
        """413 before a byte is read when the declared length is past ``mime_type``'s limit."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_upload_bytes(mime_type):
            raise upload_too_large(mime_type, length)


class DirectUploadView(AttachmentAPIView):
    """POST multipart ``file``: store it and answer its Attachment JSON (201)."""

    parser_classes = [MultiPartParser]
    permission_classes = [IsAuthenticatedUploader]
    throttle_scope = "upload"

    def post(self, request: Request) -> Response:
        upload = self.multipart_file(request)
        attachment = self.get_attachment_store().create_from_upload(
            upload, self.get_context(request)
        )
        return Response(
            attachment.model_dump(mode="json", context={"exclude_metadata": True}),
            status=status.HTTP_201_CREATED,
        )


class UploadTargetView(AttachmentAPIView):
    """Receives a two-phase upload: PUT raw body or POST multipart ``file``.

    The token in ``?token=`` is checked before any byte is read, then spent with one
    conditional UPDATE (its nonce must still be on the row), so it works once across all
    processes and machines. A failed upload gives the token back.
    """

    parser_classes = [MultiPartParser]
    permission_classes = [AllowAny]  # the signed token authorises; see claim_token()
    session_authentication_class = TokenOnlySessionAuthentication

    def post(self, request: Request, attachment_id: str) -> Response:
        return self.receive(request, attachment_id, multipart=True)

    def put(self, request: Request, attachment_id: str) -> Response:
        return self.receive(request, attachment_id, multipart=False)

    def claim_token(self, request: Request, attachment_id: str) -> dict[str, str]:
        token = request.query_params.get("token") or request.headers.get("X-ChatKit-Upload-Token")
        if not token:
            row = find_attachment(attachment_id, "owner_id", "scope")
            if (
                row is None
                or not user_has_access(request.user, row, "change")
                or not self.get_attachment_store().in_scope(row, self.get_context(request))
            ):
                raise exceptions.NotFound
            raise exceptions.InvalidUploadToken("This upload URL needs its token.")
        claims = read_upload_token(token)
        user = request.user
        if claims["a"] != attachment_id or (user.is_authenticated and str(user.pk) != claims["u"]):
            raise exceptions.InvalidUploadToken
        return claims

    def receive(self, request: Request, attachment_id: str, *, multipart: bool) -> Response:
        claims = self.claim_token(request, attachment_id)
        attachment = self.get_attachment_store().receive_upload(
            attachment_id,
            claims,
            partial(self.read_content, request, multipart=multipart),
            django_request(request),
        )
        return Response(attachment.model_dump(mode="json", context={"exclude_metadata": True}))

    def read_content(self, request: Request, mime_type: str, *, multipart: bool) -> Any:
        """The body, held to the limit for the attachment's declared ``mime_type`` (not the
        part's): the multipart ``file``, or the raw body read chunk by chunk."""
        limit = max_upload_bytes(mime_type)
        if multipart:
            # The body is parsed on first access to request.FILES, below.
            self.upload_limit.limit, self.upload_limit.limit_for = limit, None
            self.upload_limit.mime_type = mime_type
            return self.multipart_file(request)
        self.check_content_length(request, mime_type)
        return LimitedReader(django_request(request), limit)


class AttachmentContentView(AttachmentAPIView):
    """The bytes of one attachment, with its stored content type and ``nosniff``.

    Images are served inline (previews), everything else as a download, both under a
    sandboxing CSP. On S3 with signed URLs, the answer is a redirect to a presigned GET
    valid for ``PREVIEW_URL_MAX_AGE`` seconds.
    """

    permission_classes = [HasPreviewSignature | HasAttachmentAccess]

    def get(self, request: Request, attachment_id: str) -> HttpResponseBase:
        row = self.get_object(request, attachment_id)
        if not self.get_attachment_store().confirm_upload(row):
            raise exceptions.NotFound
        response = self.serve(row)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = f"private, max-age={chatkit_settings.PREVIEW_URL_MAX_AGE}"
        return response

    def permission_denied(
        self, request: Request, message: Any = None, code: Any = None
    ) -> NoReturn:
        if request.query_params.get("sig"):
            raise exceptions.InvalidPreviewSignature
        super().permission_denied(request, message=message, code=code)

    def get_object(self, request: Request, attachment_id: str) -> Attachment:
        row = find_attachment(attachment_id)
        if row is None:
            raise exceptions.NotFound
        try:
            self.check_object_permissions(request, row)
        except (PermissionDenied, NotAuthenticated, exceptions.InvalidPreviewSignature):
            # Another user's attachment is indistinguishable from a missing one.
            raise exceptions.NotFound from None
        # A signed preview link is a grant of its own (an <img> sends no scope); otherwise
        # the attachment must be in the request's scope, as on the endpoint.
        signed = preview_signature_valid(request.query_params.get("sig"), attachment_id)
        if not signed and not self.get_attachment_store().in_scope(row, self.get_context(request)):
            raise exceptions.NotFound
        return row

    def disposition(self, row: Attachment) -> bool:
        """Whether to serve as a download (everything but verified images)."""
        return not is_image(row.mime_type)

    def get_redirect_url(self, row: Attachment) -> str | None:
        """A presigned URL to redirect to, or ``None`` to stream the bytes ourselves."""
        storage = self.get_attachment_store().get_storage(row.owner_id)
        if not can_presign(storage):
            return None
        url: str = storage.url(
            row.file.name,
            parameters={
                "ResponseContentType": row.mime_type,
                "ResponseContentDisposition": content_disposition_header(
                    self.disposition(row), row.name
                ),
            },
            expire=chatkit_settings.PREVIEW_URL_MAX_AGE,
        )
        return url

    def check_size(self, row: Attachment) -> int:
        """The stored size; 409 past its type's ``MAX_UPLOAD_BYTES``: the bytes were checked smaller, so
        they were replaced out of band, and serving them whole is what the limit forbids."""
        storage = self.get_attachment_store().get_storage(row.owner_id)
        try:
            size = storage.size(row.file.name)  # type: ignore[arg-type]  # a row with bytes has a name
        except Exception:
            # Missing bytes: FileNotFoundError, or the backend's own error (botocore's 404).
            logger.warning("Could not stat attachment bytes %r", row.file.name, exc_info=True)
            raise exceptions.NotFound from None
        if size > max_upload_bytes(row.mime_type):
            raise stored_file_too_large(row.mime_type)
        return size

    def serve(self, row: Attachment) -> HttpResponseBase:
        size = self.check_size(row)
        url = self.get_redirect_url(row)
        if url is not None:
            return HttpResponseRedirect(url)
        try:
            # The size checked is the most that is sent, should the file grow meanwhile.
            f = CappedFile(self.get_attachment_store().open_bytes(row), size)
        except (FileNotFoundError, OSError):
            raise exceptions.NotFound from None
        response = FileResponse(
            f, content_type=row.mime_type, as_attachment=self.disposition(row), filename=row.name
        )
        response["Content-Length"] = str(size)
        if isinstance(django_request(self.request), ASGIRequest):
            # Under ASGI Django reads a synchronous iterator whole into a list before sending
            # it (StreamingHttpResponse.__aiter__); an async one is sent chunk by chunk.
            response.streaming_content = _read_async(f)
        return response


async def _read_async(f: Any, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
    read = sync_to_async(f.read, thread_sensitive=False)
    while chunk := await read(chunk_size):
        yield chunk
