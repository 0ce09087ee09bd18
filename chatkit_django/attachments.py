"""``DjangoAttachmentStore``: the whole life of an attachment, on a Django storage.

One class owns every step: create pending (two-phase), receive the bytes (validate, save,
mark uploaded, roll back on failure), create uploaded (direct uploads, generated images),
confirm a presigned upload, open for reading, and delete the bytes. The views, the
converters and the commands call it; they do not touch rows or storages themselves.

Bytes live on the storage ``get_storage(owner_id)`` picks (by default the ``STORAGES`` alias
named by ``CHATKIT['STORAGE_ALIAS']``, else ``"chatkit"``, else ``"default"``), under names
generated from the attachment id. Metadata lives in ``chatkit_django.Attachment``. Deleting
a row deletes its bytes once the transaction commits (see ``signals.py``), whoever deletes
it: the store, a thread's cascade, the admin or ``chatkit_cleanup``.

Who may do what is the store's rule (``DjangoStore.has_access``), asked through the store
the server binds to this one; the acting user and request come from the store's
``get_user`` / ``get_request`` hooks, so a project's own context type works everywhere.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlencode, urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from chatkit.store import AttachmentStore, Store
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import router, transaction
from django.db.models import QuerySet
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
    guess_mime,
    is_image,
    mime_allowed,
    normalize_mime,
    storage_name,
)
from chatkit_django._internal.nul import names_nothing
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import TContext
from chatkit_django.ids import generate_id
from chatkit_django.instances import (
    attachment_storage,
    configured_storage,
    delete_stored,
    get_attachment_store,
    get_store,
    user_has_access,
)
from chatkit_django.models import Attachment as AttachmentRow
from chatkit_django.models import Thread as ThreadRow
from chatkit_django.reconnect import retry_on_dead_connection
from chatkit_django.upload_limits import max_upload_bytes, stored_file_too_large, upload_too_large

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from storages.backends.s3 import S3Storage

    from chatkit_django.context import UserLike

logger = logging.getLogger(__name__)

UPLOAD_TOKEN_SALT = "chatkit_django.upload-token"
PREVIEW_SALT = "chatkit_django.attachment-preview"


def get_attachment_storage() -> Storage:
    """The attachment store's storage for rows without an owner in view (its default)."""
    return attachment_storage(None)


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


# -- preview links ------------------------------------------------------------


def sign_preview(attachment_id: str) -> str:
    """A token granting read access to one attachment for ``PREVIEW_URL_MAX_AGE`` seconds."""
    return signing.dumps(attachment_id, salt=PREVIEW_SALT)


def preview_signature_valid(token: str | None, attachment_id: str) -> bool:
    if not token:
        return False
    try:
        value: object = signing.loads(
            token, salt=PREVIEW_SALT, max_age=chatkit_settings.PREVIEW_URL_MAX_AGE
        )
    except signing.BadSignature:  # SignatureExpired is a BadSignature
        return False
    return value == attachment_id


def preview_url(attachment_id: str, request: HttpRequest | None, *, signed: bool = True) -> str:
    """An absolute URL of the content view; signed, it reads the attachment for
    ``PREVIEW_URL_MAX_AGE`` seconds without a session (``<img src>`` sends no bearer token).

    Unsigned, it works only for a session that may view the attachment.
    """
    path = reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    url = absolute_url(path, request)
    return f"{url}?{urlencode({'sig': sign_preview(attachment_id)})}" if signed else url


def build_attachment(
    attachment_id: str,
    name: str,
    mime_type: str,
    request: HttpRequest | None,
    upload_descriptor: AttachmentUploadDescriptor | None = None,
    *,
    signed: bool = True,
) -> Attachment:
    """The SDK model for an attachment; images get a fresh ``preview_url``."""
    if is_image(mime_type):
        return ImageAttachment(
            id=attachment_id,
            name=name,
            mime_type=mime_type,
            upload_descriptor=upload_descriptor,
            preview_url=preview_url(attachment_id, request, signed=signed),
        )
    return FileAttachment(
        id=attachment_id, name=name, mime_type=mime_type, upload_descriptor=upload_descriptor
    )


