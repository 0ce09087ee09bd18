"""One access rule, obeyed by every HTTP path.

``DjangoStore.has_access`` is overridden two ways (``tests/testapp/access.py``): a rule that
denies everything, and a "team" rule that lets a teammate act on another user's threads and
files. Every endpoint request type that touches a thread, item or attachment, the direct and
two-phase uploads, the content view and previews, and deletion must answer by it.

Under the deny-all rule the stranger holds every Django model permission, so any path that
still asked a copy of the default rule (owner or permission) would let them through.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from chatkit.types import ClientToolCallItem, StructuredInputFreeform, StructuredInputItem
from django.contrib.auth.models import Permission

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.store import DjangoStore
from tests.chatkit_client import aupload, exchange
from tests.factories import PNG
from tests.sdk_calls import user_input
from tests.sdk_items import widget
from tests.testapp import access

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "/chatkit/"
ALL_PERMISSIONS = [
    f"{action}_{model}"
    for action in ("view", "change", "delete")
    for model in ("thread", "attachment", "threaditem", "feedback")
]


@pytest.fixture(autouse=True)
def _storage(settings: Any, tmp_path: Any) -> Any:
    settings.CHATKIT = {**settings.CHATKIT, "BASE_URL": "http://testserver"}
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    yield
    access.TEAMS.clear()


def use_rule(settings: Any, store_class: str) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "STORE_CLASS": store_class}


async def content(client: Any, url: str) -> tuple[int, bytes]:
    response = await client.get(url.removeprefix("http://testserver"))
    body = b"".join([c async for c in response.streaming_content]) if response.streaming else b""
    return response.status_code, body


async def seed(async_client: Any, owner: Any) -> dict[str, Any]:
    """A thread of ``owner`` with an image in its first message, a widget, a pending
    structured input, a pending client tool call (last); an image in no thread yet and a
    pending two-phase upload."""
    await async_client.aforce_login(owner)
    image = (await aupload(async_client)).json()["id"]
    loose = (await aupload(async_client)).json()["id"]  # in no thread yet
    status, events = await exchange(
        async_client, {"type": "threads.create", "params": {"input": user_input("hi", [image])}}
    )
    assert status == 200, events
    thread_id, user_item = events[0]["thread"]["id"], events[1]["item"]["id"]
    store, context = DjangoStore(), ChatKitContext(user=owner)
    await store.add_thread_item(thread_id, widget(thread_id), context)
    await store.add_thread_item(
        thread_id,
        StructuredInputItem(
            id="si_pending",
            thread_id=thread_id,
            created_at=datetime.now(),
            inputs=[StructuredInputFreeform(id="colour", question="Which colour?")],
        ),
        context,
    )
    await store.add_thread_item(
        thread_id,
        ClientToolCallItem(
            id="tc_pending",
            thread_id=thread_id,
            created_at=datetime.now(),
            call_id="call_1",
            name="get_location",
            arguments={},
        ),
        context,
    )
    status, pending = await exchange(
        async_client,
        {
            "type": "attachments.create",
            "params": {"name": "later.png", "size": len(PNG), "mime_type": "image/png"},
        },
    )
    assert status == 200, pending
    await async_client.alogout()
    return {
        "thread": thread_id,
        "user_item": user_item,
        "image": image,
        "loose": loose,
        "pending": pending["id"],
    }


async def snapshot(ids: dict[str, Any]) -> tuple[Any, ...]:
    """What a refused request must leave exactly as it was."""
    thread = await Thread.objects.filter(pk=ids["thread"]).afirst()
    return (
        thread.title if thread else None,
        sorted([(i.pk, json.dumps(i.data)) async for i in ThreadItem.objects.all()]),
        sorted([a.pk async for a in Attachment.objects.all()]),
        await Feedback.objects.acount(),
    )


ACTION = {"type": "note", "payload": {}}

# name -> (payload builder, streaming?)
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
    "threads.add_user_message": lambda i: {"thread_id": i["thread"], "input": user_input("more")},
    "threads.retry_after_item": lambda i: {"thread_id": i["thread"], "item_id": i["user_item"]},
    "threads.custom_action": lambda i: {
        "thread_id": i["thread"],
        "item_id": "wdg_1",
        "action": ACTION,
    },
    "threads.add_structured_input": lambda i: {
        "thread_id": i["thread"],
        "item_id": "si_pending",
        "input": {"answers": {"colour": {"values": ["blue"]}}},
    },
    "threads.add_client_tool_output": lambda i: {"thread_id": i["thread"], "result": {"lat": 1}},
}


@pytest.fixture
async def owner_and_stranger(auser_factory: Any) -> tuple[Any, Any]:
    owner, stranger = await auser_factory(), await auser_factory()
    await stranger.user_permissions.aadd(
        *[p async for p in Permission.objects.filter(codename__in=ALL_PERMISSIONS)]
    )
    return owner, stranger


@pytest.mark.parametrize("request_type", REQUESTS)
async def test_deny_all_refuses_every_endpoint_request(
    request_type: str, async_client: Any, owner_and_stranger: Any, settings: Any
) -> None:
    owner, stranger = owner_and_stranger
    ids = await seed(async_client, owner)
    before = await snapshot(ids)
    use_rule(settings, "tests.testapp.access.DenyAllStore")
    await async_client.aforce_login(stranger)

    status, answer = await exchange(
        async_client, {"type": request_type, "params": REQUESTS[request_type](ids)}
    )

    if request_type == "items.list":  # as for a thread that does not exist
        assert (status, answer["data"]) == (200, [])
    elif request_type == "attachments.delete":  # idempotent: as for a missing attachment
        assert (status, answer) == (200, {})
    else:
        assert status == 404, answer
        assert answer["code"] == "not_found"
    assert await snapshot(ids) == before
    assert not await Thread.objects.exclude(pk=ids["thread"]).aexists()


@pytest.mark.parametrize("request_type", REQUESTS)
async def test_a_team_rule_lets_a_teammate_make_every_endpoint_request(
    request_type: str, async_client: Any, auser_factory: Any, settings: Any
) -> None:
    owner, teammate = await auser_factory(), await auser_factory()  # no Django permissions
    ids = await seed(async_client, owner)
    use_rule(settings, "tests.testapp.access.TeamStore")
    access.TEAMS.update({owner.pk: "blue", teammate.pk: "blue"})
    await async_client.aforce_login(teammate)

    status, answer = await exchange(
        async_client, {"type": request_type, "params": REQUESTS[request_type](ids)}
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
        assert await Feedback.objects.filter(user=teammate).aexists()
    elif request_type == "attachments.delete":
        assert not await Attachment.objects.filter(pk=ids["image"]).aexists()
    elif request_type == "threads.delete":
        assert not await Thread.objects.filter(pk=ids["thread"]).aexists()


async def test_the_rule_decides_content_preview_and_upload_target(
    async_client: Any, owner_and_stranger: Any, auser_factory: Any, settings: Any
) -> None:
    owner, stranger = owner_and_stranger
    teammate = await auser_factory()
    ids = await seed(async_client, owner)
    url = f"http://testserver/chatkit/attachments/{ids['image']}/content/"
    target = f"/chatkit/attachments/{ids['pending']}/upload/"

    use_rule(settings, "tests.testapp.access.DenyAllStore")
    await async_client.aforce_login(stranger)  # every model permission: not enough
    assert (await content(async_client, url))[0] == 404
    response = await async_client.put(target, PNG, content_type="image/png")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")

    use_rule(settings, "tests.testapp.access.TeamStore")
    access.TEAMS.update({owner.pk: "blue", teammate.pk: "blue"})
    await async_client.aforce_login(teammate)
    assert await content(async_client, url) == (200, PNG)
    # The attachment is theirs to change: they are told the URL needs its token.
    response = await async_client.put(target, PNG, content_type="image/png")
    assert (response.status_code, response.json()["code"]) == (403, "invalid_upload_token")
    # Previews: items.list signs one for the teammate, and it works without a session.
    _status, page = await exchange(
        async_client, {"type": "items.list", "params": {"thread_id": ids["thread"]}}
    )
    (message,) = [item for item in page["data"] if item["id"] == ids["user_item"]]
    preview = message["attachments"][0]["preview_url"]
    assert "sig" in parse_qs(urlsplit(preview).query)
    await async_client.alogout()
    assert await content(async_client, preview) == (200, PNG)


@pytest.mark.parametrize("rule", ["DenyAllStore", "TeamStore"])
async def test_uploads_sign_previews_by_the_rule(
    rule: str, async_client: Any, auser_factory: Any, settings: Any
) -> None:
    """Deny-all refuses even the uploader a preview of their own file; the team rule keeps
    the owner's access. Direct and two-phase uploads alike."""
    user = await auser_factory()
    use_rule(settings, f"tests.testapp.access.{rule}")
    await async_client.aforce_login(user)

    direct = (await aupload(async_client)).json()
    _status, created = await exchange(
        async_client,
        {
            "type": "attachments.create",
            "params": {"name": "b.png", "size": len(PNG), "mime_type": "image/png"},
        },
    )
    put = await async_client.put(
        created["upload_descriptor"]["url"].removeprefix("http://testserver"),
        PNG,
        content_type="image/png",
    )
    assert put.status_code == 200, put.content
    allowed = rule == "TeamStore"
    for answer in (direct, created, put.json()):
        preview = answer["preview_url"]
        assert ("sig" in parse_qs(urlsplit(preview).query)) is allowed
        await async_client.alogout()  # without a session: the signature or nothing
        assert (await content(async_client, preview))[0] == (200 if allowed else 403)
        await async_client.aforce_login(user)
        assert (await content(async_client, preview))[0] == (200 if allowed else 404)


