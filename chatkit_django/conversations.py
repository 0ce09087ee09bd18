"""Conversations started by server code: a view, a management command, a task queue worker.

``astart_thread`` gives a user a new thread with a first message, ``aadd_message`` adds a
message to one of their threads; both run the project's ``respond()`` to the end (or not, for
a notice) outside any HTTP request, and return the thread. ``start_thread`` and
``add_message`` are their sync twins. ``asend`` / ``send`` do either and also say whether the
answer failed.

Nothing here re-implements the SDK: the message goes through the server as a
``threads.add_user_message`` request would from ChatKit.js, with the server's checks, the
store, its access rule (``has_access``), the converters and the signals. The context comes
from ``CHATKIT['CONTEXT_FACTORY']``, called with no request (``make_user_context``).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

from asgiref.sync import async_to_sync, sync_to_async
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    InferenceOptions,
    Page,
    Thread,
    ThreadAddUserMessageParams,
    ThreadCreateParams,
    ThreadItem,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageItem,
    UserMessageTextContent,
)
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.functional import LazyObject

from chatkit_django.context import make_user_context
from chatkit_django.exceptions import InactiveUser, UnknownThread, UnknownUser
from chatkit_django.instances import get_server
from chatkit_django.server import DjangoChatKitServer

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from chatkit_django.context import UserLike

#: Whom a message is from: a user (``request.user`` too, lazy or not), or a user's primary key.
UserOrPk: TypeAlias = "UserLike | LazyObject[Any] | int | str | UUID"

logger = logging.getLogger(__name__)

__all__ = [
    "Message",
    "Sent",
    "aadd_message",
    "add_message",
    "asend",
    "astart_thread",
    "send",
    "start_thread",
]

#: What a message may be: its text, or the SDK's full input (attachments, tags, options).
Message = str | UserMessageInput


@dataclass(frozen=True)
class Sent:
    """What ``asend`` did."""

    thread: Thread
    """The thread as stored now; ``items`` holds the items this call added, oldest first."""
    failed: bool
    """``respond()`` raised (or the answer could not be stored): the error is logged, the
    message is saved and the thread takes new messages."""


async def astart_thread(
    user: UserOrPk,
    message: Message,
    *,
    metadata: dict[str, Any] | None = None,
    title: str | None = None,
    respond: bool = True,
    scope: str | None = None,
) -> Thread:
    """Start a thread for ``user`` with a first message, and answer it.

    Args:
        user: a user, or a user's primary key (handy for task arguments).
        message: the text, or a ``chatkit.types.UserMessageInput``.
        metadata: the thread's ``metadata``, which ``respond()`` sees from the start.
        title: the thread's title (``None``: the server may name it).
        respond: ``False`` stores the message without running ``respond()`` (a notice).
        scope: the workspace, agent or tenant to start it in (``ChatKitContext.scope``);
            ``None``: unscoped (see docs/guides/workspaces.md).

    Returns:
        The thread; its ``items`` are the ones this call added.

    Raises:
        UnknownUser, InactiveUser: nothing is saved. The server's own refusals
            (``InvalidAttachments``; ``NotFoundError`` for an attachment) too, before any save.
    """
    sent = await asend(user, message, metadata=metadata, title=title, respond=respond, scope=scope)
    return sent.thread


async def aadd_message(
    user: UserOrPk,
    thread_id: str,
    message: Message,
    *,
    respond: bool = True,
    scope: str | None = None,
) -> Thread:
    """Add a message from ``user`` to one of their threads, and answer it.

    The thread must be one ``user`` may change (``has_access``), and active; with a
    ``scope``, in that scope.

    Raises:
        UnknownUser, InactiveUser, UnknownThread (missing, or not theirs to change),
            ``ThreadNotActive`` (locked or closed): nothing is saved.
    """
    sent = await asend(user, message, thread_id=thread_id, respond=respond, scope=scope)
    return sent.thread


def start_thread(
    user: UserOrPk,
    message: Message,
    *,
    metadata: dict[str, Any] | None = None,
    title: str | None = None,
    respond: bool = True,
    scope: str | None = None,
) -> Thread:
    """``astart_thread`` for sync code: a view, a command, a worker, an executor thread."""
    return async_to_sync(astart_thread)(
        user, message, metadata=metadata, title=title, respond=respond, scope=scope
    )


def add_message(
    user: UserOrPk,
    thread_id: str,
    message: Message,
    *,
    respond: bool = True,
    scope: str | None = None,
) -> Thread:
    """``aadd_message`` for sync code."""
    return async_to_sync(aadd_message)(user, thread_id, message, respond=respond, scope=scope)


def send(
    user: UserOrPk,
    message: Message,
    *,
    thread_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    title: str | None = None,
    respond: bool = True,
    scope: str | None = None,
) -> Sent:
    """``asend`` for sync code."""
    return async_to_sync(asend)(
        user,
        message,
        thread_id=thread_id,
        metadata=metadata,
        title=title,
        respond=respond,
        scope=scope,
    )


async def asend(
    user: UserOrPk,
    message: Message,
    *,
    thread_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    title: str | None = None,
    respond: bool = True,
    scope: str | None = None,
) -> Sent:
    """``aadd_message`` to ``thread_id``, or ``astart_thread`` without one; says if it failed.

    ``metadata`` and ``title`` are for a new thread only.
    """
    if thread_id is not None and (metadata is not None or title is not None):
        raise ValueError("metadata and title are for a new thread; leave thread_id out.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}.")
    user_input = _user_message_input(message)
    user = await _active_user(user)
    context = await make_user_context(user, scope)
    server = get_server()
    store = server.store
    new_thread: ThreadMetadata | None = None
    if thread_id is None:
        # The checks ChatKit.js's threads.create gets, before anything is saved.
        check = getattr(server, "check_streaming_request", None)
        if check is not None:
            await check(ThreadsCreateReq(params=ThreadCreateParams(input=user_input)), context)
        # The thread is saved first, with its metadata and title, and the message goes in as
        # threads.add_user_message: respond() then gets the thread as stored. (Through
        # threads.create it would get one without them, and save that over them if it
        # changed the thread.)
        new_thread = ThreadMetadata(
            id=store.generate_thread_id(context),
            created_at=datetime.now(),
            title=title,
            metadata=metadata or {},
        )
        await store.save_thread(new_thread, context)
        thread_id = new_thread.id
    elif not await _may_change(server, thread_id, context):
        raise UnknownThread(f"Thread {thread_id} not found for user {user.get_username()!r}.")

    request = ThreadsAddUserMessageReq(
        params=ThreadAddUserMessageParams(thread_id=thread_id, input=user_input)
    )
    run = _Run(server if respond else _without_respond(server))
    try:
        await run.through(request, context)
    except BaseException:
        if new_thread is not None and run.message_id is None:
            # Nothing of the thread's content was stored: leave no empty thread behind.
            await _forget_thread(server, new_thread.id, context)
        raise
    if run.failed:
        logger.warning(
            "respond() failed in thread %s; the message %s is saved and the thread takes new "
            "messages.",
            thread_id,
            run.message_id,
        )
    thread = await store.load_thread(thread_id, context)
    items = await _new_items(server, thread_id, run, context)
    return Sent(
        thread=Thread(**thread.model_dump(), items=Page(data=items, has_more=False)),
        failed=run.failed,
    )


def _user_message_input(message: Message) -> UserMessageInput:
    """``message`` as the SDK's input: text becomes one text part."""
    if isinstance(message, UserMessageInput):
        return message
    if isinstance(message, str):
        if not message.strip():
            raise ValueError("The message is empty.")
        return UserMessageInput(
            content=[UserMessageTextContent(text=message)],
            attachments=[],
            inference_options=InferenceOptions(),
        )
    raise TypeError(f"message must be a str or a UserMessageInput, not {type(message).__name__}.")


