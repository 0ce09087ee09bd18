"""``DjangoAttachmentStore``: attachment bytes on a Django storage.

Bytes live on the ``STORAGES`` alias named by ``CHATKIT['STORAGE_ALIAS']`` (else
``"chatkit"``, else ``"default"``), under names generated from the attachment id. Metadata
lives in ``chatkit_django.Attachment``. Deleting a row deletes its bytes once the
transaction commits (see ``signals.py``), whoever deletes it: the store, a thread's cascade,
the admin or ``chatkit_cleanup``.
"""

from __future__ import annotations

import logging
import secrets
import sys
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from chatkit.store import AttachmentStore, NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)
from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from pydantic import AnyUrl

from chatkit_django import exceptions
from chatkit_django._internal.compat import storage_key
from chatkit_django._internal.files import (
    SNIFF_BYTES,
    UploadTooLarge,
    bytes_match_type,
    display_name,
    is_image,
    mime_allowed,
    normalize_mime,
    storage_name,
)
from chatkit_django._internal.nul import names_nothing
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import ChatKitContext
from chatkit_django.ids import generate_id
from chatkit_django.permissions import sign_preview

logger = logging.getLogger(__name__)

UPLOAD_TOKEN_SALT = "chatkit_django.upload-token"


def get_attachment_storage() -> Storage:
    """The storage named by ``CHATKIT['STORAGE_ALIAS']``, else ``"chatkit"``, else ``"default"``."""
    alias = chatkit_settings.STORAGE_ALIAS
    if alias is None:
        alias = "chatkit" if "chatkit" in settings.STORAGES else "default"
    return storages[alias]


def absolute_url(path: str, request: HttpRequest | None) -> str:
    """``CHATKIT['BASE_URL'] + path``, else an absolute URL built from the request."""
    base = chatkit_settings.BASE_URL
    if base:
        return base.rstrip("/") + path
    if request is not None:
        return request.build_absolute_uri(path)
    raise ImproperlyConfigured(
        "chatkit_django needs an absolute URL for an attachment outside a request; "
        "set CHATKIT['BASE_URL'] (e.g. 'https://example.com')."
    )


def preview_url(attachment_id: str, request: HttpRequest | None) -> str:
    """A fresh, absolute URL reading one attachment for ``PREVIEW_URL_MAX_AGE`` seconds."""
    path = reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    return f"{absolute_url(path, request)}?{urlencode({'sig': sign_preview(attachment_id)})}"


def make_upload_token(attachment_id: str, owner_pk: Any, nonce: str) -> str:
    """A signed token for one two-phase upload; the nonce makes it single use (see the view)."""
    return signing.dumps(
        {"a": attachment_id, "u": str(owner_pk), "n": nonce}, salt=UPLOAD_TOKEN_SALT
    )


def read_upload_token(token: str) -> dict[str, str]:
    """The claims of a valid, unexpired upload token; ``InvalidUploadToken`` otherwise."""
    try:
        claims = signing.loads(
            token, salt=UPLOAD_TOKEN_SALT, max_age=chatkit_settings.UPLOAD_TOKEN_MAX_AGE
        )
    except signing.BadSignature:  # includes SignatureExpired
        raise exceptions.InvalidUploadToken from None
    if not isinstance(claims, dict) or not {"a", "u", "n"} <= claims.keys():
        raise exceptions.InvalidUploadToken
    return claims


def can_presign(storage: Storage) -> bool:
    """Whether ``storage`` is django-storages' S3 backend with signed URLs.

    An S3Storage exists only once its module is imported, so the module is looked up, never
    imported: on a plain install (no boto3) importing it raises ImproperlyConfigured.
    """
    s3 = sys.modules.get("storages.backends.s3")
    if s3 is None:
        return False
    return (
        isinstance(storage, s3.S3Storage)
        and bool(storage.querystring_auth)
        and not storage.custom_domain
    )


def read_head(storage: Storage, name: str) -> bytes:
    """The first bytes of a stored file, without downloading all of it."""
    if can_presign(storage):
        # S3File.read() would download the whole object first; a ranged GET reads 16 bytes.
        key = storage_key(storage, name)
        body = storage.bucket.Object(key).get(Range=f"bytes=0-{SNIFF_BYTES - 1}")["Body"]
        return body.read()
    with storage.open(name, "rb") as f:
        return f.read(SNIFF_BYTES)


