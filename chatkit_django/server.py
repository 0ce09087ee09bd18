"""``DjangoChatKitServer`` and the per-process instance the endpoint uses."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    AudioInput,
    ChatKitReq,
    ClientToolCallItem,
    FeedbackKind,
    StreamingReq,
    StructuredInputItem,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsRetryAfterItemReq,
    TranscriptionResult,
    UserMessageItem,
    is_streaming_req,
)
from django.core.exceptions import PermissionDenied
from pydantic import TypeAdapter

from chatkit_django._internal.compat import process_non_streaming, process_streaming
from chatkit_django.conf import chatkit_settings, on_reload
from chatkit_django.context import ChatKitContext
from chatkit_django.models import Feedback, ThreadItem

if TYPE_CHECKING:
    from chatkit_django.agents import DjangoResponseStreamConverter, DjangoThreadItemConverter

#: Validates a request body into the SDK's ``ChatKitReq`` union. Built once: building one
#: costs milliseconds of CPU, and the SDK's ``process()`` builds one per request.
REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)


class DjangoChatKitServer(ChatKitServer[ChatKitContext]):
    """A ``ChatKitServer`` wired to ``DjangoStore`` and ``DjangoAttachmentStore``.

    Subclass it, implement ``respond()``, and name the subclass in ``CHATKIT['SERVER_CLASS']``.
    """

    def __init__(
        self,
        store: Store[ChatKitContext] | None = None,
        attachment_store: AttachmentStore[ChatKitContext] | None = None,
    ) -> None:
        super().__init__(
            store=store if store is not None else chatkit_settings.STORE_CLASS(),
            attachment_store=(
                attachment_store
                if attachment_store is not None
                else chatkit_settings.ATTACHMENT_STORE_CLASS()
            ),
        )

    async def process(
        self, request: str | bytes | bytearray, context: ChatKitContext
    ) -> StreamingResult | NonStreamingResult:
        """The SDK's ``process()``, parsing with the module's adapter instead of a new one."""
        return await self.process_request(REQUEST_ADAPTER.validate_json(request), context)

    async def process_request(
        self, request: ChatKitReq, context: ChatKitContext
    ) -> StreamingResult | NonStreamingResult:
        """Answer a request already parsed into the SDK's models (the endpoint parses first).

        The routing is the SDK's own: this hands the request to the same handlers its
        ``process()`` does, after ``check_streaming_request()`` for a streaming one.
        """
        if is_streaming_req(request):
            await self.check_streaming_request(request, context)
            return StreamingResult(process_streaming(self, request, context))
        return NonStreamingResult(await process_non_streaming(self, request, context))

    async def check_streaming_request(self, request: StreamingReq, context: ChatKitContext) -> None:
        """Load what a streaming request names, before its stream opens.

        The SDK looks a thread up only once it is streaming, so a missing thread would end
        as a 200 with an error event; raising here answers 404 (``NotFoundError``) or 400
        (``ValueError``) instead. Override to refuse more requests before they stream
        (call ``super()``).
        """
        store = self.store
        if isinstance(request, ThreadsCreateReq):
            for attachment_id in request.params.input.attachments:
                await store.load_attachment(attachment_id, context)
            return
        thread_id = request.params.thread_id
        await store.load_thread(thread_id, context)
        if isinstance(request, ThreadsAddUserMessageReq):
            for attachment_id in request.params.input.attachments:
                await store.load_attachment(attachment_id, context)
        elif isinstance(request, ThreadsAddStructuredInputReq):
            item = await store.load_item(thread_id, request.params.item_id, context)
            # The SDK would refuse these inside the stream (a 200 with an error event).
            if not isinstance(item, StructuredInputItem):
                raise ValueError(f"Item {item.id} is not a structured input item.")  # noqa: TRY004 (400, as the SDK)
            if item.status != "pending":
                raise ValueError(f"Structured input item {item.id} is not pending.")
        elif isinstance(request, ThreadsAddClientToolOutputReq):
            last = await store.load_thread_items(thread_id, None, 1, "desc", context)
            item = last.data[0] if last.data else None
            if not (isinstance(item, ClientToolCallItem) and item.status == "pending"):
                raise ValueError(
                    f"The last item of thread {thread_id} is not a pending client tool call."
                )
        elif isinstance(request, ThreadsRetryAfterItemReq):
            item = await store.load_item(thread_id, request.params.item_id, context)
            # The SDK would end a 200 stream with an error event, or answer nothing at all.
            if not isinstance(item, UserMessageItem):
                raise ValueError(f"Item {item.id} is not a user message.")  # noqa: TRY004 (400, as the SDK)
        elif isinstance(request, ThreadsCustomActionReq) and request.params.item_id:
            await store.load_item(thread_id, request.params.item_id, context)

    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: ChatKitContext,
    ) -> None:
        """Record ``items.feedback`` as ``Feedback`` rows, one per item and user.

        A second vote on the same item replaces the first. The thread must be visible to
        the user and every item must belong to it, or nothing is written (404).
        """
        await self.store.load_thread(thread_id, context)
        get_user = getattr(self.store, "get_user", None)
        user = get_user(context) if get_user is not None else context.user
        if user is None or not user.is_authenticated:
            raise PermissionDenied("Feedback needs an authenticated user.")
        wanted = set(item_ids)
        found = {
            pk
            async for pk in ThreadItem.objects.filter(
                thread_id=thread_id, pk__in=wanted
            ).values_list("pk", flat=True)
        }
        missing = sorted(wanted - found)
        if missing:
            raise NotFoundError(f"Item {missing[0]} not found in thread {thread_id}")
        await Feedback.objects.abulk_create(
            [
                Feedback(thread_id=thread_id, item_id=pk, user=user, kind=feedback)
                for pk in sorted(wanted)
            ],
            update_conflicts=True,
            unique_fields=["item", "user"],
            update_fields=["kind"],
        )

    # -- rich input (see docs/guides/accept-rich-user-input.md) ----------------

    def get_thread_item_converter(self, context: ChatKitContext) -> DjangoThreadItemConverter:
        """The converter from thread items to model input, for this request's user."""
        from chatkit_django.agents import DjangoThreadItemConverter

        return DjangoThreadItemConverter(context, store=self.store)

    def get_response_stream_converter(
        self, thread: ThreadMetadata, context: ChatKitContext
    ) -> DjangoResponseStreamConverter:
        """The converter ``stream_agent_response`` uses; stores generated images."""
        from chatkit_django.agents import DjangoResponseStreamConverter

        return DjangoResponseStreamConverter(thread, context)

    def get_transcription_model(self, context: ChatKitContext) -> str:
        return chatkit_settings.TRANSCRIPTION_MODEL

    async def transcribe(
        self, audio_input: AudioInput, context: ChatKitContext
    ) -> TranscriptionResult:
        """Dictation through OpenAI's transcription API; errors are ``TranscriptionError``s."""
        from chatkit_django.transcription import transcribe_audio

        return await transcribe_audio(audio_input, model=self.get_transcription_model(context))


@functools.cache
def get_server() -> ChatKitServer[ChatKitContext]:
    """The project's server, built once per process (rebuilt when ``CHATKIT`` changes)."""
    server_class = chatkit_settings.SERVER_CLASS
    if server_class is None:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("CHATKIT['SERVER_CLASS'] is not set; see chatkit_django.E004.")
    return server_class()


on_reload(get_server.cache_clear)
