"""Threads scoped to a workspace: one user, two scopes, two separate histories.

The scope comes from the context (``DjangoStore.get_scope``, ``ChatKitContext.scope`` by
default); here from the example project's context factory, which reads the agent the widget
sends in ``X-ChatKit-Scope``. Every endpoint request, the upload and content views and the
converters are walked from the other scope: each answers as for a missing thread or file,
and changes nothing. The same requests from the thread's own scope, and from an unscoped
context, succeed.
"""

from __future__ import annotations

import json
from datetime import datetime
from io import StringIO
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from chatkit.store import NotFoundError
from chatkit.types import (
    ClientToolCallItem,
    FileAttachment,
    ImageAttachment,
    StructuredInputFreeform,
    StructuredInputItem,
)
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from chatkit_django.agents import DjangoThreadItemConverter
from chatkit_django.context import SCOPE_HEADER, ChatKitContext
from chatkit_django.conversations import aadd_message, astart_thread
from chatkit_django.exceptions import InvalidScope, UnknownThread
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.store import DjangoStore
from example_project.demo.server import DemoServer
from tests.chatkit_client import parse_sse, read_stream
from tests.factories import PNG, make_thread, make_user_message
from tests.sdk_items import widget
from tests.testapp import workspaces

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "/chatkit/"
EXAMPLE_CONTEXT = "example_project.demo.context.chatkit_context"
RAW_CONTEXT = "tests.testapp.scopes.query_scope_context"


@pytest.fixture(autouse=True)
def _storage(settings: Any, tmp_path: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "BASE_URL": "http://testserver",
        "CONTEXT_FACTORY": EXAMPLE_CONTEXT,
    }
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


def scope_headers(scope: str | None) -> dict[str, str]:
    return {} if scope is None else {SCOPE_HEADER: scope}


async def post(
    client: Any, payload: dict[str, Any], scope: str | None, path: str = ENDPOINT
) -> tuple[int, Any]:
    """(status, JSON answer or list of SSE events), in ``scope`` (None: no header)."""
    response = await client.post(
        path, json.dumps(payload), content_type="application/json", headers=scope_headers(scope)
    )
    if response.get("Content-Type") == "text/event-stream":
        return response.status_code, parse_sse(await read_stream(response))
    return response.status_code, json.loads(response.content)


async def upload(client: Any, scope: str | None) -> Any:
    return await client.post(
        reverse("chatkit:upload"),
        {"file": SimpleUploadedFile("cat.png", PNG, content_type="image/png")},
        headers=scope_headers(scope),
    )


def user_input(text: str, attachments: list[str] = ()) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": list(attachments),
        "inference_options": {},
    }


async def seed(client: Any, owner: Any, scope: str, *, more_items: bool = True) -> dict[str, Any]:
    """In ``scope``: a thread with an image in its first message, a widget, a pending
    structured input and a pending client tool call (last); an image in no thread yet and
    a pending two-phase upload. Without ``more_items``, the first message only."""
    image = (await upload(client, scope)).json()["id"]
    loose = (await upload(client, scope)).json()["id"]
    status, events = await post(
        client, {"type": "threads.create", "params": {"input": user_input("hi", [image])}}, scope
    )
    assert status == 200, events
    thread_id, user_item = events[0]["thread"]["id"], events[1]["item"]["id"]
    if more_items:
        store, context = DjangoStore(), ChatKitContext(user=owner)  # unscoped: sees every scope
        await store.add_thread_item(thread_id, widget(thread_id), context)
        await store.add_thread_item(
            thread_id,
            StructuredInputItem(
                id=f"si_{scope}",
                thread_id=thread_id,
                created_at=datetime.now(),
                inputs=[StructuredInputFreeform(id="colour", question="Which colour?")],
            ),
            context,
        )
        await store.add_thread_item(
            thread_id,
            ClientToolCallItem(
                id=f"tc_{scope}",
                thread_id=thread_id,
                created_at=datetime.now(),
                call_id="call_1",
                name="get_location",
                arguments={},
            ),
            context,
        )
    status, pending = await post(
        client,
        {
            "type": "attachments.create",
            "params": {"name": "later.png", "size": len(PNG), "mime_type": "image/png"},
        },
        scope,
    )
    assert status == 200, pending
    return {
        "scope": scope,
        "thread": thread_id,
        "user_item": user_item,
        "image": image,
        "loose": loose,
        "pending": pending["id"],
    }