async def test_a_thread_viewer_gets_a_preview_only_of_attachments_they_may_view(
    async_client: Any, auser_factory: Any
) -> None:
    """The default rule: ``view_thread`` shows the message, ``view_attachment`` its image.
    The content view and the preview link answer alike."""
    owner, viewer = await auser_factory(), await auser_factory()
    ids = await seed(async_client, owner)
    await viewer.user_permissions.aadd(await Permission.objects.aget(codename="view_thread"))
    await async_client.aforce_login(viewer)

    async def preview() -> str:
        _status, page = await exchange(
            async_client, {"type": "items.list", "params": {"thread_id": ids["thread"]}}
        )
        (message,) = [item for item in page["data"] if item["id"] == ids["user_item"]]
        return message["attachments"][0]["preview_url"]

    url = await preview()
    assert "sig" not in parse_qs(urlsplit(url).query)
    assert (await content(async_client, url))[0] == 404
    await async_client.alogout()
    assert (await content(async_client, url))[0] == 403

    await viewer.user_permissions.aadd(await Permission.objects.aget(codename="view_attachment"))
    viewer = await type(viewer).objects.aget(pk=viewer.pk)  # no cached permissions
    await async_client.aforce_login(viewer)
    url = await preview()
    assert "sig" in parse_qs(urlsplit(url).query)
    assert await content(async_client, url) == (200, PNG)
    await async_client.alogout()
    assert await content(async_client, url) == (200, PNG)


