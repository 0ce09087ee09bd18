"""``DjangoStore``: the SDK's ``Store`` contract on Django's async ORM.

Every method scopes what it touches to the acting user: the owner has full access, anyone
else needs ``chatkit_django.<action>_thread`` (or ``_attachment``) as a model permission or,
through an object-level backend, on the row itself. Rows the user may not see behave
exactly like rows that do not exist: loads raise ``NotFoundError``, listings leave them out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    ImageAttachment,
    Page,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTagContent,
)
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, router, transaction
from django.http import HttpRequest
from django.utils import timezone
from pydantic import BaseModel, TypeAdapter

from chatkit_django import models as chatkit_models
from chatkit_django._internal.cursors import decode_cursor, encode_cursor
from chatkit_django._internal.nul import NUL, names_nothing, without_nul
from chatkit_django._internal.ordering import (
    ROW_ORDER,
    Position,
    keyset_page,
    next_seq,
    ordering_datetime,
)
from chatkit_django.attachments import (
    get_django_attachment_store,
    insert_attachment,
    present_attachment,
)
from chatkit_django.context import TContext, UserLike
from chatkit_django.deletion import delete_items, send_thread_deleted_on_commit
from chatkit_django.exceptions import InvalidCursor, InvalidScope
from chatkit_django.ids import generate_id
from chatkit_django.reconnect import retry_on_dead_connection

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger(__name__)

AttachmentRows = (
    models.Manager[chatkit_models.Attachment] | models.QuerySet[chatkit_models.Attachment]
)

ThreadItemAdapter: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)

#: Key of the mark ``claim_pending_item`` puts in a pending item's ``data``.
ANSWERING_KEY = "chatkit_django_answering"
#: Marks an item saved while its answer was still running (``save_partial_item``); the SDK's
#: models ignore it on load. Adding the item later replaces such a copy.
PARTIAL_KEY = "chatkit_django_partial"
#: Columns ``load_attachment`` reads (the upload confirmation needs the last four).
ATTACHMENT_LOAD_FIELDS = ("owner_id", "data", "uploaded_at", "file", "upload_nonce", "mime_type")
AttachmentAdapter: TypeAdapter[Attachment] = TypeAdapter(Attachment)


def dump(model: BaseModel, **kwargs: Any) -> dict[str, Any]:
    """The JSON we store for an SDK model; it validates back to an equal model."""
    return model.model_dump(mode="json", by_alias=True, **kwargs)


def item_preview(item: ThreadItem) -> str:
    """Plain text of a message, for search and the admin; empty for other item types."""
    if isinstance(item, UserMessageItem):
        parts = [
            f"@{part.text}" if isinstance(part, UserMessageTagContent) else part.text
            for part in item.content
        ]
        return " ".join(p for p in parts if p)
    if isinstance(item, AssistantMessageItem):
        return "\n".join(part.text for part in item.content if part.text)
    return ""


class DjangoStore(Store[TContext]):
    """Threads and items in ``chatkit_django.Thread``/``ThreadItem``, attachments' metadata in
    ``Attachment``.

    Subclass to change how the acting user and request are found (``get_user``,
    ``get_request``), who may do what (``has_access``: the one access rule, which the
    attachment views, the attachment store and the converters ask too) or which part of
    their history a request sees (``get_scope``).

    Every write is retried once on a fresh connection when it meets a dead one (a database
    restart): ``chatkit_django.reconnect.retry_on_dead_connection``. Writes of a subclass
    should be upserts too, and can use the same decorator.
    """

    thread_model = chatkit_models.Thread
    #: Seconds an answer's claim on a pending item holds (``claim_pending_item``).
    claim_lease_seconds = 60.0
    item_model = chatkit_models.ThreadItem
    attachment_model = chatkit_models.Attachment

    # -- identity and access -------------------------------------------------

    def get_user(self, context: TContext) -> UserLike | None:
        """The user acting in ``context``. Override for a context type of your own."""
        # TContext is any type (not bound to ChatKitContext); one without ``user`` overrides this.
        user: UserLike | None = context.user  # type: ignore[attr-defined]  # see above
        return user

    def get_request(self, context: TContext) -> HttpRequest | None:
        """The request of ``context``, ``None`` outside one. Override with ``get_user``."""
        return getattr(context, "request", None)

    def _user(self, context: TContext) -> AbstractBaseUser | None:
        user = self.get_user(context)
        if user is None or not user.is_authenticated:
            return None
        return user

    def _writer(self, context: TContext) -> AbstractBaseUser:
        user = self._user(context)
        if user is None:
            raise PermissionDenied("An authenticated user is required to write ChatKit data.")
        return user

    # -- scope ---------------------------------------------------------------

    def get_scope(self, context: TContext) -> str | None:
        """The scope of ``context``: a workspace, an agent, a tenant; ``None`` for none.

        A request in a scope sees only the threads and attachments of that scope, and what
        it creates is put there: one user's history is split, one part per scope. A thread
        of another scope is "not found", as a missing one. ``None`` (the default) is an
        unscoped request: it sees every scope and creates in the unscoped one, ``""``.
        Scopes only ever narrow what ``has_access`` allows. By default
        ``context.scope`` (``ChatKitContext.scope``); override for a context of your own.
        """
        # getattr, not context.scope: TContext is unbound (a context of one's own may have none).
        return getattr(context, "scope", None)

    def scope_of(self, context: TContext) -> str | None:
        """``get_scope(context)``, checked; ``InvalidScope`` (400) for a value no row can hold.

        A scope often comes from the client (a header, a query parameter): a NUL, a value
        longer than ``SCOPE_MAX_LENGTH`` or one that is not text is refused here, before the
        database sees it.
        """
        scope = self.get_scope(context)
        if scope is None:
            return None
        if not isinstance(scope, str):
            raise InvalidScope(f"A scope is a string, not {type(scope).__name__}.")
        if NUL in scope or len(scope) > chatkit_models.SCOPE_MAX_LENGTH or not _encodable(scope):
            raise InvalidScope(
                f"The scope {scope[:40]!r} is not valid: at most "
                f"{chatkit_models.SCOPE_MAX_LENGTH} characters, no NUL."
            )
        return scope

    def scope_lookup(self, context: TContext, prefix: str = "") -> dict[str, str]:
        """Filter arguments that keep a query in the scope of ``context`` (none if unscoped)."""
        scope = self.scope_of(context)
        return {} if scope is None else {f"{prefix}scope": scope}

    def in_scope(
        self, obj: chatkit_models.Thread | chatkit_models.Attachment, context: TContext
    ) -> bool:
        """Whether a thread or attachment row (with its ``scope`` loaded) is in ``context``'s."""
        scope = self.scope_of(context)
        return scope is None or obj.scope == scope

    # -- access ----------------------------------------------------------------

    async def has_access(
        self,
        user: AbstractBaseUser,
        obj: chatkit_models.Thread | chatkit_models.Attachment,
        action: str,
    ) -> bool:
        """Whether ``user`` may ``action`` ("view", "change", "delete") ``obj``.

        The one access rule for threads, items (through their thread), attachments and
        feedback, asked by every path: the store, the attachment views (sync, through
        ``chatkit_django.instances.user_has_access``), the attachment store, previews and
        the converters. ``user`` is authenticated. The owner may do everything. Others need
        the model permission, or the object permission from a backend such as
        django-guardian or django-rules.
        """
        if obj.owner_id == user.pk:
            return True
        opts = obj._meta
        perm = f"{opts.app_label}.{action}_{opts.model_name}"
        return await _has_perm(user, perm, obj)

    async def _accessible_thread(
        self, thread_id: str, context: TContext, action: str, *fields: str
    ) -> chatkit_models.Thread:
        user = self._user(context)
        if user is not None and not names_nothing(thread_id):
            row = (
                await self.thread_model.objects.filter(pk=thread_id, **self.scope_lookup(context))
                .only("owner_id", *fields)
                .afirst()
            )
            if row is not None and await self.has_access(user, row, action):
                return row
        raise NotFoundError(f"Thread {thread_id} not found")

    async def _touch_thread(self, thread_id: str, context: TContext) -> None:
        """Check change access to a thread and record activity on it.

        The owner's case is one UPDATE; only someone else's thread needs a permission check.
        """
        user = self._user(context)
        now = timezone.now()
        if user is not None and not names_nothing(thread_id):
            updated = await self.thread_model.objects.filter(
                pk=thread_id, owner_id=user.pk, **self.scope_lookup(context)
            ).aupdate(updated_at=now)
            if updated:
                return
        await self._accessible_thread(thread_id, context, "change")
        await self.thread_model.objects.filter(pk=thread_id).aupdate(updated_at=now)

    # -- ids -----------------------------------------------------------------

    def generate_thread_id(self, context: TContext) -> str:
        thread_id = generate_id("thread")
        if len(_new_thread_ids) >= _NEW_THREAD_IDS_KEPT:
            _new_thread_ids.clear()  # ids never saved (a failed request): they cost one UPDATE
        _new_thread_ids.add(thread_id)
        return thread_id

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: TContext
    ) -> str:
        return generate_id(item_type)

    # -- threads -------------------------------------------------------------

    def thread_fields(self, thread: ThreadMetadata) -> dict[str, Any]:
        """Column values for a thread; ``items`` of a full ``Thread`` are not stored here."""
        return {
            "title": thread.title or "",
            "status": thread.status.type,
            "created_at": ordering_datetime(thread.created_at),
            "data": dump(thread, exclude={"items"}),
        }

    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        row = await self._accessible_thread(thread_id, context, "view", "data")
        return ThreadMetadata.model_validate(row.data)

    async def load_thread_for(
        self, thread_id: str, action: str, context: TContext
    ) -> ThreadMetadata:
        """The thread, if the acting user may ``action`` it ("view", "change", "delete").

        The server asks for "change" before a request writes to a thread or runs the
        responder: a user who may only view it gets the same ``NotFoundError`` as for a
        thread that does not exist. One query (and the permission check for a non-owner).
        """
        row = await self._accessible_thread(thread_id, context, action, "data")
        return ThreadMetadata.model_validate(row.data)

    @retry_on_dead_connection
    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Upsert; a new thread is put in the scope of ``context``, and stays there."""
        user = self._writer(context)
        scope = self.scope_of(context)
        thread = without_nul(thread)
        fields = self.thread_fields(thread)
        fields["updated_at"] = timezone.now()
        threads = self.thread_model.objects
        if thread.id in _new_thread_ids:
            # threads.create: a thread we just named cannot exist yet, so no UPDATE first.
            _new_thread_ids.discard(thread.id)
        elif await threads.filter(
            pk=thread.id, owner_id=user.pk, **self.scope_lookup(context)
        ).aupdate(**fields):
            return
        try:
            await _insert(
                self.thread_model,
                id=thread.id,
                owner=user,
                seq=next_seq(),
                scope=scope or "",
                **fields,
            )
        except IntegrityError:
            # The id exists and belongs to someone else: update it only with permission.
            await self._accessible_thread(thread.id, context, "change")
            await threads.filter(pk=thread.id).aupdate(**fields)

    def listed_threads(
        self, user: AbstractBaseUser, scope: str | None = None
    ) -> models.QuerySet[chatkit_models.Thread]:
        """The threads ``threads.list`` shows ``user``: their own in ``scope`` (every scope
        for ``None``), once they hold an item.

        The SDK saves a new thread before its first message. Should that message never be
        stored (the process died in between, the database failed), the thread would show
        up as a blank conversation the user never started; so a thread without items is
        not listed. The test is a semi-join on the items' thread index, in the same query.
        """
        items = self.item_model.objects.filter(thread_id=models.OuterRef("pk"))
        threads = self.thread_model.objects.filter(models.Exists(items), owner_id=user.pk)
        return threads if scope is None else threads.filter(scope=scope)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: TContext
    ) -> Page[ThreadMetadata]:
        """The acting user's own threads with items, in the scope of ``context``
        (``listed_threads``); others' threads, even visible ones, are not listed."""
        user = self._user(context)
        scope = self.scope_of(context)
        if user is None:
            return Page[ThreadMetadata](data=[], has_more=False, after=None)
        position = await self._cursor_position(
            "threads", self.thread_model, after, owner_id=user.pk, **self.scope_lookup(context)
        )
        rows = keyset_page(
            self.listed_threads(user, scope), after=position, order=order
        ).values_list("data", *ROW_ORDER)
        return _page(
            [r async for r in rows[: limit + 1]],
            limit,
            ThreadMetadata.model_validate,
            "threads",
            Page[ThreadMetadata],
        )

    @retry_on_dead_connection
    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        row = await self._accessible_thread(thread_id, context, "delete")
        await self._delete_thread_rows(row.pk, self._user(context))

    @sync_to_async
    def _delete_thread_rows(self, thread_id: str, user: AbstractBaseUser | None) -> None:
        """Delete a thread, its items and what hangs off them, in a constant number of queries.

        Items go with one plain DELETE (``deletion.delete_items``); attachments still go
        through the ORM, so their own deletion signals run. ``thread_deleted`` is sent once
        the deletion commits.
        """
        db = router.db_for_write(self.thread_model)  # objects.db is the read alias
        with transaction.atomic(using=db):
            # Lock the thread first: an item written meanwhile (a stream saving its answer
            # after a hang-up) either committed before, and is deleted below, or waits on
            # this lock and fails once the thread is gone. Without it, an item committed
            # between the item and thread DELETEs failed the whole delete (PostgreSQL checks
            # the foreign key at commit).
            self.thread_model.objects.using(db).select_for_update().filter(pk=thread_id).exists()
            chatkit_models.Feedback.objects.filter(thread_id=thread_id).delete()
            delete_items(self.item_model, [thread_id], using=db)
            self.thread_model.objects.filter(pk=thread_id).delete()
            send_thread_deleted_on_commit(thread_id, user=user, using=db)

    # -- pages ---------------------------------------------------------------

    async def _cursor_position(
        self, kind: str, model: type[models.Model], after: str | None, **scope: Any
    ) -> Position | None:
        """Where the page after ``after`` starts; raises ``InvalidCursor`` for a bad cursor.

        A cursor carries its position, signed (``_internal/cursors.py``). An id, what
        cursors were before, is still accepted from clients that kept one across an upgrade:
        its row's position is looked up (one query), as long as the row exists.
        """
        if not after:
            return None
        position = decode_cursor(kind, after)
        if position is not None:
            return position
        if not names_nothing(after):
            row: Position | None = await (
                model._default_manager.filter(pk=after, **scope).values_list(*ROW_ORDER).afirst()
            )
            if row is not None:
                return row
        raise InvalidCursor()

    # -- items ---------------------------------------------------------------

    def item_author(self, item: ThreadItem, context: TContext) -> AbstractBaseUser | None:
        """Who is recorded as the author of a new item: the acting user, for user messages.

        Set once, when the item is inserted; later saves keep it.
        """
        return self._user(context) if isinstance(item, UserMessageItem) else None

    def item_fields(self, item: ThreadItem) -> dict[str, Any]:
        return {
            "type": item.type,
            "preview": item_preview(item),
            "data": dump(item),
        }

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        try:
            await self._accessible_thread(thread_id, context, "view")
        except NotFoundError:
            return Page[ThreadItem](data=[], has_more=False, after=None)
        position = await self._cursor_position("items", self.item_model, after, thread_id=thread_id)
        rows = keyset_page(
            self.item_model.objects.filter(thread_id=thread_id), after=position, order=order
        ).values_list("data", *ROW_ORDER)
        page = _page(
            [r async for r in rows[: limit + 1]],
            limit,
            ThreadItemAdapter.validate_python,
            "items",
            Page[ThreadItem],
        )
        hidden = await self.hidden_attachments(page.data, context)
        page.data = [self.present_item(item, context, hidden) for item in page.data]
        return page

    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        user = self._user(context)
        if user is not None and not names_nothing(thread_id, item_id):
            row = await (
                self.item_model.objects.filter(
                    pk=item_id, thread_id=thread_id, **self.scope_lookup(context, "thread__")
                )
                .select_related("thread")
                .only("data", "thread__owner_id")
                .afirst()
            )
            if row is not None and await self.has_access(user, row.thread, "view"):
                item = ThreadItemAdapter.validate_python(row.data)
                hidden = await self.hidden_attachments([item], context)
                return self.present_item(item, context, hidden)
        raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")

    @retry_on_dead_connection
    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert; an id already stored in the thread keeps its stored item (and is logged)."""
        await self._touch_thread(thread_id, context)
        item = without_nul(item)
        fields = self.item_fields(item)
        try:
            await _insert(
                self.item_model,
                id=item.id,
                thread_id=thread_id,
                created_at=ordering_datetime(item.created_at),
                seq=next_seq(),
                author=self.item_author(item, context),
                **fields,
            )
        except IntegrityError:
            await self._added_again(thread_id, item, fields)

    async def _added_again(self, thread_id: str, item: ThreadItem, fields: dict[str, Any]) -> None:
        """An item id added a second time: the stored item stays as it is.

        Adding never replaces (``save_item`` does): the stored copy may be newer than the
        one added again. A responder that yields a structured question again after the user
        answered it would otherwise put the unanswered copy back; a hang-up while the SDK adds
        an item it just finished makes the SDK add its partial copy again.
        """
        stored = (
            await self.item_model.objects.filter(pk=item.id, thread_id=thread_id)
            .values_list("data", flat=True)
            .afirst()
        )
        if stored is None:
            # The id is taken by an item of another thread.
            raise NotFoundError(f"Item {item.id} not found in thread {thread_id}")
        if PARTIAL_KEY in stored:
            # A copy saved while the answer ran (save_partial_item): the added item is newer.
            await self.item_model.objects.filter(
                pk=item.id, thread_id=thread_id, data__has_key=PARTIAL_KEY
            ).aupdate(**fields)
            return
        if stored != fields["data"]:
            logger.warning(
                "Item %s of thread %s was added again with other content; the stored item "
                "is kept (save_item replaces an item, add_thread_item never does).",
                item.id,
                thread_id,
            )

    @retry_on_dead_connection
    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Upsert; an existing item keeps its place in the thread."""
        await self._touch_thread(thread_id, context)
        item = without_nul(item)
        fields = self.item_fields(item)
        if await self.item_model.objects.filter(pk=item.id, thread_id=thread_id).aupdate(**fields):
            return
        try:
            await _insert(
                self.item_model,
                id=item.id,
                thread_id=thread_id,
                created_at=ordering_datetime(item.created_at),
                seq=next_seq(),
                author=self.item_author(item, context),
                **fields,
            )
        except IntegrityError:
            # A concurrent save inserted it first: update that row (or, if the id belongs
            # to another thread, report it as not found).
            await self._update_item(thread_id, item.id, fields)

    async def save_partial_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Save an item whose answer is still running, so that a reload shows it so far.

        The copy is marked (``PARTIAL_KEY``): only a marked copy is updated, and the item's
        final version (``add_thread_item`` once it is done, or the SDK's cancellation
        handling) replaces it. A partial save that comes after the final version changes
        nothing, so the two may race.
        """
        await self._touch_thread(thread_id, context)
        fields = self.item_fields(without_nul(item))
        fields["data"][PARTIAL_KEY] = True
        if await self.item_model.objects.filter(
            pk=item.id, thread_id=thread_id, data__has_key=PARTIAL_KEY
        ).aupdate(**fields):
            return
        with contextlib.suppress(IntegrityError):  # the final version is stored already
            await _insert(
                self.item_model,
                id=item.id,
                thread_id=thread_id,
                created_at=ordering_datetime(item.created_at),
                seq=next_seq(),
                author=self.item_author(item, context),
                **fields,
            )

    async def _update_item(self, thread_id: str, item_id: str, fields: dict[str, Any]) -> None:
        if not await self.item_model.objects.filter(pk=item_id, thread_id=thread_id).aupdate(
            **fields
        ):
            # The id is taken by an item of another thread.
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")

    @retry_on_dead_connection
    async def claim_pending_item(self, thread_id: str, item: ThreadItem, context: TContext) -> bool:
        """Take the right to answer a pending item (structured input, client tool call).

        One conditional ``UPDATE``: of any number of answers racing for the same item,
        exactly one gets ``True``; the others get ``False`` and are refused before they
        stream. The mark (``ANSWERING_KEY`` in ``data``, which the SDK's models ignore on
        load) holds the time of the claim and lives until the answered item replaces the
        pending one. A claim older than ``claim_lease_seconds`` no longer counts: the SDK
        stores the answer as the stream's first step, so such a claim belongs to a stream
        that died first, and the question must not stay unanswerable. The caller has
        checked change access to the thread (the server's preflight does).
        """
        if self._user(context) is None or names_nothing(thread_id, item.id):
            return False
        now = time.time()
        data = dump(item)
        data[ANSWERING_KEY] = now
        unclaimed = ~models.Q(data__has_key=ANSWERING_KEY) | models.Q(
            **{f"data__{ANSWERING_KEY}__lt": now - self.claim_lease_seconds}
        )
        claimed = await self.item_model.objects.filter(
            unclaimed, pk=item.id, thread_id=thread_id, data__status="pending"
        ).aupdate(data=data)
        return bool(claimed)

    @retry_on_dead_connection
    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        await self._touch_thread(thread_id, context)
        if not names_nothing(item_id):
            await self.item_model.objects.filter(pk=item_id, thread_id=thread_id).adelete()

    # -- attachments ---------------------------------------------------------

    def attachment_fields(self, attachment: Attachment) -> dict[str, Any]:
        # The columns are bounded copies (PostgreSQL rejects longer values); ``data`` keeps
        # the full name and type.
        opts = self.attachment_model._meta
        return {
            "name": attachment.name[: opts.get_field("name").max_length],
            "mime_type": attachment.mime_type[: opts.get_field("mime_type").max_length],
            "type": attachment.type,
            "thread_id": attachment.thread_id,
            "data": dump(attachment),
        }

    async def _accessible_attachment(
        self, attachment_id: str, context: TContext, action: str, *fields: str
    ) -> chatkit_models.Attachment:
        user = self._user(context)
        if user is not None and not names_nothing(attachment_id):
            row = (
                await self.attachment_model.objects.filter(
                    pk=attachment_id, **self.scope_lookup(context)
                )
                .only("owner_id", *fields)
                .afirst()
            )
            if row is not None and await self.has_access(user, row, action):
                return row
        raise NotFoundError(f"Attachment {attachment_id} not found")

    @retry_on_dead_connection
    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Upsert. Linking it to a thread needs change access to that thread, whose scope
        the attachment takes; a new one is put in the scope of ``context``."""
        user = self._writer(context)
        attachment = without_nul(attachment)
        fields = self.attachment_fields(attachment)
        if attachment.thread_id is not None:
            thread = await self._accessible_thread(attachment.thread_id, context, "change", "scope")
            fields["scope"] = thread.scope
        attachments: AttachmentRows = self.attachment_model.objects.filter(
            **self.scope_lookup(context)
        )
        if attachment.thread_id is not None:
            # Linked once, an attachment stays with its thread: moving it would let a
            # deleted thread take a file another thread still shows.
            attachments = attachments.filter(
                models.Q(thread_id__isnull=True) | models.Q(thread_id=attachment.thread_id)
            )
        if await attachments.filter(pk=attachment.id, owner_id=user.pk).aupdate(**fields):
            return
        try:
            # A row first saved here was not created pending by DjangoAttachmentStore: its
            # bytes are someone else's business, so it counts as uploaded.
            await sync_to_async(insert_attachment)(
                savepoint=True,
                id=attachment.id,
                owner=user,
                uploaded_at=timezone.now(),
                **{"scope": self.scope_of(context) or "", **fields},
            )
        except IntegrityError:
            await self._accessible_attachment(attachment.id, context, "change")
            if not await attachments.filter(pk=attachment.id).aupdate(**fields):
                raise ValueError(f"Attachment {attachment.id} belongs to another thread.") from None

    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """The attachment, with a fresh preview URL; only once its bytes have arrived.

        The SDK loads every id a message names through here, so an attachment still waiting
        for its upload can never be attached.
        """
        row = await self._accessible_attachment(
            attachment_id, context, "view", *ATTACHMENT_LOAD_FIELDS
        )
        if row.uploaded_at is None and not await sync_to_async(
            get_django_attachment_store().confirm_upload
        )(row):
            raise NotFoundError(f"Attachment {attachment_id} has no uploaded content yet")
        return self.present_attachment(AttachmentAdapter.validate_python(row.data), context)

    async def load_attachments(
        self, attachment_ids: Sequence[str], context: TContext
    ) -> list[Attachment]:
        """``load_attachment`` for several ids in one query, in the order given.

        Raises ``NotFoundError`` for the first id the user may not view or whose bytes
        have not arrived, as ``load_attachment`` would.
        """
        user = self._user(context)
        wanted = [i for i in dict.fromkeys(attachment_ids) if not names_nothing(i)]
        rows = {}
        if user is not None and wanted:
            rows = {
                row.pk: row
                async for row in self.attachment_model.objects.filter(
                    pk__in=wanted, **self.scope_lookup(context)
                ).only(*ATTACHMENT_LOAD_FIELDS)
            }
        attachments = []
        for attachment_id in attachment_ids:
            row = rows.get(attachment_id)
            if row is None or user is None or not await self.has_access(user, row, "view"):
                raise NotFoundError(f"Attachment {attachment_id} not found")
            if row.uploaded_at is None and not await sync_to_async(
                get_django_attachment_store().confirm_upload
            )(row):
                raise NotFoundError(f"Attachment {attachment_id} has no uploaded content yet")
            attachments.append(
                self.present_attachment(AttachmentAdapter.validate_python(row.data), context)
            )
        return attachments

    def present_attachment(
        self, attachment: Attachment, context: TContext, *, may_view: bool = True
    ) -> Attachment:
        """The attachment as a response shows it: an image preview gets a fresh short-lived
        signed URL if the caller may view the attachment, else the unsigned URL (which the
        content view answers by the same rule)."""
        return present_attachment(attachment, self.get_request(context), may_view=may_view)

    def present_item(
        self,
        item: ThreadItem,
        context: TContext,
        hidden: Collection[str] = (),
    ) -> ThreadItem:
        """The item as a response shows it; user messages' attachments are presented.

        ``hidden`` holds the ids of the attachments the caller may not view
        (``hidden_attachments``): their previews are not signed.
        """
        if isinstance(item, UserMessageItem) and item.attachments:
            item.attachments = [
                self.present_attachment(a, context, may_view=a.id not in hidden)
                for a in item.attachments
            ]
        return item

    async def hidden_attachments(self, items: Sequence[ThreadItem], context: TContext) -> set[str]:
        """Ids of the image attachments of ``items`` the caller may not view (one query).

        Viewing a thread does not include viewing every attachment in it: a preview is
        signed only for an attachment the access rule lets the caller view, in the caller's
        scope. An id with no row has no bytes to leak and is left as stored.
        """
        ids = {
            a.id
            for item in items
            if isinstance(item, UserMessageItem)
            for a in item.attachments
            if isinstance(a, ImageAttachment) and not names_nothing(a.id)
        }
        if not ids:
            return set()
        user = self._user(context)
        rows = self.attachment_model.objects.filter(pk__in=ids).only("owner_id", "scope")
        return {
            row.pk
            async for row in rows
            if user is None
            or not self.in_scope(row, context)
            or not await self.has_access(user, row, "view")
        }

    @retry_on_dead_connection
    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete it if the user may; idempotent, as the SDK expects.

        A missing or already deleted attachment, and one the user may not delete, are left
        as they are without an error: the answer is the same in all three cases.
        """
        try:
            row = await self._accessible_attachment(attachment_id, context, "delete")
        except NotFoundError:
            return
        await self.attachment_model.objects.filter(pk=row.pk).adelete()


def _encodable(text: str) -> bool:
    # A lone surrogate (JSON's "\ud800") is a str Python holds but no database can store.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@sync_to_async
def _has_perm(user: UserLike, perm: str, obj: models.Model) -> bool:
    # The sync API on purpose: Django's ``ahas_perm`` skips backends without an async
    # ``ahas_perm``, and object-level backends (django-guardian, django-rules) are sync.
    # has_perm() is PermissionsMixin's: a user model without it has no permissions API.
    return user.has_perm(perm) or user.has_perm(perm, obj)  # type: ignore[union-attr]  # see above


#: Thread ids ``generate_thread_id()`` handed out and not saved yet: their first save is an
#: INSERT, without the UPDATE that would find nothing (``DjangoStore.save_thread``).
_new_thread_ids: set[str] = set()
_NEW_THREAD_IDS_KEPT = 10_000


@sync_to_async
def _insert(
    model: type[chatkit_models.Thread | chatkit_models.ThreadItem | chatkit_models.Attachment],
    **fields: Any,
) -> None:
    # A savepoint, so that a duplicate id does not break an enclosing transaction.
    db = router.db_for_write(model)  # objects.db is the read alias
    with transaction.atomic(using=db):
        model.objects.using(db).create(**fields)


T = TypeVar("T")


def _page(
    rows: list[tuple[Any, ...]],
    limit: int,
    load: Callable[[Any], T],
    kind: str,
    page: type[Page[T]],
) -> Page[T]:
    """A page from ``(data, created_at, seq, id)`` rows; the cursor is the last row's position.

    ``page`` is the parametrized type (``Page[ThreadItem]``): a bare ``Page`` holding items
    cannot be serialized on pydantic < 2.12 until some ``Page[...]`` was built in the process
    (``MockValSer``), which made a fresh worker's first ``items.list`` fail.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    return page(
        data=[load(row[0]) for row in rows],
        has_more=has_more,
        after=encode_cursor(kind, rows[-1][1:]) if has_more and rows else None,
    )