async def snapshot() -> tuple[Any, ...]:
    """What a refused request must leave exactly as it was."""
    return (
        sorted([(t.pk, t.title, t.scope) async for t in Thread.objects.all()]),
        sorted([(i.pk, json.dumps(i.data)) async for i in ThreadItem.objects.all()]),
        sorted([(a.pk, a.scope, a.thread_id) async for a in Attachment.objects.all()]),
        await Feedback.objects.acount(),
    )


ACTION = {"type": "note", "payload": {}}

# name -> payload builder
REQUESTS: dict[str, Any] = {
    "threads.get_by_id": lambda i: {"thread_id": i["thread"]},
    "items.list": lambda i: {"thread_id": i["thread"]},
    "threads.update": lambda i: {"thread_id": i["thread"], "title": "renamed"},
    "items.feedback": lambda i: {
        "thread_id": i["thread"],
        "item_ids": [i["user_item"]],
        "kind": "positive",
    },
    "threads.sync_custom_action": lambda i: {
        "thread_id": i["thread"],
        "item_id": "wdg_1",
        "action": ACTION,
    },
    "attachments.delete": lambda i: {"attachment_id": i["image"]},
    "threads.delete": lambda i: {"thread_id": i["thread"]},
    "threads.create": lambda i: {"input": user_input("mine", [i["loose"]])},
    "threads.add_user_message": lambda i: {
        "thread_id": i["thread"],
        "input": user_input("more", [i["loose"]]),
    },
    "threads.retry_after_item": lambda i: {"thread_id": i["thread"], "item_id": i["user_item"]},
    "threads.custom_action": lambda i: {
        "thread_id": i["thread"],
        "item_id": "wdg_1",
        "action": ACTION,
    },
    "threads.add_structured_input": lambda i: {
        "thread_id": i["thread"],
        "item_id": f"si_{i['scope']}",
        "input": {"answers": {"colour": {"values": ["blue"]}}},
    },
    "threads.add_client_tool_output": lambda i: {"thread_id": i["thread"], "result": {"lat": 1}},
}


@pytest.fixture
async def owner(async_client: Any, auser_factory: Any) -> Any:
    user = await auser_factory()
    await async_client.aforce_login(user)
    return user


async def test_each_scope_lists_its_own_threads(async_client: Any, owner: Any) -> None:
    support = await seed(async_client, owner, "support")
    sales = await seed(async_client, owner, "sales", more_items=False)

    listed = {}
    for scope in ("support", "sales", None):
        status, page = await post(async_client, {"type": "threads.list", "params": {}}, scope)
        assert status == 200, page
        listed[scope] = {t["id"] for t in page["data"]}

    assert listed == {
        "support": {support["thread"]},
        "sales": {sales["thread"]},
        None: {support["thread"], sales["thread"]},  # unscoped: every scope
    }
    assert await Thread.objects.filter(pk=support["thread"], scope="support").aexists()
    assert await Attachment.objects.filter(pk=sales["pending"], scope="sales").aexists()
    assert await Attachment.objects.filter(pk=sales["image"], scope="sales").aexists()


@pytest.mark.parametrize("request_type", REQUESTS)
async def test_every_request_from_another_scope_finds_nothing(
    request_type: str, async_client: Any, owner: Any
) -> None:
    ids = await seed(async_client, owner, "support")
    before = await snapshot()

    status, answer = await post(
        async_client, {"type": request_type, "params": REQUESTS[request_type](ids)}, "sales"
    )

    if request_type == "items.list":  # as for a thread that does not exist
        assert (status, answer["data"]) == (200, [])
    elif request_type == "attachments.delete":  # idempotent: as for a missing attachment
        assert (status, answer) == (200, {})
    else:
        assert status == 404, answer
        assert answer["code"] == "not_found"
    assert await snapshot() == before