def build_attachment(
    attachment_id: str,
    name: str,
    mime_type: str,
    request: HttpRequest | None,
    upload_descriptor: AttachmentUploadDescriptor | None = None,
) -> Attachment:
    """The SDK model for an attachment; images get a fresh ``preview_url``."""
    if is_image(mime_type):
        return ImageAttachment(
            id=attachment_id,
            name=name,
            mime_type=mime_type,
            upload_descriptor=upload_descriptor,
            preview_url=preview_url(attachment_id, request),
        )
    return FileAttachment(
        id=attachment_id, name=name, mime_type=mime_type, upload_descriptor=upload_descriptor
    )


def present_attachment(attachment: Attachment, request: HttpRequest | None) -> Attachment:
    """``attachment`` with a fresh preview URL, as every response should carry it.

    Without a request or ``CHATKIT['BASE_URL']`` (e.g. in a management command) the stored
    URL is returned unchanged: there is no client to show it to.
    """
    if not isinstance(attachment, ImageAttachment):
        return attachment
    if request is None and not chatkit_settings.BASE_URL:
        return attachment
    return attachment.model_copy(
        update={"preview_url": AnyUrl(preview_url(attachment.id, request))}
    )


def confirm_upload(row: Any) -> bool:
    """Whether ``row``'s bytes have arrived; confirms a presigned S3 upload on first sight.

    A presigned PUT goes straight to S3, so the app learns of it only here: the object must
    exist, fit ``MAX_UPLOAD_BYTES`` and match its declared type, or it is deleted.
    """
    if row.uploaded_at is not None:
        return True
    name = row.file.name
    if not name or row.upload_nonce:
        return False  # still waiting for a two-phase upload through our own view
    storage = get_attachment_storage()
    try:
        if not storage.exists(name):
            return False
        size = storage.size(name)
        head = read_head(storage, name)
    except Exception:
        logger.exception("Could not check the presigned upload of attachment %s", row.pk)
        return False
    if not 0 < size <= chatkit_settings.MAX_UPLOAD_BYTES or not bytes_match_type(
        row.mime_type, head
    ):
        logger.warning("Refused the presigned upload of attachment %s", row.pk)
        delete_file(name)
        return False
    data = {**row.data, "upload_descriptor": None}
    type(row).objects.filter(pk=row.pk, uploaded_at__isnull=True).update(
        size=size, uploaded_at=timezone.now(), data=data
    )
    row.size, row.uploaded_at, row.data = size, timezone.now(), data
    return True


def delete_file(name: str) -> None:
    """Delete stored bytes, logging (not raising) a storage failure."""
    try:
        get_attachment_storage().delete(name)
    except Exception:
        logger.exception("Could not delete attachment bytes %r", name)


