"""``DjangoChatKitServer`` and the per-process instance the endpoint uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    AssistantMessageItem,
    AudioInput,
    ChatKitReq,
    ClientToolCallItem,
    ErrorEvent,
    FeedbackKind,
    ItemsFeedbackReq,
    ItemsListReq,
    NonStreamingReq,
    Page,
    StreamingReq,
    StructuredInputItem,
    Thread,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    ThreadUpdatedEvent,
    TranscriptionResult,
    UserMessageInput,
    UserMessageItem,
    is_streaming_req,
)
from django.core.exceptions import PermissionDenied
from pydantic import TypeAdapter

from chatkit_django._internal.compat import (
    encode_event,
    process_non_streaming,
    process_streaming_events,
)
from chatkit_django._internal.nul import names_nothing
from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.background import answering
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import TContext, UserLike
from chatkit_django.exceptions import (
    AlreadyAnswered,
    AnswerInProgress,
    InvalidAttachments,
    ThreadNotActive,
)
from chatkit_django.instances import get_server
from chatkit_django.models import Feedback, ThreadItem
from chatkit_django.reconnect import retry_on_dead_connection

if TYPE_CHECKING:
    from chatkit_django.agents import DjangoResponseStreamConverter, DjangoThreadItemConverter

logger = logging.getLogger(__name__)

#: Validates a request body into the SDK's ``ChatKitReq`` union. Built once: building one
#: costs milliseconds of CPU, and the SDK's ``process()`` builds one per request.
REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)


class DjangoChatKitServer(ChatKitServer[TContext]):
    """A ``ChatKitServer`` wired to ``DjangoStore`` and ``DjangoAttachmentStore``.

    Subclass it, implement ``respond()``, and name the subclass in ``CHATKIT['SERVER_CLASS']``.
    Generic in the context type, as the stores are: ``DjangoChatKitServer[MyContext]`` types
    ``context`` in ``respond()`` and the other overrides.
    """

    #: The largest page ``threads.list`` and ``items.list`` answer: a bigger ``limit`` gets
    #: this many (the client pages on with ``after``), one below 1 gets 1; none (or 0) gets
    #: the SDK's default of 20. A limit past any integer column would otherwise be a 500.
    max_page_size = 100

    #: Longest title kept from ``title_thread()``; a longer one is cut.
    max_title_length = 120

    def __init__(
        self,
        store: Store[TContext] | None = None,
        attachment_store: AttachmentStore[TContext] | None = None,
    ) -> None:
        super().__init__(
            store=store if store is not None else chatkit_settings.STORE_CLASS(),
            attachment_store=(
                attachment_store
                if attachment_store is not None
                else chatkit_settings.ATTACHMENT_STORE_CLASS()
            ),
        )
        # The attachment store asks this store who is acting and who may do what.
        if isinstance(self.attachment_store, DjangoAttachmentStore):
            self.attachment_store.bind(self.store)

    async def process(
        self, request: str | bytes | bytearray, context: TContext
    ) -> StreamingResult | NonStreamingResult:
        """The SDK's ``process()``, parsing with the module's adapter instead of a new one."""
        return await self.process_request(REQUEST_ADAPTER.validate_json(request), context)

    async def process_request(
        self, request: ChatKitReq, context: TContext
    ) -> StreamingResult | NonStreamingResult:
        """Answer a request already parsed into the SDK's models (the endpoint parses first).

        The routing is the SDK's own: this hands the request to the same handlers its
        ``process()`` does, after ``check_streaming_request()`` for a streaming one and
        ``check_non_streaming_request()`` for the others.
        """
        if isinstance(request, ThreadsListReq | ItemsListReq) and request.params.limit:
            request.params.limit = max(1, min(request.params.limit, self.max_page_size))
        scope_of = getattr(self.store, "scope_of", None)
        if scope_of is not None:
            scope_of(context)  # a scope no row can hold: 400 now, not an error event later
        if is_streaming_req(request):
            await self.check_streaming_request(request, context)
            return StreamingResult(self.stream(request, context))
        await self.check_non_streaming_request(request, context)
        return NonStreamingResult(await process_non_streaming(self, request, context))

    async def stream(self, request: StreamingReq, context: TContext) -> AsyncGenerator[bytes, None]:
        """The SSE bytes of a streaming request: ``stream_events()``, encoded as the SDK does."""
        try:
            async for event in self.stream_events(request, context):
                yield encode_event(self, event)
        except asyncio.CancelledError:
            raise  # a hang-up: the SDK's cancellation path already ran
        except Exception:
            logger.exception("Error while generating streamed response")
            raise

    async def stream_events(
        self, request: StreamingReq, context: TContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The SDK's events for ``request``, then, after the answer to a user message in a
        thread with no title, the thread named by ``title_thread()`` (``thread.updated``)."""
        events = process_streaming_events(self, request, context)
        if not isinstance(request, ThreadsCreateReq | ThreadsAddUserMessageReq) or (
            # Not overridden: no title to ask for, so no thread to load.
            type(self).title_thread is DjangoChatKitServer.title_thread
        ):
            async for event in events:
                yield event
            return
        thread_id = getattr(request.params, "thread_id", None)
        titled = message = answered = None
        async for event in events:
            if isinstance(event, ThreadCreatedEvent | ThreadUpdatedEvent):
                thread_id, titled = event.thread.id, bool(event.thread.title)
            elif isinstance(event, ThreadItemDoneEvent):
                if isinstance(event.item, UserMessageItem):
                    message = event.item
                elif isinstance(event.item, AssistantMessageItem):
                    answered = True
            elif isinstance(event, ErrorEvent):
                answered = False  # the answer failed: no title for it
            yield event
        if answered and message is not None and thread_id is not None and not titled:
            async for event in self.name_thread(thread_id, message, context):
                yield event

    async def name_thread(
        self, thread_id: str, item: UserMessageItem, context: TContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Ask ``title_thread()`` for a title, save it and tell the client. Any failure is
        logged: the answer is already saved and sent, and the thread stays untitled."""
        try:
            thread = await self.store.load_thread(thread_id, context)
            if thread.title:  # named meanwhile, by respond() or a rename
                return
            title = await self.title_thread(thread, item, context)
            title = " ".join((title or "").split())[: self.max_title_length].strip()
            if not title:
                return
            thread.title = title
            await self.store.save_thread(thread, context)
        except Exception:
            logger.exception("Could not name thread %s", thread_id)
            return
        yield ThreadUpdatedEvent(
            thread=Thread(
                id=thread.id,
                title=thread.title,
                created_at=thread.created_at,
                status=thread.status,
                allowed_image_domains=thread.allowed_image_domains,
                items=Page(),
            )
        )

    async def title_thread(
        self, thread: ThreadMetadata, item: UserMessageItem, context: TContext
    ) -> str | None:
        """A title for ``thread``, which has none, after the answer to its user message ``item``.

        Override to name threads: the title is saved and sent to the client as
        ``thread.updated`` at the end of the same stream, so ChatKit.js's history shows it
        without a reload. ``None`` or ``""`` leaves the thread untitled; it is asked again
        after the next answer. An exception is logged and never breaks the answer. Not
        called when ``respond()`` titled the thread itself. By default, ``None``.
        """
        return None

    async def check_streaming_request(self, request: StreamingReq, context: TContext) -> None:
        """Load and check what a streaming request names, before its stream opens.

        The SDK looks a thread up only once it is streaming, so a missing thread would end
        as a 200 with an error event; raising here answers 404 (``NotFoundError``) or 400
        (``ValueError``) instead. Every streaming request but ``threads.create`` writes to
        its thread or runs the responder, so it needs "change" access (a viewer gets 404);
        new input needs an active thread; a pending item takes one answer (409 for the
        others). Override to refuse more requests before they stream (call ``super()``).
        """
        store = self.store
        if isinstance(request, ThreadsCreateReq):
            await self.check_user_message_input(request.params.input, context)
            return
        thread_id = request.params.thread_id
        thread = await self.load_thread_for(thread_id, "change", context)
        if not isinstance(request, ThreadsCustomActionReq):
            self.check_thread_takes_input(thread)
            self.check_no_answer_running(thread)
        if isinstance(request, ThreadsAddUserMessageReq):
            await self.check_user_message_input(request.params.input, context, thread_id)
        elif isinstance(request, ThreadsAddStructuredInputReq):
            item = await store.load_item(thread_id, request.params.item_id, context)
            # The SDK would refuse these inside the stream (a 200 with an error event).
            if not isinstance(item, StructuredInputItem):
                raise ValueError(f"Item {item.id} is not a structured input item.")  # noqa: TRY004 (400, as the SDK)
            await self.claim_pending_item(thread_id, item, context)
        elif isinstance(request, ThreadsAddClientToolOutputReq):
            last = await store.load_thread_items(thread_id, None, 1, "desc", context)
            last_item = last.data[0] if last.data else None
            if not isinstance(last_item, ClientToolCallItem):
                raise ValueError(  # noqa: TRY004 (400, as the SDK)
                    f"The last item of thread {thread_id} is not a pending client tool call."
                )
            await self.claim_pending_item(thread_id, last_item, context)
        elif isinstance(request, ThreadsRetryAfterItemReq):
            item = await store.load_item(thread_id, request.params.item_id, context)
            # The SDK would end a 200 stream with an error event, or answer nothing at all.
            if not isinstance(item, UserMessageItem):
                raise ValueError(f"Item {item.id} is not a user message.")  # noqa: TRY004 (400, as the SDK)
        elif isinstance(request, ThreadsCustomActionReq) and request.params.item_id:
            await store.load_item(thread_id, request.params.item_id, context)

    async def check_non_streaming_request(
        self, request: NonStreamingReq, context: TContext
    ) -> None:
        """Check access for a non-streaming request that changes a thread, before the SDK runs.

        A sync action or feedback needs "change" on the thread, a rename too, a delete
        "delete": a user who may only view the thread gets 404, as for a missing one. Reads
        and attachment requests are left to the store. Override to refuse more (call
        ``super()``).
        """
        if isinstance(request, ThreadsSyncCustomActionReq | ThreadsUpdateReq | ItemsFeedbackReq):
            await self.load_thread_for(request.params.thread_id, "change", context)
        elif isinstance(request, ThreadsDeleteReq):
            await self.load_thread_for(request.params.thread_id, "delete", context)

    # -- preflight checks (see docs/concepts/permissions.md, "Security rules") ---

    async def load_thread_for(
        self, thread_id: str, action: str, context: TContext
    ) -> ThreadMetadata:
        """The thread, if the acting user may ``action`` it, by the store's access rule.

        A store without ``load_thread_for`` (not a ``DjangoStore``) can only say whether
        the thread is visible; its own writes must then refuse the rest.
        """
        load_thread_for: Callable[[str, str, TContext], Awaitable[ThreadMetadata]] | None = getattr(
            self.store, "load_thread_for", None
        )
        if load_thread_for is None:
            return await self.store.load_thread(thread_id, context)
        return await load_thread_for(thread_id, action, context)

    def check_thread_takes_input(self, thread: ThreadMetadata) -> None:
        """Refuse new input for a locked or closed thread (400), as ChatKit.js's UI does.

        Input is a user message, a retry, a structured-input answer or a client tool
        output. Widget actions still run: the server's own ``action()`` handles them and
        may, for instance, reopen the thread.
        """
        status = thread.status
        if status.type == "active":
            return
        reason = f" ({status.reason})" if getattr(status, "reason", None) else ""
        raise ThreadNotActive(
            f"Thread {thread.id} is {status.type}{reason}: it takes no new input.",
            code=f"thread_{status.type}",
        )

    def check_no_answer_running(self, thread: ThreadMetadata) -> None:
        """Refuse new input (409 ``answer_in_progress``) while the thread's last answer is
        still running in this process (``ON_DISCONNECT = "finish"``, after a hang-up or in
        another tab): two answers at once would interleave in the thread."""
        if answering(thread.id):
            raise AnswerInProgress(
                f"Thread {thread.id} is still answering; send again once the answer is done."
            )

    async def check_user_message_input(
        self, user_input: UserMessageInput, context: TContext, thread_id: str | None = None
    ) -> None:
        """Each attachment named once, at most ``MAX_ATTACHMENTS_PER_MESSAGE``, all loadable,
        none belonging to a thread other than ``thread_id`` (the message's; ``None`` for a new
        thread): re-linking would move it, and deleting the new thread would delete a file
        the other thread still shows.

        Every id the SDK then loads again, converts and stores in the item: a repeated id
        would multiply that work (and the bytes in a model turn) for nothing. The ids are
        loaded in one query (``DjangoStore.load_attachments``).
        """
        ids = user_input.attachments
        limit = chatkit_settings.MAX_ATTACHMENTS_PER_MESSAGE
        if len(ids) > limit:
            raise InvalidAttachments(
                f"A message may have at most {limit} attachments, not {len(ids)}.",
                code="too_many_attachments",
            )
        if len(set(ids)) != len(ids):
            repeated = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise InvalidAttachments(
                f"Attachment {repeated} is named more than once.", code="duplicate_attachment"
            )
        if not ids:
            return
        load_attachments = getattr(self.store, "load_attachments", None)
        if load_attachments is not None:
            attachments = await load_attachments(ids, context)
        else:
            attachments = [await self.store.load_attachment(i, context) for i in ids]
        for attachment in attachments:
            if attachment.thread_id is not None and attachment.thread_id != thread_id:
                raise InvalidAttachments(
                    f"Attachment {attachment.id} belongs to another thread.",
                    code="attachment_in_another_thread",
                )

    async def claim_pending_item(
        self,
        thread_id: str,
        item: StructuredInputItem | ClientToolCallItem,
        context: TContext,
    ) -> None:
        """Take the one right to answer ``item``, or refuse with 409 ``already_answered``.

        The store's ``claim_pending_item`` is one conditional ``UPDATE``, so of two answers
        racing for the same question exactly one runs the responder.
        """
        claim = getattr(self.store, "claim_pending_item", None)
        if item.status == "pending" and (claim is None or await claim(thread_id, item, context)):
            return
        raise AlreadyAnswered(f"Item {item.id} was answered already.")

    @retry_on_dead_connection
    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: TContext,
    ) -> None:
        """Record ``items.feedback`` as ``Feedback`` rows, one per item and user.

        A second vote on the same item replaces the first. The thread must be visible to
        the user and every item must belong to it, or nothing is written (404). An upsert, so
        it is retried once on a fresh connection when it meets a dead one.
        """
        await self.store.load_thread(thread_id, context)
        get_user: Callable[[TContext], UserLike | None] | None = getattr(
            self.store, "get_user", None
        )
        # A store without ``get_user`` (not a DjangoStore): the context's user, as the
        # attachment store finds it.
        user: UserLike | None = (
            get_user(context) if get_user is not None else getattr(context, "user", None)
        )
        if user is None or not user.is_authenticated:
            raise PermissionDenied("Feedback needs an authenticated user.")
        wanted = set(item_ids)
        found = {
            pk
            async for pk in ThreadItem.objects.filter(
                thread_id=thread_id, pk__in=[pk for pk in wanted if not names_nothing(pk)]
            ).values_list("pk", flat=True)
        }
        missing = sorted(wanted - found)
        if missing:
            raise NotFoundError(f"Item {missing[0]} not found in thread {thread_id}")
        await Feedback.objects.abulk_create(
            [
                Feedback(thread_id=thread_id, item_id=pk, user_id=user.pk, kind=feedback)
                for pk in sorted(wanted)
            ],
            update_conflicts=True,
            unique_fields=["item", "user"],
            update_fields=["kind"],
        )

    # -- rich input (see docs/guides/accept-rich-user-input.md) ----------------

    def get_thread_item_converter(self, context: TContext) -> DjangoThreadItemConverter[TContext]:
        """The converter from thread items to model input, for this request's user."""
        from chatkit_django.agents import DjangoThreadItemConverter

        return DjangoThreadItemConverter(
            context, store=self.store, attachment_store=self._django_attachment_store()
        )

    def get_response_stream_converter(
        self, thread: ThreadMetadata, context: TContext
    ) -> DjangoResponseStreamConverter[TContext]:
        """The converter ``stream_agent_response`` uses; stores generated images."""
        from chatkit_django.agents import DjangoResponseStreamConverter

        return DjangoResponseStreamConverter(
            thread, context, attachment_store=self._django_attachment_store()
        )

    def _django_attachment_store(self) -> DjangoAttachmentStore[TContext] | None:
        store = self.attachment_store
        return store if isinstance(store, DjangoAttachmentStore) else None

    def get_transcription_model(self, context: TContext) -> str:
        return chatkit_settings.TRANSCRIPTION_MODEL

    async def transcribe(self, audio_input: AudioInput, context: TContext) -> TranscriptionResult:
        """Dictation through OpenAI's transcription API; errors are ``TranscriptionError``s."""
        from chatkit_django.transcription import transcribe_audio

        return await transcribe_audio(audio_input, model=self.get_transcription_model(context))


__all__ = ["REQUEST_ADAPTER", "DjangoChatKitServer", "get_server"]
