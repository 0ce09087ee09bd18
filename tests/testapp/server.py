"""Small deterministic servers for tests."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from chatkit.types import (
    Action,
    AssistantMessageItem,
    AudioInput,
    ProgressUpdateEvent,
    SyncCustomActionResponse,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    WidgetItem,
)
from django.db import connection

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.store import DjangoStore, item_preview
from example_project.demo.replies import delta, done, new_reply


# --8<-- [start:echo-server]
class EchoServer(DjangoChatKitServer):
    """Answers every message with "echo: <its text>"."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = item_preview(input_user_message) if input_user_message else ""
        prefix = context.extra.get("echo_prefix", "echo")
        yield done(new_reply(self, thread, context), f"{prefix}: {text}")

    # --8<-- [end:echo-server]
    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield done(new_reply(self, thread, context), f"action: {action.type}")

    async def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: ChatKitContext,
    ) -> SyncCustomActionResponse:
        return SyncCustomActionResponse(updated_item=sender)


class ProtocolServer(EchoServer):
    """``EchoServer`` with dictation answered offline: "<n> bytes of <media type>"."""

    async def transcribe(
        self, audio_input: AudioInput, context: ChatKitContext
    ) -> TranscriptionResult:
        return TranscriptionResult(
            text=f"{len(audio_input.data)} bytes of {audio_input.media_type}"
        )


# --8<-- [start:archived-threads]
class ArchivingServer(EchoServer):
    """Threads whose metadata says ``archived`` take no new messages (400, before any stream)."""

    async def check_streaming_request(self, request, context):
        await super().check_streaming_request(request, context)  # 404s, pending items...
        if isinstance(request, ThreadsAddUserMessageReq):
            thread = await self.store.load_thread(request.params.thread_id, context)
            if thread.metadata.get("archived"):
                raise ValueError(f"Thread {thread.id} is archived.")


# --8<-- [end:archived-threads]


class ScriptedServer(EchoServer):
    """Streams "partial " then obeys the message: commands the tests use to steer timing.

    - ``gate <path>``: wait until the file ``<path>`` exists, then finish with "done".
    - ``sleep <seconds>``: stay silent that long, then finish.
    - ``fail``: raise inside ``respond`` after the first delta.
    - ``probe <seconds>``: stay silent that long, then finish with "held" or "released":
      whether the request's database connection is still open.
    Anything else is echoed like ``EchoServer`` does.
    """

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = item_preview(input_user_message) if input_user_message else ""
        command, _, arg = text.partition(" ")
        if command not in {"gate", "sleep", "fail", "probe"}:
            async for event in super().respond(thread, input_user_message, context):
                yield event
            return
        item = new_reply(self, thread, context)
        yield ThreadItemAddedEvent(item=item)
        yield delta(item, "partial ")
        if command == "fail":
            raise RuntimeError("the responder broke")
        if command == "gate":
            # Polling a file: the gate is opened by the test, in another process.
            while not Path(arg).exists():  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(float(arg))
        text = "partial done"
        if command == "probe":
            # In the request's database thread, as the store's next query would be.
            held = await sync_to_async(lambda: connection.connection is not None)()
            text = "partial held" if held else "partial released"
        yield done(item, text)


class RecordingServer(EchoServer):
    """``EchoServer`` that records each call of ``respond``, ``action`` and ``sync_action``.

    ``CALLS`` holds ``(method name, thread id)``; tests clear it. A list on the class, so
    that servers built in other threads (concurrency tests) record into the same one.
    """

    CALLS: list[tuple[str, str]] = []

    async def respond(self, thread, input_user_message, context):
        self.CALLS.append(("respond", thread.id))
        async for event in super().respond(thread, input_user_message, context):
            yield event

    async def action(self, thread, action, sender, context):
        self.CALLS.append(("action", thread.id))
        async for event in super().action(thread, action, sender, context):
            yield event

    async def sync_action(self, thread, action, sender, context):
        self.CALLS.append(("sync_action", thread.id))
        return await super().sync_action(thread, action, sender, context)


