"""Conversations started by server code (issue #14, item 1): ``chatkit_django.conversations``.

What the user then sees is read through the endpoint, as ChatKit.js reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from chatkit.store import NotFoundError
from chatkit.types import (
    InferenceOptions,
    ItemsListParams,
    ItemsListReq,
    LockedStatus,
    ThreadListParams,
    ThreadsListReq,
    UserMessageInput,
    UserMessageTagContent,
    UserMessageTextContent,
)
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client
from django.urls import include, path

from chatkit_django.context import ChatKitContext
from chatkit_django.conversations import (
    aadd_message,
    add_message,
    asend,
    astart_thread,
    start_thread,
)
from chatkit_django.exceptions import (
    ConversationRefused,
    InactiveUser,
    ThreadNotActive,
    UnknownThread,
    UnknownUser,
)
from chatkit_django.instances import get_server
from chatkit_django.models import Thread, ThreadItem
from tests.chatkit_client import body
from tests.factories import make_context
from tests.testapp.server import RecordingServer

pytestmark = pytest.mark.django_db(transaction=True)


def answer_texts(items: Any) -> list[tuple[str, str]]:
    """``(type, text)`` of each message, as ChatKit.js would show it."""
    shown = []
    for item in items:
        if item["type"] in {"user_message", "assistant_message"}:
            shown.append((item["type"], " ".join(part["text"] for part in item["content"])))
    return shown


async def endpoint(client: AsyncClient, request: Any) -> tuple[int, Any]:
    response = await client.post("/chatkit/", body(request), content_type="application/json")
    return response.status_code, json.loads(response.content)


async def logged_in(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def listed(user: Any) -> list[dict[str, Any]]:
    status, page = await endpoint(await logged_in(user), ThreadsListReq(params=ThreadListParams()))
    assert status == 200, page
    return page["data"]


async def shown(user: Any, thread_id: str) -> tuple[int, Any]:
    client = await logged_in(user)
    status, page = await endpoint(
        client, ItemsListReq(params=ItemsListParams(thread_id=thread_id, order="asc"))
    )
    return status, answer_texts(page["data"]) if status == 200 else page


async def counts() -> tuple[int, int]:
    return await Thread.objects.acount(), await ThreadItem.objects.acount()


# -- starting and continuing -------------------------------------------------------------------


async def test_a_thread_started_from_code_is_listed_for_its_user_only_with_the_answer(
    auser_factory: Any,
) -> None:
    alice, bob = await auser_factory(), await auser_factory()

    thread = await astart_thread(
        alice, "Your ticket #7 was answered", title="Ticket #7", metadata={"ticket": 7}
    )

    assert thread.title == "Ticket #7"
    assert thread.metadata == {"ticket": 7}
    assert answer_texts(i.model_dump() for i in thread.items.data) == [
        ("user_message", "Your ticket #7 was answered"),
        ("assistant_message", "echo: Your ticket #7 was answered"),
    ]
    (row,) = await listed(alice)
    assert (row["id"], row["title"]) == (thread.id, "Ticket #7")
    assert await shown(alice, thread.id) == (
        200,
        [
            ("user_message", "Your ticket #7 was answered"),
            ("assistant_message", "echo: Your ticket #7 was answered"),
        ],
    )
    assert await listed(bob) == []
    assert await shown(bob, thread.id) == (200, [])  # items.list shows nothing of it
    owner_id = await Thread.objects.filter(pk=thread.id).values_list("owner", flat=True).aget()
    assert owner_id == alice.pk


async def test_a_message_added_from_code_is_answered_in_the_thread(auser_factory: Any) -> None:
    alice = await auser_factory()
    thread = await astart_thread(alice.pk, "first")  # a primary key works too

    again = await aadd_message(alice, thread.id, "second")

    assert again.id == thread.id
    assert answer_texts(i.model_dump() for i in again.items.data) == [
        ("user_message", "second"),
        ("assistant_message", "echo: second"),
    ]
    assert (await shown(alice, thread.id))[1] == [
        ("user_message", "first"),
        ("assistant_message", "echo: first"),
        ("user_message", "second"),
        ("assistant_message", "echo: second"),
    ]


async def test_without_respond_the_message_is_stored_and_nothing_answers(
    auser_factory: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.RecordingServer"}
    RecordingServer.CALLS.clear()
    alice = await auser_factory()

    thread = await astart_thread(alice, "Maintenance tonight at 22:00", respond=False)
    await aadd_message(alice, thread.id, "It is over.", respond=False)

    assert RecordingServer.CALLS == []
    assert (await shown(alice, thread.id))[1] == [
        ("user_message", "Maintenance tonight at 22:00"),
        ("user_message", "It is over."),
    ]
    # The shared server still answers requests as before.
    assert "respond" not in vars(get_server())
    await aadd_message(alice, thread.id, "hello")
    assert [("respond", thread.id)] == RecordingServer.CALLS


async def test_a_full_user_message_input_is_accepted(auser_factory: Any) -> None:
    alice = await auser_factory()
    message = UserMessageInput(
        content=[
            UserMessageTextContent(text="About"),
            UserMessageTagContent(id="article:1", text="Launch", data={}, interactive=False),
        ],
        attachments=[],
        quoted_text="the plan",
        inference_options=InferenceOptions(model="gpt-4.1-mini"),
    )

    thread = await astart_thread(alice, message)

    stored = thread.items.data[0]
    assert stored.quoted_text == "the plan"
    assert stored.inference_options.model == "gpt-4.1-mini"
    assert thread.items.data[1].content[0].text == "echo: About @Launch"


# -- bad input: a clear exception, nothing saved -----------------------------------------------


async def test_a_missing_or_inactive_user_is_refused_before_anything_is_saved(
    auser_factory: Any,
) -> None:
    alice = await auser_factory()
    inactive = await auser_factory(is_active=False)
    gone = await auser_factory()
    await gone.adelete()
    thread = await astart_thread(alice, "first")
    before = await counts()

    with pytest.raises(InactiveUser, match=f"User '{inactive.username}' is inactive"):
        await astart_thread(inactive, "hello")
    with pytest.raises(UnknownUser, match="No user with primary key None"):
        await astart_thread(gone, "hello")  # deleted: its pk is None now
    with pytest.raises(UnknownUser, match="No user with primary key 987654"):
        await astart_thread(987654, "hello")
    with pytest.raises(UnknownUser, match="No user with primary key 'alice'"):
        await astart_thread("alice", "hello")  # not a primary key
    with pytest.raises(InactiveUser):
        await aadd_message(inactive, thread.id, "hello")

    # A user deactivated after the object was loaded counts as inactive.
    alice.is_active = False
    await alice.asave()
    alice.is_active = True
    with pytest.raises(InactiveUser):
        await aadd_message(alice, thread.id, "hello")
    assert await counts() == before
    assert issubclass(InactiveUser, ConversationRefused)


async def test_an_unknown_thread_or_another_users_thread_is_refused(auser_factory: Any) -> None:
    alice, bob = await auser_factory(), await auser_factory()
    alices = await astart_thread(alice, "mine")
    before = await counts()

    for thread_id in (alices.id, "thr_missing", ""):
        with pytest.raises(UnknownThread) as raised:
            await aadd_message(bob, thread_id, "hello")
        assert str(raised.value) == f"Thread {thread_id} not found for user '{bob.username}'."
        assert raised.value.status_code == 404
    assert await counts() == before


async def test_a_locked_thread_takes_no_message(auser_factory: Any) -> None:
    alice = await auser_factory()
    thread = await astart_thread(alice, "first")
    store = get_server().store
    stored = await store.load_thread(thread.id, make_context(alice))
    stored.status = LockedStatus(reason="Waiting for an agent")
    await store.save_thread(stored, make_context(alice))
    before = await counts()

    with pytest.raises(ThreadNotActive, match="locked"):
        await aadd_message(alice, thread.id, "hello")
    assert await counts() == before


async def test_an_attachment_that_is_not_there_is_refused_before_the_thread_is_saved(
    auser_factory: Any,
) -> None:
    alice = await auser_factory()
    message = UserMessageInput(
        content=[UserMessageTextContent(text="see attached")],
        attachments=["atc_missing"],
        inference_options=InferenceOptions(),
    )

    with pytest.raises(NotFoundError, match="atc_missing"):
        await astart_thread(alice, message)
    assert await counts() == (0, 0)


async def test_bad_arguments_are_refused(auser_factory: Any) -> None:
    alice = await auser_factory()
    with pytest.raises(ValueError, match="empty"):
        await astart_thread(alice, "  ")
    with pytest.raises(TypeError, match="str or a UserMessageInput"):
        await astart_thread(alice, {"text": "hi"})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        await astart_thread(alice, "hi", metadata=["x"])
    with pytest.raises(ValueError, match="for a new thread"):
        await asend(alice, "hi", thread_id="thr_1", title="x")
    assert await counts() == (0, 0)


async def test_a_failure_storing_the_first_message_leaves_no_thread(
    auser_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await auser_factory()
    store = get_server().store

    async def broken(thread_id: str, item: Any, context: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(store, "add_thread_item", broken)
    with pytest.raises(RuntimeError, match="database went away"):
        await astart_thread(alice, "hello")
    assert await counts() == (0, 0)


# -- respond() raising -------------------------------------------------------------------------


async def test_respond_raising_is_logged_and_leaves_the_message_and_a_usable_thread(
    auser_factory: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.ScriptedServer"}
    alice = await auser_factory()

    with caplog.at_level(logging.WARNING):
        sent = await asend(alice, "fail")

    assert sent.failed
    assert "the responder broke" in caplog.text  # the SDK logs the traceback
    (warning,) = [r for r in caplog.records if r.name == "chatkit_django.conversations"]
    assert warning.getMessage().startswith(f"respond() failed in thread {sent.thread.id}")
    assert answer_texts(i.model_dump() for i in sent.thread.items.data) == [
        ("user_message", "fail")
    ]
    thread = await astart_thread(alice, "fail")  # the same through the plain API: no exception
    assert [i.type for i in thread.items.data] == ["user_message"]

    again = await asend(alice, "hello", thread_id=sent.thread.id)
    assert not again.failed
    assert (await shown(alice, sent.thread.id))[1] == [
        ("user_message", "fail"),
        ("user_message", "hello"),
        ("assistant_message", "echo: hello"),
    ]
    assert [row["id"] for row in await listed(alice)] == [thread.id, sent.thread.id]


# -- the context -------------------------------------------------------------------------------


# --8<-- [start:context-factory]
def context_for(request: HttpRequest | None, user: Any = None) -> ChatKitContext:
    """A ``CONTEXT_FACTORY`` that also builds contexts outside a request."""
    if request is None:  # server code: no request, the user is given
        return ChatKitContext(user=user, extra={"echo_prefix": "from code"})
    return ChatKitContext(user=request.user, request=request, extra={"echo_prefix": "from web"})


# --8<-- [end:context-factory]


async def async_context_for(request: HttpRequest | None, *, user: Any = None) -> ChatKitContext:
    return ChatKitContext(user=user or request.user, request=request, extra={"echo_prefix": "a"})


def request_only(request: HttpRequest) -> ChatKitContext:
    return ChatKitContext(user=request.user, request=request)


@pytest.mark.parametrize(
    ("factory", "prefix"), [("context_for", "from code"), ("async_context_for", "a")]
)
async def test_the_context_factory_builds_the_context_with_no_request(
    auser_factory: Any, settings: Any, factory: str, prefix: str
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "CONTEXT_FACTORY": f"{__name__}.{factory}"}
    alice = await auser_factory()
    thread = await astart_thread(alice, "hello")
    assert thread.items.data[1].content[0].text == f"{prefix}: hello"


async def test_a_context_factory_without_user_is_named(auser_factory: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "CONTEXT_FACTORY": f"{__name__}.request_only"}
    alice = await auser_factory()
    with pytest.raises(ImproperlyConfigured) as raised:
        await astart_thread(alice, "hello")
    assert str(raised.value).startswith(
        f"CHATKIT['CONTEXT_FACTORY'] {__name__}.request_only takes no 'user' argument"
    )
    assert await counts() == (0, 0)


# -- the sync twins ----------------------------------------------------------------------------


def test_the_sync_twins_work_outside_any_event_loop(user_factory: Any) -> None:
    alice = user_factory()
    thread = start_thread(alice, "hello", title="From a script")
    again = add_message(alice.pk, thread.id, "more")
    assert [i.type for i in again.items.data] == ["user_message", "assistant_message"]
    assert Thread.objects.get(pk=thread.id).title == "From a script"
    assert ThreadItem.objects.filter(thread_id=thread.id).count() == 4
    with pytest.raises(UnknownThread):
        add_message(user_factory(), thread.id, "not yours")


async def test_the_sync_twins_work_in_a_running_loops_thread_pool(auser_factory: Any) -> None:
    alice = await auser_factory()
    loop = asyncio.get_running_loop()

    # A thread of a pool (what a worker does), and asgiref's thread for sync code.
    with ThreadPoolExecutor(max_workers=1) as pool:
        thread = await loop.run_in_executor(pool, partial(start_thread, alice.pk, "from a pool"))
        await loop.run_in_executor(pool, partial(add_message, alice, thread.id, "and another"))
        await loop.run_in_executor(pool, connections.close_all)
    await sync_to_async(add_message)(alice, thread.id, "from asgiref")

    assert [
        text for kind, text in (await shown(alice, thread.id))[1] if kind == "user_message"
    ] == [
        "from a pool",
        "and another",
        "from asgiref",
    ]


async def test_a_sync_twin_in_the_loops_own_thread_says_to_await_instead(
    auser_factory: Any,
) -> None:
    alice = await auser_factory()
    with pytest.raises(RuntimeError, match="just await the async function directly"):
        start_thread(alice, "hello")
    assert await counts() == (0, 0)


def sync_view(request: HttpRequest) -> JsonResponse:
    thread = start_thread(request.user, request.POST["text"])
    return JsonResponse({"thread": thread.id, "answer": thread.items.data[-1].content[0].text})


async def async_view(request: HttpRequest) -> JsonResponse:
    thread = await astart_thread(await request.auser(), request.POST["text"])
    return JsonResponse({"thread": thread.id, "answer": thread.items.data[-1].content[0].text})


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("chatkit/", include("chatkit_django.urls")),
]


@pytest.mark.urls(__name__)
def test_views_start_threads_sync_and_async(user_factory: Any) -> None:
    alice = user_factory()
    client = Client()
    client.force_login(alice)
    assert client.post("/sync/", {"text": "hi"}).json()["answer"] == "echo: hi"

    async def from_async_view() -> dict[str, Any]:
        client = AsyncClient()
        await client.aforce_login(alice)
        try:
            return (await client.post("/async/", {"text": "yo"})).json()
        finally:
            # The view's queries ran in asgiref's thread: its connection is closed there.
            await sync_to_async(connections.close_all)()

    assert asyncio.run(from_async_view())["answer"] == "echo: yo"
    assert Thread.objects.filter(owner=alice).count() == 2


# -- queries -----------------------------------------------------------------------------------


def test_a_message_costs_the_same_queries_in_a_long_thread(
    user_factory: Any, django_assert_num_queries: Any
) -> None:
    alice = user_factory()
    short = start_thread(alice, "one")
    long = start_thread(alice, "one")
    for n in range(30):
        add_message(alice, long.id, f"message {n}", respond=False)

    with django_assert_num_queries(QUERIES_PER_MESSAGE):
        add_message(alice, short.id, "hello")
    with django_assert_num_queries(QUERIES_PER_MESSAGE):
        add_message(alice, long.id, "hello")


#: The user; the thread three times (the change check, the server's preflight, the SDK's load);
#: touch, then insert in a transaction (BEGIN, COMMIT), for each of the two items; the thread as
#: stored now; the new items' page (access check, page).
QUERIES_PER_MESSAGE = 15
