"""The SDK's agents converters, reading and writing through Django.

``DjangoThreadItemConverter`` turns thread items into model input: attachments are read from
the attachment storage (only when the acting user may see them), @-mention tags are resolved
through ``chatkit_django.entities``. ``DjangoResponseStreamConverter`` stores generated images
as attachments instead of keeping their base64 inside thread items.

Both are built per request, with the ``ChatKitContext``: the SDK's converter methods receive no
context, and every read here must be checked against the acting user.

Typical use inside ``respond()``::

    converter = self.get_thread_item_converter(context)
    input_items = await converter.to_agent_input(items)
    result = Runner.run_streamed(agent, input_items, context=agent_context)
    async for event in stream_agent_response(
        agent_context, result, converter=self.get_response_stream_converter(thread, context)
    ):
        yield event
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, cast
from urllib.parse import urlsplit

from agents import TResponseInputItem
from asgiref.sync import sync_to_async
from chatkit.agents import ResponseStreamConverter, ThreadItemConverter
from chatkit.store import Store
from chatkit.types import (
    Attachment as AttachmentModel,
)
from chatkit.types import (
    GeneratedImageItem,
    ImageAttachment,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTagContent,
)
from django.core.files.storage import Storage
from django.db import models
from django.urls import reverse
from openai.types.responses import (
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)
from openai.types.responses.response_input_item_param import Message

from chatkit_django.attachments import (
    DjangoAttachmentStore,
    absolute_url,
    can_presign,
    get_django_attachment_store,
)
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import TContext, UserLike
from chatkit_django.entities import (
    EntitySource,
    get_entity_sources,
    resolve_entity,
    split_entity_id,
)
from chatkit_django.exceptions import StoredFileTooLarge
from chatkit_django.models import Attachment
from chatkit_django.upload_limits import max_upload_bytes

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger(__name__)

# Text-like types sent to the model as text. Any ``text/*`` type is text-like too.
TEXT_MIME_TYPES = frozenset(
    {
        "application/json",
        "application/ld+json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/csv",
        "application/javascript",
        "application/sql",
    }
)
ATTACHMENT_FIELDS = (
    "owner_id",
    "scope",
    "file",
    "mime_type",
    "name",
    "size",
    "uploaded_at",
    "upload_nonce",
)
IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

# Delimiters the model is told to recognise. Text the server did not write cannot form them:
# ``fence`` defuses their tags inside a block, ``quote_text`` every client string in a note.
ATTACHMENT_BLOCK = '<ATTACHMENT name="{name}" type="{mime}">\n{text}\n</ATTACHMENT>'
ENTITY_BLOCK = '<ENTITY id="{id}" source="{source}">\n{text}\n</ENTITY>'
BLOCK_TAGS = ("ATTACHMENT", "ENTITY")

# What a one-line quoted value may not hold: its own quote, angle brackets (no tag of any
# kind can form), and control characters or line breaks (it cannot start a line of its own).
_UNQUOTABLE = re.compile(r'["<>\x00-\x1f\x7f-\x9f\u2028\u2029]')
_QUOTED = {'"': "'", "<": "\u2039", ">": "\u203a"}
MAX_QUOTED_CHARS = 200


def fence(text: str, *tags: str) -> str:
    """``text`` with every opener and closer of ``tags`` (default: every block tag) defused.

    One pass, any case, any spacing, and nothing removed: ``</EN</ENTITY>TITY>`` cannot
    re-form a closer the way deleting the inner one would let it. Openers go too, so the
    content of one block cannot hold a whole block of another kind.
    """
    names = "|".join(re.escape(t) for t in tags or BLOCK_TAGS)
    return re.sub(rf"<(\s*/?\s*(?:{names})\b)", "\u2039\\1", text, flags=re.IGNORECASE)


def quote_text(value: str) -> str:
    """A client-supplied string, safe inside a note's double quotes or a block's attribute.

    One line, no ``"`` to end the quote early and no ``<``/``>`` (shown as ``\u2039``/``\u203a``),
    so an attachment name or a tag's text cannot open or close a block whatever its case or
    spacing; capped, since a note repeats it.
    """
    if len(value) > MAX_QUOTED_CHARS:
        value = value[: MAX_QUOTED_CHARS - 1] + "\u2026"
    return _UNQUOTABLE.sub(lambda m: _QUOTED.get(m.group(), " "), value)


quote_attr = quote_text  # the attribute values of a block follow the same rule


def data_url(mime_type: str, content: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(content).decode('ascii')}"


def is_text_like(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in TEXT_MIME_TYPES


def content_url(attachment_id: str) -> str:
    """The path of the access-checked content view for ``attachment_id``."""
    return reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})


def presigned_url(storage: Storage, name: str, max_age: int, mime_type: str) -> str | None:
    """A short-lived URL the model can fetch ``name`` (of type ``mime_type``) from, when the
    storage signs URLs."""
    if not can_presign(storage):
        return None  # local files give paths the model cannot fetch
    if storage.size(name) > max_upload_bytes(mime_type):
        return None  # grown out of band: never handed out (reading it is refused too)
    url: str = storage.url(name, expire=max_age)
    return url


class DjangoThreadItemConverter(ThreadItemConverter, Generic[TContext]):
    """Converts thread items to model input for the user in ``context``.

    Args:
        context: The request's context; attachments and entities are checked against its user.
        store: The server's store; attachment access follows its ``has_access()`` (by
            default the server's store's, through the attachment store).
        attachment_store: The server's ``DjangoAttachmentStore``, which reads the bytes
            (from the storage its ``get_storage`` picks); by default the server's.
    """

    def __init__(
        self,
        context: TContext,
        store: Store[TContext] | None = None,
        attachment_store: DjangoAttachmentStore[TContext] | None = None,
    ):
        self.context = context
        self.store = store
        self.attachments: DjangoAttachmentStore[TContext] = (
            attachment_store if attachment_store is not None else get_django_attachment_store()
        )
        # Filled by prefetch(): one query for every attachment, one per entity source.
        self._attachment_rows: dict[str, Attachment | None] = {}
        self._entities: dict[str, tuple[EntitySource, models.Model] | None] = {}
        # Each attachment's content, converted once: every turn converts the whole history.
        self._attachment_contents: dict[str, ResponseInputContentParam] = {}
        # Attachments whose stored bytes are past MAX_UPLOAD_BYTES: refused, and noted so.
        self._oversized: set[str] = set()

    async def to_agent_input(
        self, thread_items: Sequence[ThreadItem] | ThreadItem
    ) -> list[TResponseInputItem]:
        items = list(thread_items) if isinstance(thread_items, Sequence) else [thread_items]
        await self.prefetch(items)
        return await super().to_agent_input(thread_items)

    async def prefetch(self, items: Sequence[ThreadItem]) -> None:
        """Load the attachments and mentioned entities of ``items`` in a few queries, so that
        converting a long thread costs the same number of queries as a short one."""
        user = self.user
        if user is None:
            return
        messages = [i for i in items if isinstance(i, UserMessageItem)]
        attachment_ids = {a.id for m in messages for a in m.attachments}
        attachment_ids -= self._attachment_rows.keys()
        if attachment_ids:
            rows = Attachment.objects.filter(pk__in=attachment_ids).only(*ATTACHMENT_FIELDS)
            found = {row.pk: row async for row in rows}
            for attachment_id in attachment_ids:
                self._attachment_rows[attachment_id] = found.get(attachment_id)
        # source name -> {normalised pk: [entity ids]}: "note:1" and "note:01" are one row.
        wanted: dict[str, dict[Any, list[str]]] = {}
        sources = get_entity_sources()
        querysets: dict[str, models.QuerySet[Any]] = {}
        for message in messages:
            for part in message.content:
                if not isinstance(part, UserMessageTagContent) or part.id in self._entities:
                    continue
                split = split_entity_id(part.id)
                if split is None:
                    self._entities[part.id] = None
                    continue
                source, raw_pk = split
                if source.name not in querysets:
                    querysets[source.name] = source.get_queryset(user)
                pk = source.clean_pk(raw_pk, querysets[source.name])
                if pk is None:  # malformed or out of range: no row has it, no query needed
                    self._entities[part.id] = None
                else:
                    wanted.setdefault(source.name, {}).setdefault(pk, []).append(part.id)
        for name, by_pk in wanted.items():
            source = sources[name]
            found = {o.pk: o async for o in querysets[name].filter(pk__in=list(by_pk))}
            for pk, entity_ids in by_pk.items():
                obj = found.get(pk)
                for entity_id in entity_ids:
                    self._entities[entity_id] = None if obj is None else (source, obj)

    async def user_message_to_input(
        self,
        item: UserMessageItem,
        is_last_message: bool = True,  # noqa: FBT001, FBT002 (the SDK's signature)
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        """The SDK's conversion, with block tags in what the user typed defused.

        Only the server writes ``<ENTITY>`` and ``<ATTACHMENT>`` blocks: a message (or quoted
        text) holding one, perhaps from another user of a shared thread, cannot pass for one.
        """
        content = [part.model_copy(update={"text": fence(part.text)}) for part in item.content]
        quoted = fence(item.quoted_text) if item.quoted_text else item.quoted_text
        item = item.model_copy(update={"content": content, "quoted_text": quoted})
        return await super().user_message_to_input(item, is_last_message)

    # -- access -------------------------------------------------------------

    @property
    def user(self) -> AbstractBaseUser | None:
        get_user: Callable[[TContext], UserLike | None] | None = getattr(
            self.store, "get_user", None
        )
        if get_user is None:
            return self.attachments.get_user(self.context)
        user = get_user(self.context)
        return user if user is not None and user.is_authenticated else None

    async def get_attachment_row(self, attachment_id: str) -> Attachment | None:
        """The attachment's row if the acting user may view it, in the context's scope, else
        ``None``."""
        user = self.user
        if user is None:
            return None
        if attachment_id in self._attachment_rows:
            row = self._attachment_rows[attachment_id]
        else:
            row = (
                await Attachment.objects.filter(pk=attachment_id).only(*ATTACHMENT_FIELDS).afirst()
            )
        in_scope = getattr(self.store, "in_scope", None) or self.attachments.in_scope
        if row is None or not in_scope(row, self.context):
            return None
        has_access = getattr(self.store, "has_access", None)
        if has_access is not None:
            allowed = await has_access(user, row, "view")
        else:  # the rule of the store the attachment store is bound to
            allowed = await self.attachments.has_access(user, row, "view")
        return row if allowed else None

    # -- reading bytes ------------------------------------------------------

    async def read_bytes(self, row: Attachment, limit: int | None = None) -> bytes | None:
        """The stored bytes (at most ``limit``), or ``None`` when they are missing or larger
        than ``MAX_UPLOAD_BYTES`` (then the attachment's note says so)."""
        if not row.file.name:
            return None
        try:
            return await sync_to_async(self.attachments.read_bytes)(row, limit)
        except StoredFileTooLarge:
            self._oversized.add(row.pk)
            return None

    # -- attachments ----------------------------------------------------------

    def note(self, text: str) -> ResponseInputTextParam:
        return ResponseInputTextParam(type="input_text", text=text)

    def missing_note(self, attachment: AttachmentModel) -> ResponseInputTextParam:
        if attachment.id in self._oversized:
            return self.note(
                f'[The user attached "{quote_text(attachment.name)}" '
                f"({quote_text(attachment.mime_type)}), but the stored file is larger than "
                "the upload limit, so it was not read.]"
            )
        return self.note(
            f'[The user attached "{quote_text(attachment.name)}" '
            f"({quote_text(attachment.mime_type)}), but its contents could not be read.]"
        )

    async def attachment_to_message_content(
        self, attachment: AttachmentModel
    ) -> ResponseInputContentParam:
        """``attachment_content``, once per attachment id for this converter (one turn).

        An attachment named by several messages of the history is read from storage once.
        """
        content = self._attachment_contents.get(attachment.id)
        if content is None:
            content = await self.attachment_content(attachment)
            self._attachment_contents[attachment.id] = content
        return cast("ResponseInputContentParam", dict(content))

    async def attachment_content(self, attachment: AttachmentModel) -> ResponseInputContentParam:
        """Images → ``input_image``, PDFs → ``input_file``, text → ``input_text``, else a note.

        Never raises for a missing or unreadable file: the model gets a note and the turn
        goes on.
        """
        row = await self.get_attachment_row(attachment.id)
        # A presigned upload is confirmed on first sight; an unfinished one has no bytes yet.
        if row is None or not await sync_to_async(self.attachments.confirm_upload)(row):
            return self.missing_note(attachment)
        mime = row.mime_type.split(";", 1)[0].strip().lower()
        if mime in IMAGE_MIME_TYPES or isinstance(attachment, ImageAttachment):
            return await self.image_to_message_content(row, mime, attachment)
        if mime == "application/pdf":
            content = await self.read_bytes(row)
            if content is None:
                return self.missing_note(attachment)
            return ResponseInputFileParam(
                type="input_file", file_data=data_url(mime, content), filename=row.name
            )
        if is_text_like(mime):
            return await self.text_to_message_content(row, mime, attachment)
        return self.note(
            f'[The user attached "{quote_text(row.name)}" ({quote_text(mime)}); files of this '
            "type cannot be shown to the model.]"
        )

    async def image_to_message_content(
        self, row: Attachment, mime: str, attachment: AttachmentModel
    ) -> ResponseInputContentParam:
        if chatkit_settings.IMAGE_INPUT_AS_URL and row.file.name:
            storage = self.attachments.get_storage(row.owner_id)
            url = await sync_to_async(presigned_url)(
                storage, row.file.name, chatkit_settings.PREVIEW_URL_MAX_AGE, row.mime_type
            )
            if url is not None:
                return ResponseInputImageParam(type="input_image", detail="auto", image_url=url)
        content = await self.read_bytes(row)
        if content is None:
            return self.missing_note(attachment)
        return ResponseInputImageParam(
            type="input_image", detail="auto", image_url=data_url(mime, content)
        )

    async def text_to_message_content(
        self, row: Attachment, mime: str, attachment: AttachmentModel
    ) -> ResponseInputContentParam:
        max_chars = chatkit_settings.ATTACHMENT_TEXT_MAX_CHARS
        # UTF-8 needs at most 4 bytes a character: never read more than the cap can use.
        content = await self.read_bytes(row, limit=max_chars * 4 + 4)
        if content is None:
            return self.missing_note(attachment)
        text = content.decode("utf-8", errors="replace")
        total = row.size
        if len(text) > max_chars:
            text = text[:max_chars]
        truncated = len(text) == max_chars and (total is None or total > len(text.encode()))
        if truncated:
            text += f"\n[Truncated to the first {max_chars} characters.]"
        elif total is not None and len(content) < total:  # cut at MAX_UPLOAD_BYTES
            text += f"\n[Truncated to the first {len(content)} bytes.]"
        return self.note(
            ATTACHMENT_BLOCK.format(
                name=quote_attr(row.name), mime=quote_attr(mime), text=fence(text)
            )
        )

    # -- tags ---------------------------------------------------------------

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> ResponseInputContentParam:
        """The mentioned entity's summary in an ``<ENTITY>`` block, or a note if not found.

        Only ``tag.id`` is used to find the entity, through the source's per-user queryset;
        the ``data`` the client sent with the tag is never trusted.
        """
        user = self.user
        if tag.id in self._entities:
            found = self._entities[tag.id]
        else:
            found = await resolve_entity(tag.id, user) if user is not None else None
        if found is None:
            return self.note(
                f'[The user mentioned "@{quote_text(tag.text)}", which could not be found.]'
            )
        source, obj = found
        return self.note(
            ENTITY_BLOCK.format(
                id=quote_attr(source.entity_id(obj)),
                source=quote_attr(source.name),
                text=fence(f"Title: {source.get_title(obj)}\n{source.summarize(obj)}".rstrip()),
            )
        )

    # -- generated images ---------------------------------------------------

    async def generated_image_to_input(
        self, item: GeneratedImageItem
    ) -> TResponseInputItem | list[TResponseInputItem] | None:
        """Generated images stored by ``DjangoResponseStreamConverter`` go back as data URLs:
        their content URL needs the user's session, which the model does not have."""
        if not item.image:
            return None
        attachment_id = generated_image_attachment_id(item.image.url)
        row = await self.get_attachment_row(attachment_id) if attachment_id else None
        if row is None:
            return await super().generated_image_to_input(item)
        content = await self.read_bytes(row)
        if content is None:
            return None
        return Message(
            type="message",
            role="user",
            content=[
                self.note("The following image was generated by the agent."),
                ResponseInputImageParam(
                    type="input_image", detail="auto", image_url=data_url(row.mime_type, content)
                ),
            ],
        )


def generated_image_attachment_id(url: str) -> str | None:
    """The attachment id in a URL made by ``content_url``, else ``None``."""
    path = urlsplit(url).path
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or content_url(parts[-2]) != path:
        return None
    return parts[-2]


class DjangoResponseStreamConverter(ResponseStreamConverter, Generic[TContext]):
    """Stores generated images as attachments of the thread, owned by the acting user.

    The SDK's default keeps each image as a base64 data URL inside the thread item; here the
    item holds the URL of the access-checked content view instead (absolute: on the request's
    host, or on ``CHATKIT['BASE_URL']`` outside a request). Partial images (progress
    previews, sent only over the stream) stay data URLs: storing each would write files that
    the final image replaces a second later.
    """

    def __init__(
        self,
        thread: ThreadMetadata,
        context: TContext,
        *,
        partial_images: int | None = None,
        attachment_store: DjangoAttachmentStore[TContext] | None = None,
    ):
        super().__init__(partial_images=partial_images)
        self.thread = thread
        self.context = context
        self.attachments: DjangoAttachmentStore[TContext] = (
            attachment_store if attachment_store is not None else get_django_attachment_store()
        )

    async def base64_image_to_url(
        self,
        image_id: str,
        base64_image: str,
        partial_image_index: int | None = None,
    ) -> str:
        if partial_image_index is not None:
            return await super().base64_image_to_url(image_id, base64_image, partial_image_index)
        content = base64.b64decode(base64_image)
        attachment = await sync_to_async(self.save_image)(image_id, content)
        request = self.attachments.get_request(self.context)
        return absolute_url(content_url(attachment.id), request)

    def save_image(self, image_id: str, content: bytes) -> AttachmentModel:
        """Store the bytes and their row (through the attachment store: no row, no bytes)."""
        return self.attachments.create_generated_image(
            content, image_id=image_id, thread_id=self.thread.id, context=self.context
        )
