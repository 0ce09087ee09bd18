"""Well-typed but hostile request values are 4xx or a clamped page, never a 500 (#12, defect 6).

Found by the fuzzer (``test_fuzz.py``): list limits beyond any integer column, and ids that
no row can have (a NUL, which PostgreSQL refuses in text, or longer than the id columns).
Every case runs on SQLite and PostgreSQL (``make test`` runs both).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from chatkit_django._internal.ordering import next_seq
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from tests import sdk_items
from tests.chatkit_client import post

pytestmark = pytest.mark.django_db(transaction=True)

MAX = 100  # DjangoChatKitServer.max_page_size, as docs/reference/endpoint limits say


@pytest.fixture
async def client(auser_factory):
    client = AsyncClient(raise_request_exception=False)
    client.user = await auser_factory()
    await client.aforce_login(client.user)
    return client


async def seed_threads(owner, count):
    start = timezone.now()
    await Thread.objects.abulk_create(
        Thread(
            id=f"thr_{n:04}",
            owner=owner,
            created_at=start + timedelta(seconds=n),
            seq=next_seq(),
            data={"id": f"thr_{n:04}", "created_at": (start + timedelta(seconds=n)).isoformat()},
        )
        for n in range(count)
    )
    # Only threads that hold an item are listed (DjangoStore.listed_threads).
    await ThreadItem.objects.abulk_create(
        ThreadItem(
            id=f"msg_first_{n:04}",
            thread_id=f"thr_{n:04}",
            type="user_message",
            created_at=start,
            seq=next_seq(),
            data=sdk_items.user_message(f"thr_{n:04}")
            .model_copy(update={"id": f"msg_first_{n:04}"})
            .model_dump(mode="json", by_alias=True),
        )
        for n in range(count)
    )


async def seed_items(thread_id, count):
    items = []
    for n in range(count):
        item = sdk_items.user_message(thread_id).model_copy(update={"id": f"msg_{n:04}"})
        items.append(
            ThreadItem(
                id=item.id,
                thread_id=thread_id,
                type=item.type,
                created_at=timezone.now() + timedelta(seconds=n),
                seq=next_seq(),
                data=item.model_dump(mode="json", by_alias=True),
            )
        )
    await ThreadItem.objects.abulk_create(items)


async def send(client, request):
    response = await post(client, json.dumps(request))
    return response.status_code, json.loads(response.content)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(2**63, MAX), (2**64, MAX), (MAX + 1, MAX), (-(2**63) - 1, 1), (-5, 1), (3, 3)],
)
async def test_threads_list_limit_is_clamped(client, limit, expected):
    await seed_threads(client.user, MAX + 1)
    status, page = await send(client, {"type": "threads.list", "params": {"limit": limit}})
    assert status == 200, page
    assert len(page["data"]) == expected
    assert page["has_more"] is True


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(2**63, MAX), (MAX + 1, MAX), (-(2**63) - 1, 1), (-5, 1), (3, 3)],
)
async def test_items_list_limit_is_clamped(client, limit, expected):
    await seed_threads(client.user, 1)
    await seed_items("thr_0000", MAX + 1)
    request = {"type": "items.list", "params": {"thread_id": "thr_0000", "limit": limit}}
    status, page = await send(client, request)
    assert status == 200, page
    assert len(page["data"]) == expected
    assert page["has_more"] is True


async def test_a_clamped_page_pages_on_to_every_row(client):
    await seed_threads(client.user, MAX + 1)
    params = {"limit": 2**63, "order": "asc"}
    status, first = await send(client, {"type": "threads.list", "params": params})
    params["after"] = first["after"]
    status, second = await send(client, {"type": "threads.list", "params": params})
    assert status == 200
    ids = [t["id"] for t in first["data"] + second["data"]]
    assert ids == [f"thr_{n:04}" for n in range(MAX + 1)]
    assert second["has_more"] is False


BAD_IDS = {"nul": "msg_0000\x00", "overlong": "msg_" + "0" * 300}


@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_feedback_on_an_id_no_row_can_have_is_404(client, bad_id):
    await seed_threads(client.user, 1)
    await seed_items("thr_0000", 1)
    request = {
        "type": "items.feedback",
        "params": {"thread_id": "thr_0000", "item_ids": ["msg_0000", bad_id], "kind": "positive"},
    }
    status, error = await send(client, request)
    assert (status, error["code"]) == (404, "not_found")
    assert not await Feedback.objects.aexists()


@pytest.mark.parametrize("bad_id", ["atc_1\x00", "atc_" + "1" * 300], ids=BAD_IDS.keys())
async def test_deleting_an_attachment_id_no_row_can_have_deletes_nothing(client, bad_id):
    # Deleting is idempotent, as the SDK treats it: a missing attachment answers like a
    # deleted one (see test_access_rule), and no query reaches the database with the id.
    await Attachment.objects.acreate(
        id="atc_1", owner=client.user, name="a.txt", mime_type="text/plain", type="file", data={}
    )
    request = {"type": "attachments.delete", "params": {"attachment_id": bad_id}}
    status, body = await send(client, request)
    assert (status, body) == (200, {})
    assert await Attachment.objects.filter(pk="atc_1").aexists()


@pytest.mark.parametrize("request_type", ["threads.list", "items.list"])
@pytest.mark.parametrize("after", ["thr_0000\x00", "thr_" + "0" * 300], ids=BAD_IDS.keys())
async def test_a_cursor_no_row_can_have_is_400(client, request_type, after):
    await seed_threads(client.user, 1)
    await seed_items("thr_0000", 1)
    params = {"after": after, "thread_id": "thr_0000"}
    if request_type == "threads.list":
        del params["thread_id"]
    status, error = await send(client, {"type": request_type, "params": params})
    assert (status, error["code"]) == (400, "invalid_cursor")