class DjangoAttachmentStore(AttachmentStore[ChatKitContext]):
    """The SDK's ``AttachmentStore`` over a Django storage.

    ``create_attachment`` answers ``attachments.create`` (two-phase upload) with an upload
    URL: our own upload view, authorised by a signed single-use token, or, with
    ``CHATKIT['PRESIGNED_UPLOADS']`` on an S3 storage, a presigned S3 PUT. Direct uploads go
    through ``chatkit_django.uploads.DirectUploadView`` and ``save_upload``.
    """

    #: HTTP method of two-phase uploads to our own view (it accepts POST multipart too).
    upload_method = "PUT"

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"Invalid option(s) for {type(self).__name__}: {', '.join(options)}")

    # -- hooks -----------------------------------------------------------------

    def get_storage(self) -> Storage:
        """Where bytes go. Override to pick a storage per project or per user."""
        return get_attachment_storage()

    def get_storage_name(self, attachment_id: str, mime_type: str) -> str:
        """The storage path for an attachment's bytes; never derived from the client's name."""
        return storage_name(attachment_id, mime_type)

    def generate_attachment_id(self, mime_type: str, context: ChatKitContext) -> str:
        return generate_id("attachment")

    def validate_metadata(self, mime_type: str, size: int | None) -> None:
        """Refuse a type or size before any byte is stored (415, 413, 400)."""
        if not mime_allowed(mime_type, chatkit_settings.ALLOWED_MIME_TYPES):
            raise exceptions.UnsupportedAttachmentType(
                f"Files of type {mime_type or 'unknown'!r} are not accepted "
                "(see CHATKIT['ALLOWED_MIME_TYPES'])."
            )
        if size is not None:
            if size > chatkit_settings.MAX_UPLOAD_BYTES:
                raise exceptions.AttachmentTooLarge(
                    f"The file is {size} bytes; the limit is "
                    f"{chatkit_settings.MAX_UPLOAD_BYTES} (CHATKIT['MAX_UPLOAD_BYTES'])."
                )
            if size <= 0:
                raise exceptions.EmptyFile

    def validate_head(self, mime_type: str, head: bytes) -> None:
        """Refuse bytes that are not what their declared type says (400)."""
        if not head:
            raise exceptions.EmptyFile
        if not bytes_match_type(mime_type, head):
            raise exceptions.ContentMismatch(
                f"The file's bytes are not a valid {mime_type!r} file."
            )

    # -- bytes (sync: storage backends are sync) --------------------------------

    def save_upload(self, name: str, content: Any, mime_type: str) -> str:
        """Stream ``content`` to storage under ``name``; returns the stored name.

        On any failure the partial bytes are deleted: no file is left that no row claims.
        """
        if not hasattr(content, "chunks"):
            content = File(content, name)
        content.content_type = mime_type  # S3Storage uses it as the object's ContentType
        storage = self.get_storage()
        try:
            return storage.save(name, content, max_length=500)
        except UploadTooLarge:
            delete_file(name)
            raise exceptions.AttachmentTooLarge from None
        except Exception:
            logger.exception("Storing attachment bytes %r failed", name)
            delete_file(name)
            raise exceptions.StorageUnavailable from None

    def presigned_upload_descriptor(self, name: str, mime_type: str) -> AttachmentUploadDescriptor:
        """A presigned S3 PUT for ``name``, valid ``UPLOAD_TOKEN_MAX_AGE`` seconds."""
        storage: Any = self.get_storage()
        url = storage.connection.meta.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": storage.bucket_name,
                "Key": storage_key(storage, name),
                "ContentType": mime_type,
            },
            ExpiresIn=chatkit_settings.UPLOAD_TOKEN_MAX_AGE,
            HttpMethod="PUT",
        )
        return AttachmentUploadDescriptor(
            url=url, method="PUT", headers={"Content-Type": mime_type}
        )

    # -- the SDK contract ------------------------------------------------------

    async def create_attachment(
        self, input: AttachmentCreateParams, context: ChatKitContext
    ) -> Attachment:
        """Register a pending attachment and say where its bytes go (``attachments.create``).

        The row exists from now on, but with no bytes it cannot be attached to a message
        (``DjangoStore.load_attachment`` refuses it) and ``chatkit_cleanup`` removes it later.
        """
        from chatkit_django.models import Attachment as AttachmentRow

        user = context.user
        if user is None or not user.is_authenticated:
            raise PermissionDenied("An authenticated user is required to upload files.")
        mime_type = normalize_mime(input.mime_type)
        self.validate_metadata(mime_type, input.size)
        attachment_id = self.generate_attachment_id(mime_type, context)
        name = display_name(input.name)
        request = context.request
        storage = self.get_storage()
        if chatkit_settings.PRESIGNED_UPLOADS and can_presign(storage):
            file_name = self.get_storage_name(attachment_id, mime_type)
            nonce = ""
            descriptor = await sync_to_async(self.presigned_upload_descriptor)(file_name, mime_type)
        else:
            file_name = ""
            nonce = secrets.token_urlsafe(24)
            token = make_upload_token(attachment_id, user.pk, nonce)
            path = reverse("chatkit:upload-target", kwargs={"attachment_id": attachment_id})
            descriptor = AttachmentUploadDescriptor(
                url=f"{absolute_url(path, request)}?{urlencode({'token': token})}",
                method=self.upload_method,
                headers={"Content-Type": mime_type} if self.upload_method == "PUT" else {},
            )
        attachment = build_attachment(attachment_id, name, mime_type, request, descriptor)
        await AttachmentRow.objects.acreate(
            id=attachment_id,
            owner=user,
            name=name,
            mime_type=mime_type,
            type=attachment.type,
            file=file_name,
            upload_nonce=nonce,
            data=attachment.model_dump(mode="json", by_alias=True),
        )
        return attachment

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        """Check that the user may delete it; the row's deletion then deletes the bytes.

        The SDK calls this before ``Store.delete_attachment``, which deletes the row; the
        ``post_delete`` receiver removes the bytes after that transaction commits.
        """
        from chatkit_django.models import Attachment as AttachmentRow
        from chatkit_django.permissions import user_has_access

        user = context.user
        rows = AttachmentRow.objects.filter(pk=attachment_id).only("owner_id")
        row = None if names_nothing(attachment_id) else await rows.afirst()
        if row is None or not await sync_to_async(user_has_access)(user, row, "delete"):
            raise NotFoundError(f"Attachment {attachment_id} not found")