async def _active_user(user: UserOrPk) -> AbstractBaseUser:
    """The user (reloaded, so a deactivation or deletion since counts), or a refusal."""
    User = get_user_model()
    pk: Any  # the primary key type of the project's user model
    if isinstance(user, LazyObject):
        # request.user in a view: loading it queries, which must not happen in this loop.
        pk = await sync_to_async(lambda: user.pk)()
    else:
        pk = user.pk if isinstance(user, models.Model) else getattr(user, "pk", user)
    found = None
    if pk is not None:
        try:
            found = await User._default_manager.filter(pk=pk).afirst()
        except (ValueError, TypeError, ValidationError):
            found = None
    if found is None:
        raise UnknownUser(f"No user with primary key {pk!r}.")
    if not getattr(found, "is_active", True):
        raise InactiveUser(f"User {found.get_username()!r} is inactive.")
    return found


async def _may_change(server: ChatKitServer[Any], thread_id: str, context: Any) -> bool:
    """Whether the acting user may add to ``thread_id``: the server's "change" check."""
    try:
        if isinstance(server, DjangoChatKitServer):
            await server.load_thread_for(thread_id, "change", context)
        else:
            await server.store.load_thread(thread_id, context)
    except NotFoundError:
        return False
    return True


async def _forget_thread(server: ChatKitServer[Any], thread_id: str, context: Any) -> None:
    """Delete a new thread whose first message was not stored (logged, never raised)."""
    try:
        await server.store.delete_thread(thread_id, context)
    except Exception:
        logger.exception("Could not delete the empty thread %s", thread_id)


