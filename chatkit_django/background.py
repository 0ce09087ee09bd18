"""Answers that outlive the connection: ``CHATKIT['ON_DISCONNECT'] = "finish"``.

With ``"finish"``, the endpoint hands each stream an ``AnswerKeeper``. While the client
reads, the keeper watches the SDK's events and saves the assistant message in progress every
``PARTIAL_SAVE_SECONDS`` (``DjangoStore.save_partial_item``), so a reload shows the text so
far. When the client goes away, the keeper takes the stream over: the SDK's generator runs
on in a task of this process, not of the request, and saves every item as usual; the final
message replaces the partial copy (same id). A background answer is cancelled after
``BACKGROUND_MAX_SECONDS`` and when the process shuts down (uvicorn cancels the tasks left
when it stops, see ``shutdown()`` for other servers): the SDK's cancellation handling then
saves the message so far, as for a hang-up in ``"cancel"`` mode.

``running()`` counts the background answers of this process; ``answering(thread_id)`` says
whether a thread has an answer running here (the server refuses new input to it with 409
``answer_in_progress``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from types import FrameType
from typing import Any, Generic, TypeAlias

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from chatkit.server import ChatKitServer
from chatkit.types import (
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)
from django.db import close_old_connections, connections
from pydantic import TypeAdapter

from chatkit_django._internal.compat import apply_item_update
from chatkit_django.conf import chatkit_settings
from chatkit_django.context import TContext

logger = logging.getLogger(__name__)

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: What ``signal.getsignal`` returns (but ``None``) and ``signal.signal`` takes.
SignalHandler: TypeAlias = Callable[[int, FrameType | None], Any] | int
#: How long a stopping process waits for its background answers to save what they have.
SHUTDOWN_TIMEOUT = 10.0

ITEM_EVENT = b'data: {"type":"thread.item.'
THREAD_CREATED = b'data: {"type":"thread.created"'
EVENT_ADAPTER: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)

#: The answers running without a client, by task.
_background: dict[asyncio.Task[Any], AnswerKeeper[Any]] = {}
#: Thread ids with an answer running in ``"finish"`` mode (with or without a client): count.
_threads: dict[str, int] = {}


def running() -> int:
    """How many answers this process is finishing for clients that went away."""
    return len(_background)


def answering(thread_id: str) -> bool:
    """Whether ``thread_id`` has an answer running in this process (``"finish"`` mode)."""
    return thread_id in _threads


def finishing() -> bool:
    """Whether a hang-up lets the answer finish (``CHATKIT['ON_DISCONNECT'] == "finish"``)."""
    return bool(chatkit_settings.ON_DISCONNECT == "finish")


async def shutdown() -> None:
    """Cancel every background answer and wait (up to ``SHUTDOWN_TIMEOUT``) until each has
    saved what it has: the SDK's cancellation handling saves the message so far.

    ``SIGTERM`` and ``SIGINT`` do this by themselves (see ``install_signal_handlers``); call
    it from your own shutdown code when the process is stopped in another way.
    """
    tasks = set(_background)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)


def install_signal_handlers() -> None:
    """Save the background answers before the ASGI server sees ``SIGTERM`` or ``SIGINT``.

    uvicorn and daphne stop on these signals without waiting for tasks that are not
    requests, and uvicorn then re-raises the signal, which ends the process before any
    cleanup of ours could run. So our handler goes in front of theirs: it runs
    ``shutdown()`` first and then hands the signal to the handler it replaced. Installed
    when the first answer goes to the background (the server's own handlers are in place by
    then), from the main thread only, as Python requires.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SHUTDOWN_SIGNALS:
        current = signal.getsignal(sig)
        if isinstance(current, _SaveThenStop):
            continue
        signal.signal(sig, _SaveThenStop(asyncio.get_running_loop(), current))


class _SaveThenStop:
    """A signal handler: ``shutdown()``, then the handler it replaced."""

    def __init__(self, loop: asyncio.AbstractEventLoop, previous: SignalHandler | None) -> None:
        self.loop = loop
        # None: a handler not installed from Python; the default is what it does.
        self.previous: SignalHandler = previous if previous is not None else signal.SIG_DFL

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        if not _background or self.loop.is_closed():
            self.pass_on(sig, frame)
            return
        logger.info("Stopping: saving %d background answer(s) first", len(_background))
        self.loop.call_soon_threadsafe(self.save_then_pass_on, sig)

    def save_then_pass_on(self, sig: int) -> None:
        task = self.loop.create_task(shutdown())
        task.add_done_callback(lambda _: self.pass_on(sig, None))

    def pass_on(self, sig: int, frame: FrameType | None) -> None:
        signal.signal(sig, self.previous)
        if callable(self.previous):
            self.previous(sig, frame)
        elif self.previous == signal.SIG_DFL:
            signal.raise_signal(sig)


