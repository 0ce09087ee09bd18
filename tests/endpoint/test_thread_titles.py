"""``DjangoChatKitServer.title_thread``: an untitled thread is named after its answer.

The title is saved and sent as ``thread.updated`` at the end of the same stream; a hook that
fails is logged and never breaks the answer; a thread already titled is not asked again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chatkit.types import ThreadMetadata, ThreadStreamEvent, UserMessageItem

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Thread, ThreadItem
from chatkit_django.store import item_preview
from tests.sdk_calls import add_user_message, create_thread, sdk_call
from tests.testapp.server import EchoServer

pytestmark = pytest.mark.django_db

#: What the servers below were asked, and what they answer.
calls: list[tuple[str, str]] = []
script: dict[str, Any] = {}


class TitledServer(EchoServer):
    """Titles with the message's text, or as ``script['title']`` says (an exception raises)."""

    async def title_thread(
        self, thread: ThreadMetadata, item: UserMessageItem, context: ChatKitContext
    ) -> str | None:
        calls.append((thread.id, item_preview(item)))
        title = script.get("title", f"About {item_preview(item)}")
        if isinstance(title, Exception):
            raise title
        return title


class SelfTitlingServer(TitledServer):
    """Names the thread in ``respond()`` itself, the SDK's way."""

    async def respond(
        self, thread: ThreadMetadata, input_user_message: Any, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        async for event in super().respond(thread, input_user_message, context):
            yield event
        thread.title = "Named by respond"


class FailingServer(TitledServer):
    async def respond(
        self, thread: ThreadMetadata, input_user_message: Any, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        raise RuntimeError("the model is down")
        yield  # an async generator


@pytest.fixture(autouse=True)
def server(settings: Any) -> None:
    calls.clear()
    script.clear()
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.endpoint.test_thread_titles.TitledServer",
    }


def use(settings: Any, name: str) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": f"tests.endpoint.test_thread_titles.{name}",
    }


def answers(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["item"]["content"][0]["text"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    ]


def listed_titles(user: Any) -> list[str | None]:
    page = sdk_call(user, {"type": "threads.list", "params": {}})
    return [t.get("title") for t in page["data"]]


def test_a_new_thread_is_named_after_its_first_answer_in_the_same_stream(user_factory):
    user = user_factory()
    events = create_thread(user, "plan the launch", [])
    thread_id = events[0]["thread"]["id"]
    assert answers(events) == ["echo: plan the launch"]
    # The answer first, then the title, in the same stream; the history list shows it.
    assert events[-1]["type"] == "thread.updated"
    assert events[-1]["thread"]["title"] == "About plan the launch"
    assert events[-1]["thread"]["id"] == thread_id
    assert Thread.objects.get().title == "About plan the launch"
    assert listed_titles(user) == ["About plan the launch"]
    assert calls == [(thread_id, "plan the launch")]

    # Titled: not asked again.
    events = add_user_message(user, thread_id, "and the budget", [])
    assert answers(events) == ["echo: and the budget"]
    assert [e for e in events if e["type"] == "thread.updated"] == []
    assert len(calls) == 1


def test_no_title_leaves_the_thread_untitled_and_asks_again_after_the_next_answer(user_factory):
    user = user_factory()
    script["title"] = None
    events = create_thread(user, "hi", [])
    thread_id = events[0]["thread"]["id"]
    assert [e for e in events if e["type"] == "thread.updated"] == []
    assert Thread.objects.get().title == ""

    script["title"] = "   Budget\n  talk  "  # whitespace collapsed
    events = add_user_message(user, thread_id, "the budget", [])
    assert events[-1]["thread"]["title"] == "Budget talk"
    assert Thread.objects.get().title == "Budget talk"
    assert [c[1] for c in calls] == ["hi", "the budget"]


def test_a_long_title_is_cut(user_factory):
    script["title"] = "word " * 100
    events = create_thread(user_factory(), "hi", [])
    title = events[-1]["thread"]["title"]
    assert len(title) <= TitledServer.max_title_length
    assert title == ("word " * 100)[: TitledServer.max_title_length].strip()


def test_a_failing_hook_is_logged_and_never_breaks_the_answer(user_factory, caplog):
    user = user_factory()
    script["title"] = RuntimeError("title model is down")
    with caplog.at_level(logging.ERROR, logger="chatkit_django.server"):
        events = create_thread(user, "hello", [])
    thread_id = events[0]["thread"]["id"]
    assert answers(events) == ["echo: hello"]
    assert [e["type"] for e in events if e["type"] in ("error", "thread.updated")] == []
    assert any(
        r.message == f"Could not name thread {thread_id}" and r.exc_info for r in caplog.records
    )
    # Everything already saved is kept; the thread stays usable and is named next time.
    assert ThreadItem.objects.filter(thread_id=thread_id).count() == 2
    assert Thread.objects.get().title == ""
    script.pop("title")
    events = add_user_message(user, thread_id, "again", [])
    assert answers(events) == ["echo: again"]
    assert events[-1]["thread"]["title"] == "About again"


def test_a_thread_respond_titled_is_not_asked(user_factory, settings):
    use(settings, "SelfTitlingServer")
    events = create_thread(user_factory(), "hello", [])
    assert [e["thread"]["title"] for e in events if e["type"] == "thread.updated"] == [
        "Named by respond"
    ]
    assert calls == []
    assert Thread.objects.get().title == "Named by respond"


def test_no_answer_no_title(user_factory, settings):
    use(settings, "FailingServer")
    events = create_thread(user_factory(), "hello", [])
    assert events[-1]["type"] == "error"
    assert calls == []
    assert Thread.objects.get().title == ""


def test_the_default_hook_titles_nothing(user_factory, settings):
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.EchoServer"}
    events = create_thread(user_factory(), "hello", [])
    assert answers(events) == ["echo: hello"]
    assert [e for e in events if e["type"] == "thread.updated"] == []
    assert Thread.objects.get().title == ""