async def _no_answer(
    thread: ThreadMetadata, item: UserMessageItem | None, context: Any
) -> AsyncIterator[ThreadStreamEvent]:
    return
    yield  # an async generator that yields nothing


def _without_respond(server: ChatKitServer[Any]) -> ChatKitServer[Any]:
    """A shallow copy of ``server`` whose ``respond()`` yields nothing.

    The SDK then stores the message exactly as usual and ends the stream. A copy, because
    the server is shared by every request of the process.
    """
    quiet = copy.copy(server)
    quiet.respond = _no_answer  # type: ignore[method-assign, assignment]  # on the copy only
    return quiet


class _Run:
    """One streaming request driven to its end, as the endpoint would stream it to a client."""

    def __init__(self, server: ChatKitServer[Any]) -> None:
        self.server = server
        self.message_id: str | None = None  # the user message, once stored
        self.item_ids: list[str] = []  # items the client would be shown, in order
        self.failed = False

    async def through(self, request: ThreadsAddUserMessageReq, context: Any) -> None:
        server = self.server
        if (
            isinstance(server, DjangoChatKitServer)
            and type(server).process is DjangoChatKitServer.process
        ):
            result = await server.process_request(request, context)
        else:
            body = request.model_dump_json(by_alias=True, exclude_none=True)
            result = await server.process(body, context)
        if not isinstance(result, StreamingResult):  # pragma: no cover - the SDK's contract
            raise TypeError(f"{type(server).__name__} did not stream an answer.")
        events = result.json_events
        try:
            async for chunk in events:
                self.read(json.loads(chunk.removeprefix(b"data: ")))
        except Exception:
            if self.message_id is None:
                raise
            # After the message is stored: the answer failed, as respond() raising does.
            logger.exception("The answer in thread %s failed", request.params.thread_id)
            self.failed = True

    def read(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in {"thread.item.done", "thread.item.replaced"}:
            item = event["item"]
            if self.message_id is None and item.get("type") == "user_message":
                self.message_id = item["id"]
            if item["id"] not in self.item_ids:
                self.item_ids.append(item["id"])
        elif kind == "thread.item.removed":
            if event["item_id"] in self.item_ids:
                self.item_ids.remove(event["item_id"])
        elif kind == "error":
            self.failed = True


async def _new_items(
    server: ChatKitServer[Any], thread_id: str, run: _Run, context: Any
) -> list[ThreadItem]:
    """The items ``run`` added, as stored, oldest first: newest pages until its message."""
    wanted = set(run.item_ids)
    found: list[ThreadItem] = []
    after = None
    while wanted and run.message_id is not None:
        page = await server.store.load_thread_items(thread_id, after, 20, "desc", context)
        for item in page.data:
            if item.id in wanted:
                found.append(item)
            if item.id == run.message_id:
                return found[::-1]
        if not page.has_more:
            break
        after = page.after
    return found[::-1]