async def test_attachments_delete_is_idempotent_and_says_nothing_of_others_files(
    async_client: Any, auser_factory: Any
) -> None:
    owner, other = await auser_factory(), await auser_factory()
    await async_client.aforce_login(owner)
    mine, kept = (
        (await aupload(async_client)).json()["id"],
        (await aupload(async_client)).json()["id"],
    )
    await async_client.aforce_login(other)

    def delete(attachment_id: str) -> dict[str, Any]:
        return {"type": "attachments.delete", "params": {"attachment_id": attachment_id}}

    assert await exchange(async_client, delete(kept)) == (200, {})  # someone else's
    assert await exchange(async_client, delete("atc_missing")) == (200, {})
    assert await Attachment.objects.filter(pk=kept).aexists()

    await async_client.aforce_login(owner)
    assert await exchange(async_client, delete(mine)) == (200, {})
    assert await exchange(async_client, delete(mine)) == (200, {})  # already deleted
    assert [a.pk async for a in Attachment.objects.all()] == [kept]


async def test_an_attachment_of_one_thread_cannot_join_another(
    async_client: Any, auser_factory: Any
) -> None:
    """Re-linking would move it: deleting the second thread would delete a file the first
    one still shows. Refused before any stream; the same thread may name it again."""
    owner = await auser_factory()
    ids = await seed(async_client, owner)
    await async_client.aforce_login(owner)
    status, other = await exchange(
        async_client, {"type": "threads.create", "params": {"input": user_input("other")}}
    )
    other_thread = other[0]["thread"]["id"]
    threads_before = await Thread.objects.acount()

    for payload in (
        {"type": "threads.create", "params": {"input": user_input("x", [ids["image"]])}},
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": other_thread, "input": user_input("x", [ids["image"]])},
        },
    ):
        status, answer = await exchange(async_client, payload)
        assert (status, answer["code"]) == (400, "attachment_in_another_thread"), answer
        assert "belongs to another thread" in answer["detail"]
    assert await Thread.objects.acount() == threads_before
    row = await Attachment.objects.aget(pk=ids["image"])
    assert (row.thread_id, row.data["thread_id"]) == (ids["thread"], ids["thread"])

    status, answer = await exchange(
        async_client,
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": ids["thread"], "input": user_input("again", [ids["image"]])},
        },
    )
    assert status == 200, answer
    # The store refuses the move too, whoever calls it.
    store, context = DjangoStore(), ChatKitContext(user=owner)
    attachment = await store.load_attachment(ids["image"], context)
    with pytest.raises(ValueError, match="belongs to another thread"):
        await store.save_attachment(
            attachment.model_copy(update={"thread_id": other_thread}), context
        )
    assert (await Attachment.objects.aget(pk=ids["image"])).thread_id == ids["thread"]
