"""Rows that hold ChatKit threads, items, attachments and feedback.

The SDK's pydantic model is the stored truth: ``data`` keeps ``model.model_dump(mode="json",
by_alias=True)`` and loads back equal. The other columns are copies made for filtering,
ordering and the admin, written by ``DjangoStore`` from the model on every save.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.translation import gettext_lazy as _

from chatkit_django.instances import attachment_storage as storage_for_owner
from chatkit_django.instances import configured_storage

#: The longest scope a thread or attachment can be in (``DjangoStore.get_scope``).
SCOPE_MAX_LENGTH = 255


class Thread(models.Model):
    """A conversation, owned by one user."""

    id = models.CharField(_("id"), max_length=255, primary_key=True)
    # Foreign keys whose column leads a composite index below get no index of their own.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="chatkit_threads",
        verbose_name=_("owner"),
        db_index=False,
    )
    title = models.TextField(_("title"), blank=True, default="")
    # Set once, from the context of the request that created the thread
    # (``DjangoStore.get_scope``): a workspace, an agent, a tenant. "" is the unscoped one.
    scope = models.CharField(_("scope"), max_length=SCOPE_MAX_LENGTH, blank=True, default="")
    status = models.CharField(_("status"), max_length=16, default="active")
    created_at = models.DateTimeField(_("created at"))
    # Tie-breaker for equal created_at values: insertion order (see _internal.ordering).
    seq = models.BigIntegerField(_("sequence"), editable=False)
    updated_at = models.DateTimeField(_("last activity"), auto_now=True)
    data = models.JSONField(_("data"))

    class Meta:
        verbose_name = _("thread")
        verbose_name_plural = _("threads")
        indexes = [
            models.Index(
                fields=["owner", "created_at", "seq", "id"], name="chatkit_thread_owner_order"
            ),
            # threads.list in a scope walks this one; the one above serves unscoped requests.
            # Scope first: the admin's scope filter uses it too, and the owner's foreign key
            # still leads one index only.
            models.Index(
                fields=["scope", "owner", "created_at", "seq", "id"],
                name="chatkit_thread_scope_order",
            ),
            models.Index(fields=["updated_at"], name="chatkit_thread_updated"),
        ]

    def __str__(self) -> str:
        return self.title or self.id


class ThreadItem(models.Model):
    """One item of a thread: a message, widget, workflow, hidden context..."""

    id = models.CharField(_("id"), max_length=255, primary_key=True)
    thread = models.ForeignKey(
        Thread,
        on_delete=models.CASCADE,
        related_name="items",
        verbose_name=_("thread"),
        db_index=False,
    )
    type = models.CharField(_("type"), max_length=64)
    # Who sent a user message (the owner, or someone with change access to the thread); null
    # for what the server wrote. The data-protection commands find a user's messages by it,
    # in others' threads too. Deleting the account keeps the owner's conversation intact.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chatkit_items",
        verbose_name=_("author"),
        db_index=False,
    )
    created_at = models.DateTimeField(_("created at"))
    seq = models.BigIntegerField(_("sequence"), editable=False)
    preview = models.TextField(_("text preview"), blank=True, default="")
    data = models.JSONField(_("data"))

    class Meta:
        verbose_name = _("thread item")
        verbose_name_plural = _("thread items")
        indexes = [
            models.Index(
                fields=["thread", "created_at", "seq", "id"], name="chatkit_item_thread_order"
            ),
            # Partial: only user messages have an author, so other items cost no index write.
            models.Index(
                fields=["author"],
                condition=models.Q(author__isnull=False),
                name="chatkit_item_author",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class UnconfiguredStorage(Storage):
    """Stands in for an attachment storage that cannot be built, so the models still import.

    A ``STORAGE_ALIAS`` typo or an S3 backend without boto3 would otherwise be a traceback at
    import, which breaks ``manage.py check`` too: the check reports them instead
    (``chatkit_django.E007``, ``E010``). Every file operation raises the same advice.
    """

    def __init__(self, error: Exception) -> None:
        self.error = error

    def _unconfigured(self, *args: Any, **kwargs: Any) -> Any:
        raise ImproperlyConfigured(
            f"The chatkit_django attachment storage is not configured: {self.error} "
            "Run manage.py check."
        )

    _open = _save = delete = exists = listdir = size = url = path = _unconfigured
    get_accessed_time = get_created_time = get_modified_time = _unconfigured


class AttachmentStorage(Storage):
    """The field-level storage: every call goes to the attachment store's ``get_storage()``.

    Django resolves a field's storage once, at import; this one resolves it on every call, so
    settings changes and the store's hook are honoured. Rows use their owner's storage (see
    ``AttachmentFieldFile``); this is only what code holding the field, not a row, sees.
    """

    def _target(self) -> Storage:
        return _resolve(None)

    def _open(self, name: str, mode: str = "rb") -> Any:
        return self._target().open(name, mode)

    def _save(self, name: str, content: Any) -> str:
        return self._target().save(name, content)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return self._target().get_available_name(name, max_length=max_length)

    def generate_filename(self, filename: str | os.PathLike[str]) -> str:
        return self._target().generate_filename(filename)

    def delete(self, name: str) -> None:
        self._target().delete(name)

    def exists(self, name: str) -> bool:
        return self._target().exists(name)

    def size(self, name: str) -> int:
        return self._target().size(name)

    def url(self, name: str | None) -> str:
        return self._target().url(name)

    def path(self, name: str) -> str:
        return self._target().path(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return self._target().listdir(path)


def _resolve(owner_id: Any) -> Storage:
    try:
        return storage_for_owner(owner_id)
    except (ImproperlyConfigured, ImportError) as e:
        return UnconfiguredStorage(e)


def attachment_storage() -> Storage:
    """The file field's storage (named by migration 0001), built when the model is defined.

    A storage that cannot be built (see ``UnconfiguredStorage``) stands in until a file is
    touched; otherwise every call is resolved then, through the attachment store's hook.
    """
    try:
        configured_storage()
    except (ImproperlyConfigured, ImportError) as e:
        return UnconfiguredStorage(e)
    return AttachmentStorage()


class AttachmentFieldFile(FieldFile):
    """A row's file, on the storage the attachment store picks for the row's owner."""

    instance: Attachment

    @property
    def storage(self) -> Storage:
        return _resolve(self.instance.owner_id)

    @storage.setter
    def storage(self, value: Storage) -> None:
        pass  # FieldFile.__init__ assigns the field's storage; a row uses its owner's.


class AttachmentFileField(models.FileField):
    """A ``FileField`` whose files resolve their storage per row (see ``AttachmentFieldFile``)."""

    attr_class = AttachmentFieldFile

    def deconstruct(self) -> Any:
        # Migrations see a plain FileField: the difference is only at run time.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.FileField", args, kwargs


class Attachment(models.Model):
    """A file a user uploaded, with its bytes on the configured Django storage."""

    id = models.CharField(_("id"), max_length=255, primary_key=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="chatkit_attachments",
        verbose_name=_("owner"),
        db_index=False,
    )
    # Deleting a thread deletes its attachments (and, on commit, their bytes).
    thread = models.ForeignKey(
        Thread,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attachments",
        verbose_name=_("thread"),
        db_index=False,
    )
    # The scope it was uploaded in, or its thread's once linked (see ``Thread.scope``).
    scope = models.CharField(_("scope"), max_length=SCOPE_MAX_LENGTH, blank=True, default="")
    name = models.CharField(_("name"), max_length=255)
    mime_type = models.CharField(_("MIME type"), max_length=255)
    type = models.CharField(_("type"), max_length=16)
    size = models.BigIntegerField(_("size"), null=True, blank=True)
    file = AttachmentFileField(
        _("file"), storage=attachment_storage, max_length=500, blank=True, default=""
    )
    # Nonce of the outstanding two-phase upload token; cleared when the token is used.
    upload_nonce = models.CharField(_("upload nonce"), max_length=64, blank=True, default="")
    uploaded_at = models.DateTimeField(_("uploaded at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    data = models.JSONField(_("data"))

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        indexes = [
            models.Index(fields=["owner", "created_at"], name="chatkit_attachment_owner"),
            models.Index(fields=["thread", "created_at"], name="chatkit_attachment_thread"),
        ]

    def __str__(self) -> str:
        return self.name


class Feedback(models.Model):
    """A thumbs up or down on one item, as sent by ``items.feedback``."""

    class Kind(models.TextChoices):
        POSITIVE = "positive", _("positive")
        NEGATIVE = "negative", _("negative")

    thread = models.ForeignKey(
        Thread,
        on_delete=models.CASCADE,
        related_name="feedback",
        verbose_name=_("thread"),
        db_index=False,
    )
    item = models.ForeignKey(
        ThreadItem,
        on_delete=models.CASCADE,
        related_name="feedback",
        verbose_name=_("item"),
        db_index=False,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="chatkit_feedback",
        verbose_name=_("user"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        constraints = [
            models.UniqueConstraint(fields=["item", "user"], name="chatkit_feedback_one_per_user"),
        ]
        indexes = [models.Index(fields=["thread", "kind"], name="chatkit_feedback_thread_kind")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.item_id}"