class _StreamReports(logging.Handler):
    """What ``EventStream`` reports at debug level, for ``HangUpServer``'s tests: a client
    gone before its input was stored sets ``HANG_UP_NOTICED``."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("The client went away before its input was stored"):
            HANG_UP_NOTICED.set()


def mark(name: str, text: str) -> None:
    """Write the file ``name`` in ``CHATKIT_TEST_HANGUP_DIR`` whole (a test polls for it)."""
    marks = Path(os.environ["CHATKIT_TEST_HANGUP_DIR"])
    (marks / f"{name}.tmp").write_text(text)
    (marks / f"{name}.tmp").replace(marks / name)


HANG_UP_NOTICED = asyncio.Event()
FLOOD = {"produced": 0}  # bytes of progress text the flooding responder has yielded


class HoldingStore(DjangoStore):
    """``DjangoStore`` that can stop at one step of the SDK's input phase, for hang-up tests.

    The request's ``X-Test-Hold`` header names the step: ``save_thread`` (before
    ``thread.created`` is sent) or ``user_message`` (between ``thread.created`` and the user
    item). The step waits there until the endpoint has noticed the hang-up, or is cancelled.
    """

    async def save_thread(self, thread: ThreadMetadata, context: ChatKitContext) -> None:
        await hold(context, "save_thread")
        await super().save_thread(thread, context)

    async def add_thread_item(self, thread_id: str, item: Any, context: ChatKitContext) -> None:
        if isinstance(item, UserMessageItem):
            await hold(context, "user_message")
        await super().add_thread_item(thread_id, item, context)


async def hold(context: ChatKitContext, step: str) -> None:
    """Wait at ``step`` if the request asks for it (once per request)."""
    request = context.request
    if request is None or request.headers.get("X-Test-Hold") != step or context.extra.get("held"):
        return
    context.extra["held"] = True
    try:
        # Never "done" by itself: only a hang-up (noticed or cancelling) moves on.
        await asyncio.wait_for(HANG_UP_NOTICED.wait(), 30)
    except TimeoutError:
        mark("timeout", step)
        raise
    except asyncio.CancelledError:
        # The hang-up cancelled the input phase itself: the message is lost.
        mark("finished", f"cancelled at {step}")
        raise


class HangUpServer(ScriptedServer):
    """Streams one assistant item that never finishes, for clients that hang up.

    With ``X-Test-Hold: respond`` the responder waits before its first event, otherwise
    after its first delta ("partial "); ``HoldingStore`` holds the earlier steps. When the
    SDK's cancellation handling is done, the file ``finished`` appears in
    ``CHATKIT_TEST_HANGUP_DIR``.
    """

    def __init__(self) -> None:
        super().__init__(store=HoldingStore())
        logger = logging.getLogger("chatkit_django.streaming")
        if not any(isinstance(h, _StreamReports) for h in logger.handlers):
            logger.addHandler(_StreamReports())
            logger.setLevel(logging.DEBUG)

    async def check_streaming_request(self, request: Any, context: ChatKitContext) -> None:
        HANG_UP_NOTICED.clear()  # one stream at a time
        await super().check_streaming_request(request, context)

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        item = new_reply(self, thread, context)
        flood = context.request.headers.get("X-Test-Flood") if context.request else None
        if flood:
            async for event in self.flood(item, *map(int, flood.split("x"))):
                yield event
            return
        if context.request is None or context.request.headers.get("X-Test-Hold") != "respond":
            yield ThreadItemAddedEvent(item=item)
            yield delta(item, "partial ")
        await asyncio.sleep(30)  # a hang-up cancels this
        mark("timeout", "respond")

    async def flood(
        self, item: AssistantMessageItem, count: int, size: int
    ) -> AsyncIterator[ThreadStreamEvent]:
        """``X-Test-Flood: <count>x<size>``: as many progress events as fast as they are taken,
        then the answer "flood done". The file ``progress`` has the bytes yielded so far
        (every MiB), ``finished`` appears at the end. Not asked for the next event for half
        a second, it writes the bytes yielded by then to the file ``held``: the endpoint is
        holding it back."""
        loop = asyncio.get_running_loop()
        FLOOD["produced"] = 0
        for i in range(count):
            FLOOD["produced"] += size
            stalled = loop.call_later(0.5, mark, "held", str(FLOOD["produced"]))
            yield ProgressUpdateEvent(text=str(i % 10) * size)
            stalled.cancel()
            if FLOOD["produced"] % (1024 * 1024) < size:
                mark("progress", str(FLOOD["produced"]))
            await asyncio.sleep(0)  # a model stream's own awaits
        yield done(item, "flood done")
        mark("finished", str(FLOOD["produced"]))

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[Any], context: ChatKitContext
    ) -> None:
        await super().handle_stream_cancelled(thread, pending_items, context)
        mark("finished", thread.id)


class _BackgroundReports(logging.Handler):
    """Marks for ``FinishingServer``'s tests, from what ``chatkit_django.background`` logs:
    ``detached`` (the number of background answers then) and ``ended``."""

    def emit(self, record: logging.LogRecord) -> None:
        from chatkit_django import background

        message = record.getMessage()
        if message.startswith("The client went away; finishing"):
            mark("detached", str(background.running()))
        elif message.startswith("Background answer") and message.endswith("ended"):
            mark("ended", str(background.running()))


class FinishingServer(ScriptedServer):
    """``ScriptedServer`` that reports, as files in ``CHATKIT_TEST_HANGUP_DIR``, when an answer
    goes to the background and when it ends (for ``ON_DISCONNECT = "finish"``).

    One more command: ``gatefail <path>`` streams "partial ", waits for the file ``<path>``,
    then raises.
    """

    async def respond(self, thread, input_user_message, context):
        text = item_preview(input_user_message) if input_user_message else ""
        command, _, arg = text.partition(" ")
        if command != "gatefail":
            async for event in super().respond(thread, input_user_message, context):
                yield event
            return
        async for event in super().respond(
            thread,
            input_user_message.model_copy(
                update={
                    "content": [
                        input_user_message.content[0].model_copy(update={"text": f"gate {arg}"})
                    ]
                }
            ),
            context,
        ):
            if isinstance(event, ThreadItemDoneEvent):
                raise RuntimeError("the responder broke after the gate")  # noqa: TRY004
            yield event

    def __init__(self) -> None:
        super().__init__()
        logger = logging.getLogger("chatkit_django.background")
        if not any(isinstance(h, _BackgroundReports) for h in logger.handlers):
            logger.addHandler(_BackgroundReports())
            logger.setLevel(logging.INFO)