def present_attachment(
    attachment: Attachment, request: HttpRequest | None, *, may_view: bool = True
) -> Attachment:
    """``attachment`` as a response shows it to a caller who may (not) view it.

    A caller who may view it gets a fresh signed preview URL; anyone else gets the unsigned
    URL, which the content view answers only for those the access rule lets in. Without a
    request or ``CHATKIT['BASE_URL']`` (e.g. in a management command) the stored URL is
    kept, without its signature for a caller who may not view the attachment.
    """
    if not isinstance(attachment, ImageAttachment):
        return attachment
    if request is None and not chatkit_settings.BASE_URL:
        if may_view:
            return attachment
        parts = urlsplit(str(attachment.preview_url))
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))
    else:
        url = preview_url(attachment.id, request, signed=may_view)
    return attachment.model_copy(update={"preview_url": AnyUrl(url)})


# -- two-phase upload tokens --------------------------------------------------


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


# -- storage helpers ----------------------------------------------------------


def is_s3(storage: Storage) -> TypeGuard[S3Storage]:
    """Whether ``storage`` is django-storages' S3 backend.

    An S3Storage exists only once its module is imported, so the module is looked up, never
    imported: on a plain install (no boto3) importing it raises ImproperlyConfigured.
    """
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and isinstance(storage, s3.S3Storage)


def can_presign(storage: Storage) -> TypeGuard[S3Storage]:
    """Whether ``storage`` is django-storages' S3 backend with signed URLs."""
    return is_s3(storage) and bool(storage.querystring_auth) and not storage.custom_domain


def read_start(storage: Storage, name: str, size: int) -> bytes:
    """The first ``size`` bytes of a stored file, without downloading all of it."""
    if is_s3(storage):
        # S3File.read() would download the whole object first; a ranged GET reads ``size``.
        body = storage.bucket.Object(storage_key(storage, name)).get(Range=f"bytes=0-{size - 1}")
        start: bytes = body["Body"].read()
        return start
    with storage.open(name, "rb") as f:
        start = f.read(size)
        return start


def find_attachment(attachment_id: str, *fields: str) -> AttachmentRow | None:
    """The row, or ``None``; ids no row can have (a NUL, PostgreSQL refuses) are not looked up."""
    if names_nothing(attachment_id):
        return None
    rows = AttachmentRow.objects.filter(pk=attachment_id)
    return (rows.only(*fields) if fields else rows).first()


@retry_on_dead_connection
def insert_attachment(*, savepoint: bool = False, **fields: Any) -> AttachmentRow:
    """Insert one attachment row: the only place rows are created.

    ``savepoint=True`` for an id the client chose: a duplicate then does not break an
    enclosing transaction. Ids generated here are unique; they need none. Retried once on a
    fresh connection when it meets a dead one.
    """
    db = router.db_for_write(AttachmentRow)  # objects.db is the read alias
    rows = AttachmentRow.objects.using(db)
    if not savepoint:
        return rows.create(**fields)
    with transaction.atomic(using=db):
        return rows.create(**fields)


@retry_on_dead_connection
def update_attachments(rows: QuerySet[AttachmentRow], **fields: Any) -> int:
    """``rows.update(**fields)``, retried once on a fresh connection when it meets a dead one:
    every change of an attachment row after its insert goes through here."""
    return rows.update(**fields)