@pytest.mark.parametrize("scope", ["support", None])
@pytest.mark.parametrize("request_type", REQUESTS)
async def test_every_request_from_the_threads_scope_or_unscoped_works(
    request_type: str, scope: str | None, async_client: Any, owner: Any
) -> None:
    ids = await seed(async_client, owner, "support")

    status, answer = await post(
        async_client, {"type": request_type, "params": REQUESTS[request_type](ids)}, scope
    )

    assert status == 200, answer
    if isinstance(answer, list):  # a stream: the responder answered
        assert answer[-1]["type"] == "thread.item.done", answer
        assert answer[-1]["item"]["type"] == "assistant_message"
    elif request_type == "threads.get_by_id":
        assert ids["user_item"] in [item["id"] for item in answer["items"]["data"]]
    elif request_type == "items.list":
        assert ids["user_item"] in [item["id"] for item in answer["data"]]
    elif request_type == "threads.update":
        assert await Thread.objects.filter(pk=ids["thread"], title="renamed").aexists()
    elif request_type == "items.feedback":
        assert await Feedback.objects.filter(user=owner).aexists()
    elif request_type == "attachments.delete":
        assert not await Attachment.objects.filter(pk=ids["image"]).aexists()
    elif request_type == "threads.delete":
        assert not await Thread.objects.filter(pk=ids["thread"]).aexists()
    if request_type == "threads.create":
        # A new thread is put in the request's scope ("" when unscoped), its file with it.
        new = await Thread.objects.exclude(pk=ids["thread"]).aget()
        assert new.scope == (scope or "")
        assert (await Attachment.objects.aget(pk=ids["loose"])).scope == (scope or "")
        assert (await Attachment.objects.aget(pk=ids["loose"])).thread_id == new.pk


async def content(client: Any, url: str, scope: str | None) -> int:
    response = await client.get(url.removeprefix("http://testserver"), headers=scope_headers(scope))
    if response.streaming:
        b"".join([c async for c in response.streaming_content])
    return response.status_code


async def test_content_and_upload_target_follow_the_scope(async_client: Any, owner: Any) -> None:
    ids = await seed(async_client, owner, "support")
    signed = (await upload(async_client, "support")).json()["preview_url"]
    unsigned = "http://testserver" + reverse(
        "chatkit:attachment-content", kwargs={"attachment_id": ids["image"]}
    )

    assert await content(async_client, unsigned, "support") == 200
    assert await content(async_client, unsigned, None) == 200  # the admin's transcript
    assert await content(async_client, unsigned, "sales") == 404
    # A signed preview link is its own grant: an <img> sends no scope header.
    assert await content(async_client, signed, "sales") == 200

    target = reverse("chatkit:upload-target", kwargs={"attachment_id": ids["pending"]})
    refused = await async_client.put(
        target, PNG, content_type="image/png", headers=scope_headers("sales")
    )
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    asked = await async_client.put(
        target, PNG, content_type="image/png", headers=scope_headers("support")
    )
    assert (asked.status_code, asked.json()["code"]) == (403, "invalid_upload_token")


async def test_converters_read_no_attachment_of_another_scope(
    async_client: Any, owner: Any
) -> None:
    ids = await seed(async_client, owner, "support")
    store = DjangoStore()
    for scope, found in (("sales", False), ("support", True), (None, True)):
        converter = DjangoThreadItemConverter(ChatKitContext(user=owner, scope=scope), store=store)
        assert (await converter.get_attachment_row(ids["image"]) is not None) is found


async def test_an_unscoped_context_links_a_file_into_the_threads_scope(auser_factory: Any) -> None:
    owner = await auser_factory()
    store = DjangoStore()
    scoped = ChatKitContext(user=owner, scope="sales")
    thread = make_thread()
    await store.save_thread(thread, scoped)
    await store.add_thread_item(thread.id, make_user_message(thread.id), scoped)
    unscoped = ChatKitContext(user=owner)
    attachment = FileAttachment(id="atc_x", name="a.txt", mime_type="text/plain")
    await store.save_attachment(attachment, unscoped)
    assert (await Attachment.objects.aget(pk="atc_x")).scope == ""

    await store.save_attachment(attachment.model_copy(update={"thread_id": thread.id}), unscoped)

    assert (await Attachment.objects.aget(pk="atc_x")).scope == "sales"
    assert [a.id for a in await store.load_attachments(["atc_x"], scoped)] == ["atc_x"]
    # Saved again from the other scope, the thread stays where it was.
    with pytest.raises(Exception, match="not found"):
        await store.save_thread(thread, ChatKitContext(user=owner, scope="support"))
    assert (await Thread.objects.aget(pk=thread.id)).scope == "sales"


