"""The SDK's ``Store`` contract, written once as an abstract test class.

``chatkit.store.Store`` documents the contract in its docstrings; the SDK's own reference
stores show the details (pages, upserts, not-found). A configuration subclasses
``StoreContract`` and provides ``make_store()`` and ``context_for(user)``; the suite then runs
on whichever database the run uses (SQLite, or PostgreSQL with CHATKIT_TEST_DB=postgres).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    ClosedStatus,
    FileAttachment,
    ImageAttachment,
    LockedStatus,
    Page,
    Thread,
    ThreadMetadata,
)

from chatkit_django.exceptions import InvalidCursor
from tests import sdk_items
from tests.factories import make_assistant_message, make_thread, make_user_message

T0 = datetime(2026, 5, 1, 12, 0, 0)


class StoreContract:
    """Abstract: not collected itself (no ``Test`` prefix); subclasses are."""

    pytestmark = pytest.mark.django_db(transaction=True)

    def make_store(self) -> Store[Any]:
        raise NotImplementedError

    def context_for(self, user: Any) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Store[Any]:
        return self.make_store()

    async def start_thread(self, store: Store[Any], thread: ThreadMetadata, ctx: Any) -> None:
        """Save ``thread`` with a first message, as ``threads.create`` does: only threads
        that hold an item are listed (a stricter rule than the SDK's reference stores')."""
        await store.save_thread(thread, ctx)
        await store.add_thread_item(thread.id, make_user_message(thread.id), ctx)

    @pytest.fixture
    async def ctx(self, auser_factory: Any) -> Any:
        return self.context_for(await auser_factory())

    @pytest.fixture
    async def other_ctx(self, auser_factory: Any) -> Any:
        return self.context_for(await auser_factory())

    @pytest.fixture
    async def thread(self, store: Store[Any], ctx: Any) -> ThreadMetadata:
        thread = make_thread(created_at=T0)
        await store.save_thread(thread, ctx)
        return thread

    async def add_items(
        self, store: Store[Any], thread_id: str, ctx: Any, n: int, *, same_time: bool = False
    ) -> list[str]:
        ids = []
        for i in range(n):
            created = T0 if same_time else T0 + timedelta(seconds=i)
            item = make_user_message(thread_id, f"m{i}", created_at=created)
            await store.add_thread_item(thread_id, item, ctx)
            ids.append(item.id)
        return ids

    # -- round trips ---------------------------------------------------------

    @pytest.mark.parametrize("kind", sorted(sdk_items.ITEM_BUILDERS))
    async def test_item_round_trip(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata, kind: str
    ) -> None:
        item = sdk_items.ITEM_BUILDERS[kind](thread.id)
        await store.add_thread_item(thread.id, item, ctx)

        sdk_items.assert_same(await store.load_item(thread.id, item.id, ctx), item)
        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert len(page.data) == 1
        sdk_items.assert_same(page.data[0], item)

    async def test_every_item_type_is_covered(self) -> None:
        from typing import get_args

        from chatkit.types import ThreadItem

        union = get_args(ThreadItem)[0]
        sdk_types = {cls.model_fields["type"].default for cls in get_args(union)}
        built = {b("thr").type for b in sdk_items.ITEM_BUILDERS.values()}
        assert built == sdk_types

    @pytest.mark.parametrize(
        "created_at",
        [sdk_items.NAIVE, sdk_items.AWARE_UTC, sdk_items.AWARE_OFFSET],
        ids=["naive", "aware-utc", "aware-offset"],
    )
    async def test_thread_round_trip(self, store: Store[Any], ctx: Any, created_at: Any) -> None:
        thread = ThreadMetadata(
            id="thr_roundtrip",
            title="Plans ✓",
            created_at=created_at,
            status=LockedStatus(reason="Read only"),
            allowed_image_domains=["cdn.example.com", "img.example.org"],
            metadata={"previous_response_id": "resp_1", "n": 3, "tags": ["a"], "x": None},
        )
        await self.start_thread(store, thread, ctx)
        sdk_items.assert_same(await store.load_thread(thread.id, ctx), thread)
        page = await store.load_threads(10, None, "desc", ctx)
        sdk_items.assert_same(page.data[0], thread)

    async def test_thread_defaults_round_trip(self, store: Store[Any], ctx: Any) -> None:
        thread = ThreadMetadata(id="thr_defaults", created_at=sdk_items.NAIVE)
        await store.save_thread(thread, ctx)
        loaded = await store.load_thread(thread.id, ctx)
        sdk_items.assert_same(loaded, thread)
        assert loaded.title is None
        assert loaded.allowed_image_domains is None

    async def test_closed_status_round_trip(self, store: Store[Any], ctx: Any) -> None:
        thread = make_thread(status=ClosedStatus(reason=None), title="")
        await store.save_thread(thread, ctx)
        loaded = await store.load_thread(thread.id, ctx)
        sdk_items.assert_same(loaded, thread)
        assert loaded.title == ""

    async def test_full_thread_is_saved_as_metadata(self, store: Store[Any], ctx: Any) -> None:
        thread = Thread(id="thr_full", created_at=T0, title="t", items=Page(data=[]))
        await store.save_thread(thread, ctx)
        loaded = await store.load_thread(thread.id, ctx)
        assert type(loaded) is ThreadMetadata
        assert loaded == ThreadMetadata(**thread.model_dump(exclude={"items"}))

    @pytest.mark.parametrize(
        "attachment",
        [
            FileAttachment(
                id="atc_1", name="a.pdf", mime_type="application/pdf", metadata={"k": [1]}
            ),
            ImageAttachment(
                id="atc_2",
                name="i.png",
                mime_type="image/png",
                preview_url="https://example.com/i.png",
                upload_descriptor={"url": "https://up.example.com/", "method": "PUT"},
            ),
        ],
        ids=["file", "image"],
    )
    async def test_attachment_round_trip(
        self, store: Store[Any], ctx: Any, attachment: Any
    ) -> None:
        await store.save_attachment(attachment, ctx)
        loaded = await store.load_attachment(attachment.id, ctx)
        assert type(loaded) is type(attachment)
        assert loaded == attachment

    # -- ids -----------------------------------------------------------------

    async def test_generated_ids_keep_sdk_prefixes_and_do_not_collide(
        self, store: Store[Any], ctx: Any
    ) -> None:
        thread_ids = {store.generate_thread_id(ctx) for _ in range(2000)}
        assert len(thread_ids) == 2000
        assert all(re.fullmatch(r"thr_[0-9a-f]{32}", i) for i in thread_ids)
        thread = make_thread()
        assert store.generate_item_id("message", thread, ctx).startswith("msg_")
        assert store.generate_item_id("tool_call", thread, ctx).startswith("tc_")
        assert store.generate_item_id("workflow", thread, ctx).startswith("wf_")
        assert store.generate_item_id("sdk_hidden_context", thread, ctx).startswith("shcx_")

    # -- threads -------------------------------------------------------------

    async def test_save_thread_updates_in_place(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        other = make_thread(created_at=T0 + timedelta(seconds=1))
        await self.start_thread(store, other, ctx)
        await store.add_thread_item(thread.id, make_user_message(thread.id), ctx)
        renamed = thread.model_copy(update={"title": "Renamed", "metadata": {"a": 1}})
        await store.save_thread(renamed, ctx)

        assert await store.load_thread(thread.id, ctx) == renamed
        page = await store.load_threads(10, None, "asc", ctx)
        assert [t.id for t in page.data] == [thread.id, other.id]

    async def test_load_missing_thread(self, store: Store[Any], ctx: Any) -> None:
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_missing", ctx)

    async def test_delete_thread_deletes_its_items(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 3)
        await store.delete_thread(thread.id, ctx)

        with pytest.raises(NotFoundError):
            await store.load_thread(thread.id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_item(thread.id, ids[0], ctx)
        assert (await store.load_thread_items(thread.id, None, 10, "asc", ctx)).data == []
        assert (await store.load_threads(10, None, "asc", ctx)).data == []

    async def test_delete_thread_leaves_other_threads(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        other = make_thread()
        await store.save_thread(other, ctx)
        [kept] = await self.add_items(store, other.id, ctx, 1)
        await store.delete_thread(thread.id, ctx)
        assert (await store.load_item(other.id, kept, ctx)).id == kept

    # -- items ---------------------------------------------------------------

    async def test_save_item_upserts_in_place(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 3)
        edited = make_user_message(thread.id, "edited", id=ids[0], created_at=T0)
        await store.save_item(thread.id, edited, ctx)

        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert [i.id for i in page.data] == ids
        assert page.data[0] == edited

    async def test_save_item_inserts_a_new_item(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        item = make_assistant_message(thread.id, created_at=T0)
        await store.save_item(thread.id, item, ctx)
        assert await store.load_item(thread.id, item.id, ctx) == item

    async def test_add_thread_item_twice_keeps_the_stored_item(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 2)
        stored = await store.load_item(thread.id, ids[0], ctx)
        again = make_user_message(thread.id, "again", id=ids[0], created_at=T0)
        await store.add_thread_item(thread.id, again, ctx)
        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert [i.id for i in page.data] == ids
        assert page.data[0] == stored  # adding never replaces; save_item does

    async def test_adding_again_does_not_undo_a_save(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        answered = sdk_items.ITEM_BUILDERS["structured_input"](thread.id)
        pending = answered.model_copy(update={"status": "pending"})
        await store.add_thread_item(thread.id, pending, ctx)
        await store.save_item(thread.id, answered, ctx)

        await store.add_thread_item(thread.id, pending, ctx)  # a responder yields it again

        assert await store.load_item(thread.id, pending.id, ctx) == answered
        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert [i.id for i in page.data] == [pending.id]

    async def test_item_ids_are_scoped_to_their_thread(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        other = make_thread()
        await store.save_thread(other, ctx)
        [item_id] = await self.add_items(store, thread.id, ctx, 1)

        with pytest.raises(NotFoundError):
            await store.load_item(other.id, item_id, ctx)
        clash = make_user_message(other.id, "clash", id=item_id)
        with pytest.raises(NotFoundError):
            await store.save_item(other.id, clash, ctx)
        with pytest.raises(NotFoundError):
            await store.add_thread_item(other.id, clash, ctx)
        await store.delete_thread_item(other.id, item_id, ctx)
        assert (await store.load_item(thread.id, item_id, ctx)).content[0].text == "m0"

    async def test_delete_thread_item(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 3)
        await store.delete_thread_item(thread.id, ids[1], ctx)
        with pytest.raises(NotFoundError):
            await store.load_item(thread.id, ids[1], ctx)
        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert [i.id for i in page.data] == [ids[0], ids[2]]

    async def test_load_missing_item(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        with pytest.raises(NotFoundError):
            await store.load_item(thread.id, "msg_missing", ctx)

    async def test_items_need_an_existing_thread(self, store: Store[Any], ctx: Any) -> None:
        item = make_user_message("thr_missing")
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_missing", item, ctx)
        with pytest.raises(NotFoundError):
            await store.save_item("thr_missing", item, ctx)
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_missing", ctx)

    @pytest.mark.parametrize(
        "odd_id", ["a\x00b", "x" * 1000, "", "' OR 1=1 --", "%", "_", "thr_é✓"]
    )
    async def test_odd_ids_are_not_found(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata, odd_id: str
    ) -> None:
        [item_id] = await self.add_items(store, thread.id, ctx, 1)
        empty = Page(data=[], has_more=False, after=None)
        with pytest.raises(NotFoundError):
            await store.load_thread(odd_id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_item(thread.id, odd_id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_item(odd_id, item_id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_attachment(odd_id, ctx)
        with pytest.raises(NotFoundError):
            await store.add_thread_item(odd_id, make_user_message(odd_id), ctx)
        with pytest.raises(NotFoundError):
            await store.delete_thread(odd_id, ctx)
        assert await store.load_thread_items(odd_id, None, 10, "asc", ctx) == empty
        if odd_id:  # (an empty cursor is the first page)
            # Neither a cursor we signed nor the id of a row: 400, not a silent end.
            with pytest.raises(InvalidCursor):
                await store.load_thread_items(thread.id, odd_id, 10, "asc", ctx)
            with pytest.raises(InvalidCursor):
                await store.load_threads(10, odd_id, "asc", ctx)
        await store.delete_thread_item(thread.id, odd_id, ctx)
        assert [
            i.id for i in (await store.load_thread_items(thread.id, None, 9, "asc", ctx)).data
        ] == [item_id]

    # -- attachments ---------------------------------------------------------

    async def test_save_attachment_upserts(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        attachment = FileAttachment(id="atc_up", name="a.txt", mime_type="text/plain")
        await store.save_attachment(attachment, ctx)
        linked = attachment.model_copy(update={"thread_id": thread.id, "name": "b.txt"})
        await store.save_attachment(linked, ctx)
        assert await store.load_attachment(attachment.id, ctx) == linked

    async def test_delete_attachment(self, store: Store[Any], ctx: Any) -> None:
        attachment = FileAttachment(id="atc_del", name="a.txt", mime_type="text/plain")
        await store.save_attachment(attachment, ctx)
        await store.delete_attachment(attachment.id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_attachment(attachment.id, ctx)

    async def test_load_missing_attachment(self, store: Store[Any], ctx: Any) -> None:
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_missing", ctx)

    # -- item pagination -----------------------------------------------------

    @pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "tied-times"])
    async def test_items_walk_forwards_and_backwards(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata, same_time: bool
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 7, same_time=same_time)
        for order, expected in (("asc", ids), ("desc", ids[::-1])):
            seen: list[str] = []
            after = None
            pages = []
            while True:
                page = await store.load_thread_items(thread.id, after, 3, order, ctx)
                seen += [i.id for i in page.data]
                pages.append((len(page.data), page.has_more))
                if not page.has_more:
                    assert page.after is None
                    break
                # An opaque cursor; the id of the last item, what cursors used to be, still
                # gives the same next page.
                assert page.after not in ids
                by_id = await store.load_thread_items(thread.id, page.data[-1].id, 3, order, ctx)
                after = page.after
                assert by_id == await store.load_thread_items(thread.id, after, 3, order, ctx)
            assert seen == expected
            assert pages == [(3, True), (3, True), (1, False)]

    async def test_items_order_by_created_at_not_insertion(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        late = make_user_message(thread.id, "late", created_at=T0 + timedelta(hours=1))
        early = make_user_message(thread.id, "early", created_at=T0)
        # 10:30 UTC is 12:30 in Paris (TIME_ZONE): between the two naive local times.
        aware = make_user_message(
            thread.id, "middle", created_at=datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
        )
        for item in (late, early, aware):
            await store.add_thread_item(thread.id, item, ctx)
        page = await store.load_thread_items(thread.id, None, 10, "asc", ctx)
        assert [i.id for i in page.data] == [early.id, aware.id, late.id]

    async def test_full_page_without_more(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 3)
        page = await store.load_thread_items(thread.id, None, 3, "asc", ctx)
        assert [i.id for i in page.data] == ids
        assert page.has_more is False
        assert page.after is None
        last = await store.load_thread_items(thread.id, ids[-1], 3, "asc", ctx)
        assert last == Page(data=[], has_more=False, after=None)

    async def test_cursor_from_another_thread_or_unknown(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        await self.add_items(store, thread.id, ctx, 3)
        other = make_thread()
        await store.save_thread(other, ctx)
        [foreign] = await self.add_items(store, other.id, ctx, 1)
        for cursor in (foreign, "msg_unknown", "' OR 1=1 --", "x" * 1000, "a:b", "\x00"):
            with pytest.raises(InvalidCursor):
                await store.load_thread_items(thread.id, cursor, 10, "asc", ctx)
        # An empty cursor carries no position: the first page.
        page = await store.load_thread_items(thread.id, "", 10, "asc", ctx)
        assert len(page.data) == 3

    async def test_a_tampered_cursor_is_refused(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata
    ) -> None:
        await self.add_items(store, thread.id, ctx, 3)
        cursor = (await store.load_thread_items(thread.id, None, 1, "asc", ctx)).after
        payload, _, signature = cursor.rpartition(":")
        for forged in (
            f"{payload}:{signature[::-1]}",
            f"{payload[:-2]}{payload[-1]}{payload[-2]}:{signature}",
            cursor + "x",
            cursor.replace(":", "", 1),
        ):
            with pytest.raises(InvalidCursor):
                await store.load_thread_items(thread.id, forged, 10, "asc", ctx)
        # An item cursor is no thread cursor.
        with pytest.raises(InvalidCursor):
            await store.load_threads(10, cursor, "asc", ctx)

    async def test_items_page_of_missing_thread_is_empty(self, store: Store[Any], ctx: Any) -> None:
        page = await store.load_thread_items("thr_missing", None, 10, "desc", ctx)
        assert page == Page(data=[], has_more=False, after=None)

    @pytest.mark.parametrize("order", ["asc", "desc"])
    async def test_paging_goes_on_after_the_cursor_item_is_deleted(
        self, store: Store[Any], ctx: Any, thread: ThreadMetadata, order: str
    ) -> None:
        ids = await self.add_items(store, thread.id, ctx, 5)
        expected = ids if order == "asc" else ids[::-1]
        first = await store.load_thread_items(thread.id, None, 2, order, ctx)
        await store.delete_thread_item(thread.id, expected[1], ctx)  # the cursor's item

        rest = await store.load_thread_items(thread.id, first.after, 10, order, ctx)

        assert [i.id for i in rest.data] == expected[2:]
        assert rest.has_more is False
        # An old-style cursor (the id) whose item is gone is refused, not an empty last page.
        with pytest.raises(InvalidCursor):
            await store.load_thread_items(thread.id, expected[1], 10, order, ctx)

    async def test_paging_goes_on_after_the_cursor_thread_is_deleted(
        self, store: Store[Any], ctx: Any
    ) -> None:
        ids = []
        for i in range(5):
            thread = make_thread(created_at=T0 + timedelta(minutes=i))
            await self.start_thread(store, thread, ctx)
            ids.append(thread.id)
        first = await store.load_threads(2, None, "desc", ctx)
        await store.delete_thread(first.data[-1].id, ctx)

        rest = await store.load_threads(10, first.after, "desc", ctx)

        assert [t.id for t in rest.data] == ids[::-1][2:]
        assert rest.has_more is False

    # -- thread pagination ---------------------------------------------------

    @pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "tied-times"])
    async def test_threads_walk_forwards_and_backwards(
        self, store: Store[Any], ctx: Any, same_time: bool
    ) -> None:
        ids = []
        for i in range(5):
            thread = make_thread(created_at=T0 if same_time else T0 + timedelta(minutes=i))
            await self.start_thread(store, thread, ctx)
            ids.append(thread.id)
        for order, expected in (("asc", ids), ("desc", ids[::-1])):
            first = await store.load_threads(2, None, order, ctx)
            second = await store.load_threads(2, first.after, order, ctx)
            third = await store.load_threads(2, second.after, order, ctx)
            assert [t.id for p in (first, second, third) for t in p.data] == expected
            assert (first.has_more, second.has_more, third.has_more) == (True, True, False)
            assert third.after is None
            # Old-style cursors (ids) still work.
            by_id = await store.load_threads(2, expected[1], order, ctx)
            assert [t.id for t in by_id.data] == [t.id for t in second.data]

    async def test_load_threads_lists_only_own_threads(
        self, store: Store[Any], ctx: Any, other_ctx: Any, thread: ThreadMetadata
    ) -> None:
        theirs = make_thread(created_at=T0)
        await self.start_thread(store, theirs, other_ctx)
        await store.add_thread_item(thread.id, make_user_message(thread.id), ctx)
        assert [t.id for t in (await store.load_threads(10, None, "asc", ctx)).data] == [thread.id]
        assert [t.id for t in (await store.load_threads(10, None, "asc", other_ctx)).data] == [
            theirs.id
        ]
        # Someone else's thread id is no cursor into my list.
        with pytest.raises(InvalidCursor):
            await store.load_threads(10, theirs.id, "asc", ctx)

    async def test_saving_a_thread_keeps_its_place(self, store: Store[Any], ctx: Any) -> None:
        ids = []
        for _ in range(3):
            thread = make_thread(created_at=T0)
            await self.start_thread(store, thread, ctx)
            ids.append(thread.id)
        first = await store.load_thread(ids[0], ctx)
        await store.save_thread(first.model_copy(update={"title": "later"}), ctx)
        assert [t.id for t in (await store.load_threads(10, None, "asc", ctx)).data] == ids