class DjangoAttachmentStore(AttachmentStore[TContext]):
    """The SDK's ``AttachmentStore`` over a Django storage, and the attachment lifecycle.

    ``create_attachment`` answers ``attachments.create`` (two-phase upload) with an upload
    URL: our own upload view, authorised by a signed single-use token, or, with
    ``CHATKIT['PRESIGNED_UPLOADS']`` on an S3 storage, a presigned S3 PUT. Direct uploads go
    through ``chatkit_django.uploads.DirectUploadView`` and ``create_from_upload``. Generic
    in the context type, as ``DjangoStore`` is.
    """

    #: HTTP method of two-phase uploads to our own view (it accepts POST multipart too).
    upload_method = "PUT"

    #: Where presigned PUTs write. Nothing reads there: confirming an upload copies the
    #: checked object to a name of its own (``get_storage_name`` plus a random suffix).
    upload_prefix = "chatkit/uploads"

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"Invalid option(s) for {type(self).__name__}: {', '.join(options)}")
        self.store: Store[TContext] | None = None

    def bind(self, store: Store[TContext]) -> None:
        """Use ``store``'s ``has_access`` / ``get_user`` / ``get_request`` (the server calls it)."""
        self.store = store

    def get_store(self) -> Store[TContext]:
        return self.store if self.store is not None else get_store()

    # -- hooks -----------------------------------------------------------------

    def get_storage(self, owner_id: Any = None) -> Storage:
        """Where the bytes of ``owner_id``'s attachments go. Override to pick a storage per
        project, tenant or user; every read, write and delete of bytes asks this."""
        return configured_storage()

    def get_storage_name(self, attachment_id: str, mime_type: str) -> str:
        """The storage path for an attachment's bytes; never derived from the client's name."""
        return storage_name(attachment_id, mime_type)

    def get_upload_name(self, attachment_id: str, mime_type: str) -> str:
        """The storage path a presigned PUT writes, under ``upload_prefix``.

        The URL stays valid after the upload is confirmed, so this is never the name the
        bytes are read from: a PUT replayed later writes only here.
        """
        return storage_name(attachment_id, mime_type, prefix=self.upload_prefix)

    def generate_attachment_id(self, mime_type: str, context: TContext) -> str:
        return generate_id("attachment")

    def validate_metadata(self, mime_type: str, size: int | None) -> None:
        """Refuse a type or size before any byte is stored (415, 413, 400)."""
        if not mime_allowed(mime_type, chatkit_settings.ALLOWED_MIME_TYPES):
            raise exceptions.UnsupportedAttachmentType(
                f"Files of type {mime_type or 'unknown'!r} are not accepted "
                "(see CHATKIT['ALLOWED_MIME_TYPES'])."
            )
        if size is not None:
            if size > max_upload_bytes(mime_type):
                raise upload_too_large(mime_type, size)
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

    # -- who is acting (the store's hooks) -------------------------------------

    def get_user(self, context: TContext) -> AbstractBaseUser | None:
        """The authenticated user acting in ``context`` (``Store.get_user``), else ``None``."""
        get_user = getattr(self.get_store(), "get_user", None)
        user = get_user(context) if get_user is not None else getattr(context, "user", None)
        return user if user is not None and user.is_authenticated else None

    def get_request(self, context: TContext) -> HttpRequest | None:
        """The request of ``context`` (``Store.get_request``), ``None`` outside one."""
        get_request: Callable[[TContext], HttpRequest | None] | None = getattr(
            self.get_store(), "get_request", None
        )
        if get_request is not None:
            return get_request(context)
        return getattr(context, "request", None)

    def get_scope(self, context: TContext | None) -> str | None:
        """The scope of ``context`` by the store's hook (``DjangoStore.scope_of``), checked;
        ``None`` (unscoped) without a context."""
        if context is None:
            return None
        scope_of = getattr(self.get_store(), "scope_of", None)
        return scope_of(context) if scope_of is not None else None

    def in_scope(self, row: AttachmentRow, context: TContext) -> bool:
        """Whether ``row`` is in the scope of ``context`` (always, for an unscoped one)."""
        scope = self.get_scope(context)
        return scope is None or row.scope == scope

    def new_scope(self, context: TContext | None, thread_id: str | None = None) -> str:
        """The scope of a new attachment: its thread's, else the one ``context`` is in."""
        scope = self.get_scope(context)
        if scope is None and thread_id is not None:
            # An unscoped context (a task, a command) writing to a thread of some scope.
            scope = ThreadRow.objects.filter(pk=thread_id).values_list("scope", flat=True).first()
        return scope or ""

    async def has_access(self, user: UserLike | None, row: AttachmentRow, action: str) -> bool:
        """The store's access rule (``DjangoStore.has_access``) for ``row``; owner only without."""
        if user is None or not user.is_authenticated:
            return False
        rule: Callable[[UserLike, AttachmentRow, str], Awaitable[bool]] | None = getattr(
            self.get_store(), "has_access", None
        )
        if rule is None:
            return bool(row.owner_id == user.pk)
        return await rule(user, row, action)

    # -- bytes (sync: storage backends are sync) --------------------------------

    def save_bytes(self, storage: Storage, name: str, content: Any, mime_type: str) -> str:
        """Stream ``content`` to ``storage`` under ``name``; returns the stored name.

        On any failure the partial bytes are deleted: no file is left that no row claims.
        """
        if not hasattr(content, "chunks"):
            content = File(content, name)
        content.content_type = mime_type  # S3Storage uses it as the object's ContentType
        try:
            return storage.save(name, content, max_length=500)
        except UploadTooLarge:
            delete_stored(storage, name)
            raise upload_too_large(mime_type) from None
        except Exception:
            logger.exception("Storing attachment bytes %r failed", name)
            delete_stored(storage, name)
            raise exceptions.StorageUnavailable from None

    def open_bytes(self, row: AttachmentRow) -> Any:
        """The stored bytes of ``row``, opened for reading (``FileNotFoundError`` / ``OSError``)."""
        return self.get_storage(row.owner_id).open(row.file.name, "rb")  # type: ignore[arg-type]  # a row with bytes has a name

    def read_bytes(self, row: AttachmentRow, limit: int | None = None) -> bytes | None:
        """The stored bytes (at most ``limit``), or ``None`` when they are missing.

        Never more than ``MAX_UPLOAD_BYTES`` for the row's type: a stored file grown past it
        (replaced out of band) raises ``StoredFileTooLarge`` instead of being read whole.
        """
        if not row.file.name:
            return None
        cap = max_upload_bytes(row.mime_type)
        size = cap + 1 if limit is None else min(limit, cap)
        try:
            content = read_start(self.get_storage(row.owner_id), row.file.name, size)
        except (FileNotFoundError, OSError):
            return None
        except Exception:
            # Storage backends raise their own errors (botocore's ClientError...).
            logger.warning("Could not read attachment bytes %r", row.file.name, exc_info=True)
            return None
        if len(content) > cap:
            logger.warning("Attachment %s is larger than MAX_UPLOAD_BYTES; not read", row.pk)
            raise stored_file_too_large(row.mime_type)
        return content

    def delete_bytes(self, owner_id: Any, name: str) -> None:
        """Delete stored bytes, logging (not raising) a storage failure."""
        delete_stored(self.get_storage(owner_id), name)

    def presigned_upload_descriptor(
        self, storage: Any, name: str, mime_type: str
    ) -> AttachmentUploadDescriptor:
        """A presigned S3 PUT for ``name``, valid ``UPLOAD_TOKEN_MAX_AGE`` seconds."""
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

    # -- uploaded in one go: direct uploads, generated images -------------------

    def create_uploaded(
        self,
        content: Any,
        *,
        name: str,
        mime_type: str,
        owner: AbstractBaseUser,
        request: HttpRequest | None,
        thread_id: str | None = None,
        attachment_id: str | None = None,
        context: TContext | None = None,
    ) -> Attachment:
        """Store ``content`` and insert its row, already uploaded; no row, no bytes.

        Without ``attachment_id``, ``generate_attachment_id`` names it (a plain generated id
        when no ``context`` is given either).
        """
        if attachment_id is None:
            attachment_id = (
                generate_id("attachment")
                if context is None
                else self.generate_attachment_id(mime_type, context)
            )
        attachment = build_attachment(attachment_id, name, mime_type, request)
        if thread_id is not None:
            attachment = attachment.model_copy(update={"thread_id": thread_id})
        scope = self.new_scope(context, thread_id)
        storage = self.get_storage(owner.pk)
        stored = self.save_bytes(
            storage, self.get_storage_name(attachment_id, mime_type), content, mime_type
        )
        try:
            row = insert_attachment(
                id=attachment_id,
                owner=owner,
                thread_id=thread_id,
                scope=scope,
                name=name,
                mime_type=mime_type,
                type=attachment.type,
                size=content.size,
                file=stored,
                uploaded_at=timezone.now(),
                data=attachment.model_dump(mode="json", by_alias=True),
            )
        except BaseException:
            delete_stored(storage, stored)
            raise
        return self.present_new(attachment, owner, row, request)

    def present_new(
        self,
        attachment: Attachment,
        user: UserLike | None,
        row: AttachmentRow,
        request: HttpRequest | None,
    ) -> Attachment:
        """A new attachment as its uploader's response shows it: a signed preview only if the
        access rule lets them view it."""
        may_view = user_has_access(user, row, "view", store=self.get_store())
        return attachment if may_view else present_attachment(attachment, request, may_view=False)

    def create_from_upload(self, upload: Any, context: TContext) -> Attachment:
        """A direct upload (a multipart file): validate, store, insert."""
        user = self.get_user(context)
        if user is None:
            raise PermissionDenied("An authenticated user is required to upload files.")
        mime_type = normalize_mime(upload.content_type) or guess_mime(upload.name)
        self.validate_metadata(mime_type, upload.size)
        self.validate_head(mime_type, upload.read(SNIFF_BYTES))
        upload.seek(0)
        return self.create_uploaded(
            upload,
            name=display_name(upload.name),
            mime_type=mime_type,
            owner=user,
            request=self.get_request(context),
            context=context,
        )

    def create_generated_image(
        self, content: bytes, *, image_id: str, thread_id: str, context: TContext
    ) -> Attachment:
        """A model-generated image, stored as an attachment of ``thread_id``."""
        user = self.get_user(context)
        if user is None:
            raise PermissionDenied("An authenticated user is required to store images.")
        return self.create_uploaded(
            ContentFile(content),
            name=f"{image_id}.png",
            mime_type="image/png",
            owner=user,
            request=self.get_request(context),
            thread_id=thread_id,
            attachment_id=generate_id("attachment"),
            context=context,
        )

    # -- two-phase: pending row, then the bytes ---------------------------------

    async def create_attachment(
        self, input: AttachmentCreateParams, context: TContext
    ) -> Attachment:
        """Register a pending attachment and say where its bytes go (``attachments.create``).

        The row exists from now on, but with no bytes it cannot be attached to a message
        (``DjangoStore.load_attachment`` refuses it) and ``chatkit_cleanup`` removes it later.
        """
        user = self.get_user(context)
        if user is None:
            raise PermissionDenied("An authenticated user is required to upload files.")
        mime_type = normalize_mime(input.mime_type)
        self.validate_metadata(mime_type, input.size)
        scope = self.get_scope(context) or ""
        attachment_id = self.generate_attachment_id(mime_type, context)
        name = display_name(input.name)
        request = self.get_request(context)
        storage = self.get_storage(user.pk)
        if chatkit_settings.PRESIGNED_UPLOADS and can_presign(storage):
            # Until confirmed, the row names the upload key (so deleting it deletes an upload).
            file_name = self.get_upload_name(attachment_id, mime_type)
            nonce = ""
            descriptor = await sync_to_async(self.presigned_upload_descriptor)(
                storage, file_name, mime_type
            )
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
        row = await sync_to_async(insert_attachment)(
            id=attachment_id,
            owner=user,
            scope=scope,
            name=name,
            mime_type=mime_type,
            type=attachment.type,
            file=file_name,
            upload_nonce=nonce,
            data=attachment.model_dump(mode="json", by_alias=True),
        )
        if await self.has_access(user, row, "view"):
            return attachment
        return present_attachment(attachment, request, may_view=False)

    def receive_upload(
        self,
        attachment_id: str,
        claims: dict[str, Any],
        read_content: Callable[[str], Any],
        request: HttpRequest | None,
    ) -> Attachment:
        """The bytes of a two-phase upload, for the holder of a valid token's ``claims``.

        The token is spent with one conditional UPDATE (its nonce must still be on the row),
        so it works once across all processes and machines; ``read_content(mime_type)`` then
        gives the body (a multipart file, or a ``LimitedReader``), held to the limit for the
        attachment's declared type (``upload_limits.max_upload_bytes``). A failed upload gives the token
        back, so the client may try again.
        """
        rows = AttachmentRow.objects.filter(pk=attachment_id, uploaded_at__isnull=True)
        spent = update_attachments(
            rows.filter(owner_id=claims["u"], upload_nonce=claims["n"]).exclude(upload_nonce=""),
            upload_nonce="",
        )
        if not spent:
            raise exceptions.InvalidUploadToken
        try:
            return self.store_pending_bytes(attachment_id, read_content, request)
        except BaseException:
            update_attachments(rows.filter(upload_nonce=""), upload_nonce=claims["n"])
            raise

    def store_pending_bytes(
        self, attachment_id: str, read_content: Callable[[str], Any], request: HttpRequest | None
    ) -> Attachment:
        """Validate and save the bytes of a pending row, then mark it uploaded."""
        row = None
        if not names_nothing(attachment_id):
            row = AttachmentRow.objects.filter(pk=attachment_id).select_related("owner").first()
        if row is None:  # deleted (attachments.delete) since the token was spent
            raise exceptions.NotFound
        mime_type = row.mime_type
        content = read_content(mime_type)
        head = getattr(content, "head", None)
        if head is None:  # a multipart file: its size is known before it is stored
            self.validate_metadata(mime_type, content.size)
            head = content.read(SNIFF_BYTES)
            content.seek(0)
        self.validate_head(mime_type, head)
        storage = self.get_storage(row.owner_id)
        stored = self.save_bytes(
            storage, self.get_storage_name(attachment_id, mime_type), content, mime_type
        )
        try:
            size = content.size
            self.validate_metadata(mime_type, size)
            attachment = build_attachment(attachment_id, row.name, mime_type, request)
            data = {**row.data, **attachment.model_dump(mode="json", by_alias=True)}
            data["upload_descriptor"] = None
            saved = update_attachments(
                AttachmentRow.objects.filter(pk=attachment_id, uploaded_at__isnull=True),
                file=stored,
                size=size,
                uploaded_at=timezone.now(),
                data=data,
            )
            if not saved:
                # Deleted while its bytes streamed in: they must not outlive it.
                raise exceptions.NotFound
        except BaseException:
            delete_stored(storage, stored)
            raise
        return self.present_new(attachment, row.owner, row, request)

    def confirm_upload(self, row: AttachmentRow) -> bool:
        """Whether ``row``'s bytes have arrived; confirms a presigned S3 upload on first sight.

        A presigned PUT goes straight to S3, so the app learns of it only here. The object at
        the upload key is first copied server-side (no download) to a name of its own, which
        no URL can write; the copy is then checked (its type's ``MAX_UPLOAD_BYTES``, declared type) and
        the row names it from now on. The upload key is deleted. The presigned URL stays
        valid until it expires, but what it writes later is never read.
        """
        if row.uploaded_at is not None:
            return True
        upload = row.file.name
        if not upload or row.upload_nonce:
            return False  # still waiting for a two-phase upload through our own view
        storage = self.get_storage(row.owner_id)
        if not can_presign(storage):
            return False
        stored = self.copy_presigned_upload(storage, row)
        if stored is None:
            # Not uploaded yet, or another request confirmed it (and deleted the upload key).
            return self.refresh_confirmed(row)
        try:
            size = self.check_presigned_upload(storage, row, stored)
        except Exception:
            logger.exception("Could not check the presigned upload of attachment %s", row.pk)
            delete_stored(storage, stored)
            return False
        if size is None:
            logger.warning("Refused the presigned upload of attachment %s", row.pk)
            delete_stored(storage, stored)
            delete_stored(storage, upload)
            return self.refresh_confirmed(row)
        data = {**row.data, "upload_descriptor": None}
        now = timezone.now()
        confirmed = update_attachments(
            AttachmentRow.objects.filter(pk=row.pk, uploaded_at__isnull=True, file=upload),
            file=stored,
            size=size,
            uploaded_at=now,
            data=data,
        )
        if not confirmed:
            # Deleted meanwhile, or confirmed by another request with a copy of its own.
            delete_stored(storage, stored)
            return self.refresh_confirmed(row)
        delete_stored(storage, upload)
        row.file, row.size, row.uploaded_at, row.data = stored, size, now, data
        return True

    def refresh_confirmed(self, row: AttachmentRow) -> bool:
        """Whether ``row`` has been confirmed by another request; if so ``row`` gets its
        stored name, size and data."""
        fresh = (
            AttachmentRow.objects.filter(pk=row.pk, uploaded_at__isnull=False)
            .only("file", "size", "uploaded_at", "data")
            .first()
        )
        if fresh is None:
            return False
        row.file, row.size, row.uploaded_at, row.data = (
            fresh.file,
            fresh.size,
            fresh.uploaded_at,
            fresh.data,
        )
        return True

    def copy_presigned_upload(self, storage: Any, row: AttachmentRow) -> str | None:
        """Copy the object at ``row``'s upload key, server-side, to a new name (``get_storage_name``
        plus a random suffix, so concurrent confirmations never share one); the new name, or
        ``None`` when there is nothing to copy or the copy failed (nothing is left then)."""
        from botocore.exceptions import ClientError

        root, ext = os.path.splitext(self.get_storage_name(row.pk, row.mime_type))
        name: str = storage.get_alternative_name(root, ext)
        try:
            storage.connection.meta.client.copy_object(
                Bucket=storage.bucket_name,
                Key=storage_key(storage, name),
                CopySource={
                    "Bucket": storage.bucket_name,
                    "Key": storage_key(storage, row.file.name),  # type: ignore[arg-type]  # as above
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey"}:
                logger.warning(
                    "Could not copy the presigned upload of attachment %s", row.pk, exc_info=True
                )
            delete_stored(storage, name)  # in case S3 copied before the error reached us
            return None
        except Exception:
            logger.warning(
                "Could not copy the presigned upload of attachment %s", row.pk, exc_info=True
            )
            delete_stored(storage, name)
            return None
        return name

    def check_presigned_upload(self, storage: Storage, row: AttachmentRow, name: str) -> int | None:
        """The size of the copied upload at ``name`` if it is acceptable (fits
        ``MAX_UPLOAD_BYTES`` for that type, matches it), else ``None``."""
        size = storage.size(name)
        if not 0 < size <= max_upload_bytes(row.mime_type):
            return None
        if not bytes_match_type(row.mime_type, read_start(storage, name, SNIFF_BYTES)):
            return None
        return size

    # -- stray uploads ----------------------------------------------------------

    def get_upload_storages(self) -> list[Storage]:
        """The storages ``chatkit_cleanup`` sweeps for stray uploads. Override along with a
        per-owner ``get_storage`` to list every storage presigned uploads go to."""
        return [self.get_storage()]

    def stray_uploads(self, storage: Any, max_age: int) -> list[str]:
        """Objects under ``upload_prefix`` that no pending row names, last written more than
        ``max_age`` seconds ago: a presigned PUT replayed after its upload was confirmed or
        deleted. Nothing reads them; only a pending row's upload is still waiting."""
        if not can_presign(storage):
            return []
        cutoff = timezone.now() - timedelta(seconds=max_age)
        prefix = storage_key(storage, self.upload_prefix)
        old = [
            self.upload_prefix + obj.key[len(prefix) :]
            for obj in storage.bucket.objects.filter(Prefix=prefix + "/")
            if obj.last_modified < cutoff
        ]
        stray = []
        for start in range(0, len(old), 500):
            batch = old[start : start + 500]
            claimed = set(
                AttachmentRow.objects.filter(file__in=batch, uploaded_at__isnull=True).values_list(
                    "file", flat=True
                )
            )
            stray += [name for name in batch if name not in claimed]
        return stray

    # -- deleting ------------------------------------------------------------

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Nothing to do here: the row's deletion deletes the bytes.

        The SDK calls this before ``Store.delete_attachment``, which checks ``delete`` access
        and deletes the row; the ``post_delete`` receiver removes the bytes after that
        transaction commits. Deleting is idempotent, as the SDK's flows expect: a missing,
        already deleted or forbidden attachment is left as it is, with the same answer.
        """
        return


def get_django_attachment_store() -> DjangoAttachmentStore[Any]:
    """The server's attachment store, for the paths outside the SDK (views, converters,
    commands); a default ``DjangoAttachmentStore`` if the project's is not one."""
    store = get_attachment_store()
    if isinstance(store, DjangoAttachmentStore):
        return store
    fallback: DjangoAttachmentStore[Any] = DjangoAttachmentStore()
    fallback.bind(get_store())
    return fallback