# -- bad scopes ---------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["a\x00b", "x" * 256], ids=["nul", "too-long"])
async def test_a_scope_no_row_can_hold_is_refused(
    scope: str, async_client: Any, owner: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "CONTEXT_FACTORY": RAW_CONTEXT}
    query = "?" + urlencode({"scope": scope})
    for payload in (
        {"type": "threads.list", "params": {}},
        {"type": "threads.create", "params": {"input": user_input("hi")}},
        {"type": "threads.get_by_id", "params": {"thread_id": "thr_x"}},
    ):
        status, answer = await post(async_client, payload, None, ENDPOINT + query)
        assert (status, answer["code"]) == (400, "invalid_scope"), answer
    response = await async_client.post(
        reverse("chatkit:upload") + query,
        {"file": SimpleUploadedFile("cat.png", PNG, content_type="image/png")},
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_scope")
    assert not await Thread.objects.aexists()
    assert not await Attachment.objects.aexists()


async def test_the_longest_scope_is_stored(async_client: Any, owner: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "CONTEXT_FACTORY": RAW_CONTEXT}
    scope = "é" * 255
    status, events = await post(
        async_client,
        {"type": "threads.create", "params": {"input": user_input("hi")}},
        None,
        ENDPOINT + "?scope=" + "%C3%A9" * 255,
    )
    assert status == 200, events
    assert (await Thread.objects.aget()).scope == scope


async def test_the_example_refuses_an_unknown_agent(async_client: Any, owner: Any) -> None:
    status, answer = await post(async_client, {"type": "threads.list", "params": {}}, "hr")
    assert (status, answer["code"]) == (400, "invalid_scope")
    assert "support, sales" in answer["detail"]


@pytest.mark.parametrize("scope", ["\ud800", 3, "a\x00"], ids=["surrogate", "not-text", "nul"])
async def test_the_store_refuses_what_it_cannot_store(scope: Any, auser_factory: Any) -> None:
    owner = await auser_factory()
    context = ChatKitContext(user=owner, scope=scope)
    with pytest.raises(InvalidScope):
        await DjangoStore().save_thread(make_thread(), context)
    with pytest.raises(InvalidScope):
        await DjangoStore().load_threads(20, None, "desc", context)
    assert not await Thread.objects.aexists()


async def test_every_store_method_keeps_to_the_scope(auser_factory: Any) -> None:
    owner = await auser_factory()
    store = DjangoStore()
    sales, support = (ChatKitContext(user=owner, scope=s) for s in ("sales", "support"))
    thread = make_thread()
    await store.save_thread(thread, sales)
    item = make_user_message(thread.id)
    await store.add_thread_item(thread.id, item, sales)
    attachment = FileAttachment(id="atc_s", name="a.txt", mime_type="text/plain")
    await store.save_attachment(attachment, sales)
    before = await snapshot()

    assert (await store.load_threads(20, None, "desc", support)).data == []
    assert (await store.load_thread_items(thread.id, None, 20, "asc", support)).data == []
    for call in (
        store.load_thread(thread.id, support),
        store.load_thread_for(thread.id, "change", support),
        store.load_item(thread.id, item.id, support),
        store.add_thread_item(thread.id, make_user_message(thread.id), support),
        store.save_item(thread.id, item.model_copy(update={"content": []}), support),
        store.delete_thread_item(thread.id, item.id, support),
        store.delete_thread(thread.id, support),
        store.load_attachment(attachment.id, support),
        store.load_attachments([attachment.id], support),
        store.save_attachment(attachment.model_copy(update={"name": "b.txt"}), support),
    ):
        with pytest.raises(NotFoundError):
            await call
    await store.delete_attachment(attachment.id, support)  # idempotent: nothing to delete
    assert await snapshot() == before


async def test_a_file_of_another_scope_gets_no_signed_preview(
    auser_factory: Any, settings: Any
) -> None:
    owner = await auser_factory()
    store = DjangoStore()
    sales, support = (ChatKitContext(user=owner, scope=s) for s in ("sales", "support"))
    image = ImageAttachment(
        id="atc_img",
        name="cat.png",
        mime_type="image/png",
        preview_url="http://testserver/stored.png",
    )
    await store.save_attachment(image, support)
    thread = make_thread()
    await store.save_thread(thread, sales)
    # Only an unscoped context (a task, a command) can put it there.
    message = make_user_message(thread.id, attachments=[image])
    await store.add_thread_item(thread.id, message, ChatKitContext(user=owner))

    [shown] = (await store.load_thread_items(thread.id, None, 20, "asc", sales)).data
    assert "sig=" not in str(shown.attachments[0].preview_url)
    unscoped = ChatKitContext(user=owner)
    [shown] = (await store.load_thread_items(thread.id, None, 20, "asc", unscoped)).data
    assert "sig=" in str(shown.attachments[0].preview_url)


def test_a_context_of_your_own_names_its_scope(user_factory: Any, settings: Any) -> None:
    # docs/guides/workspaces.md, "A context of your own"; the Host header is the sync
    # client's to set.
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.CHATKIT = {
        **settings.CHATKIT,
        "CONTEXT_FACTORY": "tests.testapp.workspaces.workspace_context",
        "STORE_CLASS": "tests.testapp.workspaces.WorkspaceStore",
    }
    user = user_factory()
    acme = workspaces.WorkspaceContext(member=user, workspace="acme", http_request=None)
    store, thread = workspaces.WorkspaceStore(), make_thread()
    async_to_sync(store.save_thread)(thread, acme)
    async_to_sync(store.add_thread_item)(thread.id, make_user_message(thread.id), acme)
    client = Client()
    client.force_login(user)

    def listed(host: str) -> list[str]:
        response = client.post(
            ENDPOINT,
            json.dumps({"type": "threads.list", "params": {}}),
            content_type="application/json",
            HTTP_HOST=host,
        )
        assert response.status_code == 200, response.content
        return [t["id"] for t in response.json()["data"]]

    assert listed("acme.example.com") == [thread.id]
    assert listed("globex.example.com") == []
    assert Thread.objects.get(pk=thread.id).scope == "acme"


# -- server-started conversations in a scope -----------------------------------------


async def test_a_conversation_started_by_the_server_in_a_scope(auser_factory: Any) -> None:
    owner = await auser_factory()
    thread = await astart_thread(owner, "a quote for 40 seats", scope="sales")

    assert (await Thread.objects.aget(pk=thread.id)).scope == "sales"
    store = DjangoStore()
    for scope, listed in (("sales", [thread.id]), ("support", []), (None, [thread.id])):
        page = await store.load_threads(20, None, "desc", ChatKitContext(user=owner, scope=scope))
        assert [t.id for t in page.data] == listed
    with pytest.raises(UnknownThread):
        await aadd_message(owner, thread.id, "and 10 more", scope="support")
    added = await aadd_message(owner, thread.id, "and 10 more", scope="sales")
    assert [i.type for i in added.items.data] == ["user_message", "assistant_message"]


async def test_a_factory_that_takes_no_scope_is_named(auser_factory: Any, settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "CONTEXT_FACTORY": "tests.testapp.contexts.sync_context",  # (request) only
    }
    with pytest.raises(ImproperlyConfigured, match="takes no 'user' or 'scope' argument"):
        await astart_thread(await auser_factory(), "hi", scope="sales")
    assert not await Thread.objects.aexists()


async def test_the_example_tour_starts_in_the_current_agent(
    async_client: Any, owner: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ROOT_URLCONF = "example_project.urls"
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "example_project.demo.server.DemoServer",
    }
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(DemoServer, "word_delay", 0)
    response = await async_client.post("/welcome/", {"agent": "sales"})
    assert response.status_code == 302
    thread_id = response["Location"].removeprefix("/?agent=sales&thread=")
    assert (await Thread.objects.aget(pk=thread_id)).scope == "sales"
    status, items = await post(
        async_client, {"type": "items.list", "params": {"thread_id": thread_id}}, "sales"
    )
    assert status == 200
    assert len(items["data"]) == 2
    status, items = await post(
        async_client, {"type": "items.list", "params": {"thread_id": thread_id}}, "support"
    )
    assert (status, items["data"]) == (200, [])


def test_chatkit_send_in_a_scope(user_factory: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "CONTEXT_FACTORY": None}  # ChatKitContext's scope
    user = user_factory()
    out = StringIO()
    call_command(
        "chatkit_send", "--user", user.get_username(), "--scope", "sales", "hi", stdout=out
    )
    thread_id = out.getvalue().splitlines()[0]
    assert Thread.objects.get(pk=thread_id).scope == "sales"
    with pytest.raises(CommandError, match="not valid"):
        call_command("chatkit_send", "--user", user.get_username(), "--scope", "a\x00", "hi")
