"""``DjangoStore`` under real concurrency: several threads, each with its own connection.

Each worker runs the store through ``async_to_sync``, so the ORM calls happen on that
worker's thread and database connection, and the workers truly overlap in the database
(PostgreSQL with CHATKIT_TEST_DB=postgres; SQLite serialises the writes with its lock).
Races that depend on timing are forced with a barrier, so the tests are deterministic.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections

from chatkit_django import models
from chatkit_django import store as store_module
from chatkit_django.context import ChatKitContext
from chatkit_django.deletion import delete_threads
from chatkit_django.store import DjangoStore
from tests.db import WORKERS, run_in_parallel
from tests.factories import make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 5, 1, 12, 0, 0)


@pytest.fixture
async def setup(auser_factory: Any) -> tuple[DjangoStore, ChatKitContext, Any]:
    store = DjangoStore()
    ctx = ChatKitContext(user=await auser_factory())
    thread = make_thread(created_at=T0)
    await store.save_thread(thread, ctx)
    return store, ctx, thread


async def walk(store: DjangoStore, thread_id: str, ctx: Any, order: str) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        page = await store.load_thread_items(thread_id, after, 7, order, ctx)
        ids += [i.id for i in page.data]
        if not page.has_more:
            return ids
        after = page.after


async def test_concurrent_appends_all_land_in_a_stable_order(setup: Any) -> None:
    store, ctx, thread = setup
    per_worker = 10
    start = threading.Barrier(WORKERS, timeout=30)

    async def append(worker: int) -> list[str]:
        await sync_to_async(start.wait)()
        ids = []
        for n in range(per_worker):
            # Same created_at everywhere: only the tie-breaker orders them.
            item = make_user_message(thread.id, f"{worker}-{n}", created_at=T0)
            await store.add_thread_item(thread.id, item, ctx)
            ids.append(item.id)
        return ids

    added = await sync_to_async(run_in_parallel, thread_sensitive=False)(append)

    asc = await walk(store, thread.id, ctx, "asc")
    assert sorted(asc) == sorted(i for ids in added for i in ids)
    assert len(set(asc)) == WORKERS * per_worker
    assert await walk(store, thread.id, ctx, "desc") == asc[::-1]
    for ids in added:  # each writer's items keep the order it added them in
        assert [i for i in asc if i in set(ids)] == ids
    seqs = [s async for s in models.ThreadItem.objects.values_list("seq", flat=True)]
    assert len(set(seqs)) == len(seqs)
    assert await walk(store, thread.id, ctx, "asc") == asc  # and the order is stable


@pytest.fixture
def forced_insert_race(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold every store INSERT until all workers have reached theirs.

    Each worker has then already seen "no such row" (its UPDATE matched nothing), so all
    but one INSERT hit the primary key: the lost-race path runs every time.
    """
    barrier = threading.Barrier(WORKERS, timeout=30)
    original = store_module._insert

    async def racing_insert(model: Any, **fields: Any) -> None:
        await sync_to_async(barrier.wait)()
        await original(model, **fields)

    monkeypatch.setattr(store_module, "_insert", racing_insert)


@pytest.mark.usefixtures("forced_insert_race")
async def test_concurrent_save_item_of_a_new_item_upserts(setup: Any) -> None:
    store, ctx, thread = setup
    versions = [make_user_message(thread.id, f"v{i}", id="msg_same") for i in range(WORKERS)]

    async def save(worker: int) -> None:
        await store.save_item(thread.id, versions[worker], ctx)

    await sync_to_async(run_in_parallel, thread_sensitive=False)(save)

    page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
    assert [i.id for i in page.data] == ["msg_same"]
    assert page.data[0] in versions


@pytest.mark.usefixtures("forced_insert_race")
async def test_concurrent_add_of_the_same_item_keeps_one(setup: Any) -> None:
    store, ctx, thread = setup
    item = make_user_message(thread.id, "once", id="msg_once")

    async def add(worker: int) -> None:
        await store.add_thread_item(thread.id, item, ctx)

    await sync_to_async(run_in_parallel, thread_sensitive=False)(add)
    assert await models.ThreadItem.objects.filter(thread_id=thread.id).acount() == 1


@pytest.mark.usefixtures("forced_insert_race")
async def test_concurrent_save_thread_of_a_new_thread_upserts(setup: Any) -> None:
    store, ctx, _ = setup
    versions = [make_thread("thr_same", title=f"v{i}", created_at=T0) for i in range(WORKERS)]

    async def save(worker: int) -> None:
        await store.save_thread(versions[worker], ctx)

    await sync_to_async(run_in_parallel, thread_sensitive=False)(save)
    assert await store.load_thread("thr_same", ctx) in versions
    assert await models.Thread.objects.filter(pk="thr_same").acount() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["store", "batch"])
async def test_delete_thread_while_an_item_is_being_saved(setup: Any, how: str) -> None:
    """An item that commits between a delete's item and thread DELETEs (a stream saving its
    answer after a hang-up, while the user deletes the chat) does not fail the delete: the
    delete locks the thread first, so the item's foreign key check waits for it and the item
    is refused instead. ``store``: ``DjangoStore.delete_thread``; ``batch``:
    ``deletion.delete_threads`` (admin, commands). PostgreSQL only: it checks foreign keys at
    commit, and the race needs two connections."""
    from django.db import transaction
    from django.db.models.signals import pre_delete
    from django.utils import timezone

    store, ctx, thread = setup
    await store.add_thread_item(thread.id, make_user_message(thread.id), ctx)
    inserted, go, settled = threading.Event(), threading.Event(), threading.Event()
    writer_pid: list[int] = []
    refused: list[Exception] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                connections["default"].ensure_connection()
                writer_pid.append(connections["default"].connection.info.backend_pid)
                models.ThreadItem.objects.create(
                    id="msg_late", thread_id=thread.id, type="assistant_message",
                    created_at=timezone.now(), seq=10**12, data={},
                )  # fmt: skip
                inserted.set()
                go.wait(10)
        except Exception as e:  # noqa: BLE001 - refused: the thread was deleted first
            refused.append(e)
        finally:
            settled.set()
            connections.close_all()

    def waiting_on_a_lock(pid: int) -> bool:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        return row is not None and row[0] == "Lock"

    def between_the_deletes(sender: Any, instance: Any, **kwargs: Any) -> None:
        # The items are deleted, the thread is not yet: let the writer commit now.
        go.set()
        for _ in range(200):
            if settled.wait(0.05) or waiting_on_a_lock(writer_pid[0]):
                return

    def delete() -> None:
        try:
            if how == "store":
                async_to_sync(store.delete_thread)(thread.id, ctx)
            else:
                assert delete_threads([thread.id]) == 1
        finally:
            connections.close_all()

    pre_delete.connect(between_the_deletes, sender=models.Thread)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            writing = pool.submit(writer)
            assert await sync_to_async(inserted.wait)(10), refused
            await sync_to_async(pool.submit(delete).result)(30)
            writing.result(30)
    finally:
        pre_delete.disconnect(between_the_deletes, sender=models.Thread)
    assert not await models.Thread.objects.filter(pk=thread.id).aexists()
    assert not await models.ThreadItem.objects.filter(thread_id=thread.id).aexists()
