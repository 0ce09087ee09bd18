"""``add_thread_item`` never replaces a stored item; only ``save_item`` does.

Through the SDK's own flows: a responder that yields a structured question again after the
user answered it, and a hang-up while the SDK adds an item it just finished (its
cancellation handling then adds the partial copy it kept).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    StructuredInputFreeform,
    StructuredInputItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)

from chatkit_django.context import ChatKitContext
from chatkit_django.models import ThreadItem
from chatkit_django.server import DjangoChatKitServer, get_server
from tests.sdk_calls import done_items, process, user_input

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION_ID = "si_again"


class AskAgainServer(DjangoChatKitServer):
    """Yields the same pending question (same id) on every turn, as a careless agent may."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(
            item=StructuredInputItem(
                id=QUESTION_ID,
                thread_id=thread.id,
                created_at=datetime.now(),
                inputs=[StructuredInputFreeform(id="name", question="Your name?")],
            )
        )


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.store.test_add_never_replaces.AskAgainServer",
    }


async def test_an_answer_survives_the_question_being_yielded_again(
    auser_factory: Any, caplog: Any
) -> None:
    user = await auser_factory()
    events = await process({"type": "threads.create", "params": {"input": user_input("hi")}}, user)
    (question,) = done_items(events, "structured_input")
    thread_id = events[0]["thread"]["id"]

    with caplog.at_level(logging.WARNING, logger="chatkit_django.store"):
        events = await process(
            {
                "type": "threads.add_structured_input",
                "params": {
                    "thread_id": thread_id,
                    "item_id": question["id"],
                    "input": {"status": "answered", "answers": {"name": {"values": ["Ada"]}}},
                },
            },
            user,
        )

    assert not [e for e in events if e["type"] == "error"]
    stored = await ThreadItem.objects.aget(pk=QUESTION_ID)
    assert stored.data["status"] == "answered"
    assert stored.data["inputs"][0]["answer"] == {"values": ["Ada"], "skipped": False}
    assert f"Item {QUESTION_ID} of thread {thread_id} was added again" in caplog.text


async def test_cancellation_after_the_done_add_keeps_the_finished_item(
    auser_factory: Any, caplog: Any
) -> None:
    """The SDK adds a finished item, then pops it from its pending items. A hang-up while
    that add is awaited lands before the pop: ``handle_stream_cancelled`` adds the partial
    copy it kept, and the finished item must stay."""
    user = await auser_factory()
    context = ChatKitContext(user=user)
    server = get_server()
    thread = ThreadMetadata(id="thr_cancel", created_at=datetime.now())
    await server.store.save_thread(thread, context)

    def message(text: str) -> AssistantMessageItem:
        return AssistantMessageItem(
            id="msg_answer",
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[AssistantMessageContent(text=text)],
        )

    await server.store.add_thread_item(thread.id, message("The whole answer."), context)
    await server.handle_stream_cancelled(thread, [message("The who")], context)

    stored = await ThreadItem.objects.aget(pk="msg_answer")
    assert stored.data["content"][0]["text"] == "The whole answer."
    types = [t async for t in ThreadItem.objects.order_by("seq").values_list("type", flat=True)]
    assert types == ["assistant_message", "sdk_hidden_context"]


async def test_adding_the_same_content_again_is_quiet(auser_factory: Any, caplog: Any) -> None:
    user = await auser_factory()
    context = ChatKitContext(user=user)
    store = get_server().store
    thread = ThreadMetadata(id="thr_quiet", created_at=datetime.now())
    await store.save_thread(thread, context)
    item = AssistantMessageItem(
        id="msg_same",
        thread_id=thread.id,
        created_at=datetime.now(),
        content=[AssistantMessageContent(text="same")],
    )
    with caplog.at_level(logging.WARNING, logger="chatkit_django.store"):
        await store.add_thread_item(thread.id, item, context)
        await store.add_thread_item(thread.id, item, context)
    assert caplog.text == ""
    assert await ThreadItem.objects.filter(pk="msg_same").acount() == 1
