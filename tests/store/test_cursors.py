"""Page cursors over the endpoint: they carry their position, signed.

A listing goes on after the row its cursor came from is deleted; a garbled or forged cursor
is a 400 (``invalid_cursor``), never a silent empty page nor a restart from the first page
(a client paging until ``has_more`` is false would loop forever on a restart); an id, what
cursors used to be, is still accepted while its row exists.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from chatkit.types import ItemsListParams, ItemsListReq, ThreadListParams, ThreadsListReq
from django.test import AsyncClient

from chatkit_django._internal.cursors import decode_cursor, encode_cursor
from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore
from tests.chatkit_client import post
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 5, 1, 12, 0, 0)


@pytest.fixture
async def seeded(auser_factory: Any) -> dict[str, Any]:
    """A logged-in client; its user has one thread of 5 items and 4 more threads of one item
    (a thread without items is not listed)."""
    user = await auser_factory()
    context = ChatKitContext(user=user)
    store = DjangoStore()
    threads = []
    for i in range(5):
        thread = make_thread(created_at=T0 + timedelta(minutes=i))
        await store.save_thread(thread, context)
        if i:
            await store.add_thread_item(thread.id, make_user_message(thread.id), context)
        threads.append(thread.id)
    items = []
    for i in range(5):
        item = make_user_message(threads[0], f"m{i}", created_at=T0 + timedelta(seconds=i))
        await store.add_thread_item(threads[0], item, context)
        items.append(item.id)
    http = AsyncClient()
    await http.aforce_login(user)
    return {"http": http, "store": store, "context": context, "threads": threads, "items": items}


async def list_items(http: Any, thread_id: str, after: str | None, limit: int = 2) -> Any:
    params = ItemsListParams(thread_id=thread_id, after=after, limit=limit, order="asc")
    return await post(http, ItemsListReq(params=params))


async def list_threads(http: Any, after: str | None, limit: int = 2) -> Any:
    return await post(http, ThreadsListReq(params=ThreadListParams(after=after, limit=limit)))


async def test_items_page_on_after_the_cursor_item_is_deleted(seeded: dict[str, Any]) -> None:
    http, thread_id, items = seeded["http"], seeded["threads"][0], seeded["items"]
    first = (await list_items(http, thread_id, None)).json()
    assert [i["id"] for i in first["data"]] == items[:2]
    await seeded["store"].delete_thread_item(thread_id, items[1], seeded["context"])

    response = await list_items(http, thread_id, first["after"], limit=10)

    assert response.status_code == 200
    page = response.json()
    assert [i["id"] for i in page["data"]] == items[2:]
    assert page["has_more"] is False


async def test_threads_page_on_after_the_cursor_thread_is_deleted(seeded: dict[str, Any]) -> None:
    http, threads = seeded["http"], seeded["threads"]
    first = (await list_threads(http, None)).json()  # newest first
    assert [t["id"] for t in first["data"]] == [threads[4], threads[3]]
    await seeded["store"].delete_thread(threads[3], seeded["context"])

    page = (await list_threads(http, first["after"], limit=10)).json()

    assert [t["id"] for t in page["data"]] == [threads[2], threads[1], threads[0]]
    assert page["has_more"] is False


@pytest.mark.parametrize(
    "garble",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature changed
        lambda c: c[:5] + ("A" if c[5] != "A" else "B") + c[6:],  # payload changed
        lambda c: c.split(":")[0],  # signature dropped
        lambda c: "x" * 5000,
        lambda c: "msg_that_never_was",
        lambda c: "\x00",
    ],
    ids=["signature", "payload", "unsigned", "huge", "unknown-id", "nul"],
)
async def test_a_garbled_cursor_is_400(seeded: dict[str, Any], garble: Any) -> None:
    http, thread_id = seeded["http"], seeded["threads"][0]
    cursor = (await list_items(http, thread_id, None)).json()["after"]
    thread_cursor = (await list_threads(http, None)).json()["after"]

    for response in (
        await list_items(http, thread_id, garble(cursor)),
        await list_threads(http, garble(thread_cursor)),
    ):
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"


async def test_a_forged_position_is_refused(seeded: dict[str, Any], settings: Any) -> None:
    """A client cannot make up a position: cursors are signed with the SECRET_KEY."""
    http, thread_id, items = seeded["http"], seeded["threads"][0], seeded["items"]
    key = settings.SECRET_KEY
    settings.SECRET_KEY = "not-the-servers-key-" + "x" * 40
    forged = encode_cursor("items", (datetime(2000, 1, 1), 0, items[0]))
    settings.SECRET_KEY = key

    response = await list_items(http, thread_id, forged)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_cursor")


async def test_an_item_cursor_is_no_thread_cursor(seeded: dict[str, Any]) -> None:
    http, thread_id = seeded["http"], seeded["threads"][0]
    cursor = (await list_items(http, thread_id, None)).json()["after"]
    response = await list_threads(http, cursor)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_cursor")


async def test_old_style_cursors_still_page(seeded: dict[str, Any]) -> None:
    http, thread_id, items, threads = (
        seeded["http"],
        seeded["threads"][0],
        seeded["items"],
        seeded["threads"],
    )
    page = (await list_items(http, thread_id, items[1], limit=10)).json()
    assert [i["id"] for i in page["data"]] == items[2:]
    page = (await list_threads(http, threads[2], limit=10)).json()
    assert [t["id"] for t in page["data"]] == [threads[1], threads[0]]


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_cursors_survive_a_key_rotation_with_fallbacks(settings: Any) -> None:
    position = (datetime(2026, 5, 1, 12, 0, 0, 123456).astimezone(), 42, "msg_1")
    cursor = encode_cursor("items", position)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-" + "z" * 50
    assert decode_cursor("items", cursor) == position
    assert json.dumps(cursor).isascii()


@pytest.fixture
async def without_use_tz(settings: Any) -> Any:
    """USE_TZ off, on connections opened with it off (PostgreSQL reads datetimes by it)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    def reconnect() -> None:
        # In the ORM's thread: its connections cache the time zone they were opened with.
        for conn in connections.all():
            conn.close()
            conn.__dict__.pop("timezone", None)
            conn.__dict__.pop("timezone_name", None)

    settings.USE_TZ = False
    await sync_to_async(reconnect)()
    yield
    settings.USE_TZ = True
    await sync_to_async(reconnect)()


async def test_paging_without_use_tz(auser_factory: Any, without_use_tz: Any) -> None:
    user = await auser_factory()
    context = ChatKitContext(user=user)
    store = DjangoStore()
    thread = make_thread(created_at=T0)
    await store.save_thread(thread, context)
    ids = []
    for i in range(5):
        item = make_user_message(thread.id, f"m{i}", created_at=T0 + timedelta(microseconds=i))
        await store.add_thread_item(thread.id, item, context)
        ids.append(item.id)
    seen, after = [], None
    for _ in range(5):  # bounded: a cursor that does not move must fail, not loop
        page = await store.load_thread_items(thread.id, after, 2, "desc", context)
        seen += [i.id for i in page.data]
        if not page.has_more:
            break
        after = page.after
    assert seen == ids[::-1]