class AnswerKeeper(Generic[TContext]):
    """One ``"finish"``-mode stream: saves its message in progress, finishes it if abandoned.

    ``watch()`` wraps the SDK's SSE chunks, ``own()`` runs the task that reads them (in a
    thread-sensitive context of its own, so its database work outlives the request's), and
    ``detach()`` is called when the client has gone.
    """

    def __init__(
        self,
        server: ChatKitServer[TContext],
        context: TContext,
        thread_id: str | None,
        *,
        partial_every: float | None = None,
        max_seconds: float | None = None,
        release_every: float | None = None,
    ) -> None:
        self.server = server
        self.context = context
        self.thread_id: str | None = None
        self.partial_every = partial_every
        self.max_seconds = max_seconds
        self.release_every = release_every
        self.detached = False
        self.unsaved: list[bytes] = []  # item events since the last partial save
        self.pending: dict[str, AssistantMessageItem] = {}  # unfinished assistant messages, by id
        self.changed: set[str] = set()
        self.deadline: asyncio.TimerHandle | None = None
        self.known_thread_id = thread_id

    def claim(self, thread_id: str) -> None:
        self.thread_id = thread_id
        _threads[thread_id] = _threads.get(thread_id, 0) + 1

    def unclaim(self) -> None:
        if self.thread_id is None:
            return
        count = _threads.pop(self.thread_id, 1) - 1
        if count:
            _threads[self.thread_id] = count

    async def watch(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The SDK's chunks, unchanged; item events are kept for the next partial save."""
        try:
            async for chunk in events:
                if chunk.startswith(ITEM_EVENT):
                    if self.partial_every is not None:
                        self.unsaved.append(chunk)
                elif self.thread_id is None and chunk.startswith(THREAD_CREATED):
                    self.claim(json.loads(chunk[6:])["thread"]["id"])
                yield chunk
        except Exception:
            if self.detached:
                logger.exception("A background answer (thread %s) failed", self.thread_id)
            raise

    async def own(self, body: Coroutine[Any, Any, None]) -> None:
        """Run ``body`` (the task reading ``watch()``) with database work of its own."""
        # Claimed here, not when the response is built: a response that is never sent
        # (the client gone first) must not leave the thread refusing input.
        if self.known_thread_id is not None:
            self.claim(self.known_thread_id)
        try:
            async with ThreadSensitiveContext():
                saver = None
                every = self.partial_every or self.release_every
                if every:
                    saver = asyncio.create_task(self.save_partials(every))
                try:
                    await body
                finally:
                    if saver is not None:
                        saver.cancel()
                        await asyncio.wait({saver})
                    # This task's database thread ends with it: close its connections.
                    await sync_to_async(connections.close_all)()
        finally:
            if self.deadline is not None:
                self.deadline.cancel()
            self.unclaim()
            _background.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if self.detached:
                logger.info("Background answer (thread %s) ended", self.thread_id)

    def detach(self, task: asyncio.Task[Any]) -> None:
        """The client went away: ``task`` runs on as a background answer, bounded in time."""
        self.detached = True
        if task.done():
            return
        _background[task] = self
        install_signal_handlers()
        if self.max_seconds is not None:
            self.deadline = asyncio.get_running_loop().call_later(
                self.max_seconds, self.time_out, task
            )
        logger.info("The client went away; finishing the answer (thread %s)", self.thread_id)

    def time_out(self, task: asyncio.Task[Any]) -> None:
        logger.warning(
            "A background answer (thread %s) ran past CHATKIT['BACKGROUND_MAX_SECONDS'] (%s s); "
            "cancelled, the message so far is saved",
            self.thread_id,
            self.max_seconds,
        )
        task.cancel()

    async def save_partials(self, every: float) -> None:
        """Every ``every`` seconds: the partial save, then, as the endpoint does for its own
        thread (``RELEASE_CONNECTIONS_SECONDS``), give back this task's idle connections."""
        while True:
            await asyncio.sleep(every)
            if self.partial_every is not None:
                try:
                    await self.save_partial()
                except Exception:
                    # The answer goes on; its final version is saved as usual.
                    logger.exception("Saving the answer so far (thread %s) failed", self.thread_id)
            if self.release_every:
                await sync_to_async(close_old_connections)()

    async def save_partial(self) -> None:
        """Save each assistant message that changed since the last call, as it is so far."""
        chunks, self.unsaved = self.unsaved, []
        for chunk in chunks:
            event = EVENT_ADAPTER.validate_json(chunk[6:].strip())
            if isinstance(event, ThreadItemAddedEvent):
                if isinstance(event.item, AssistantMessageItem):
                    self.pending[event.item.id] = event.item
                    self.changed.add(event.item.id)
            elif isinstance(event, ThreadItemUpdatedEvent):
                if event.item_id in self.pending:
                    apply_item_update(self.server, self.pending, event)
                    self.changed.add(event.item_id)
            elif isinstance(event, ThreadItemDoneEvent | ThreadItemReplacedEvent):
                self.pending.pop(event.item.id, None)
                self.changed.discard(event.item.id)
            elif isinstance(event, ThreadItemRemovedEvent):
                self.pending.pop(event.item_id, None)
                self.changed.discard(event.item_id)
        save = getattr(self.server.store, "save_partial_item", None)
        while self.changed and save is not None:
            item = self.pending[self.changed.pop()]
            if any(part.text.strip() for part in item.content):
                await save(item.thread_id, item, self.context)


def get_answer_keeper(
    server: ChatKitServer[TContext], context: TContext, thread_id: str | None
) -> AnswerKeeper[TContext] | None:
    """An ``AnswerKeeper`` for a new stream in ``"finish"`` mode, else ``None``."""
    if not finishing():
        return None
    return AnswerKeeper(
        server,
        context,
        thread_id,
        partial_every=chatkit_settings.PARTIAL_SAVE_SECONDS,
        max_seconds=chatkit_settings.BACKGROUND_MAX_SECONDS,
        release_every=chatkit_settings.RELEASE_CONNECTIONS_SECONDS,
    )
