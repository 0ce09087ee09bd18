"""Who may do what through ``DjangoStore``: owner, model and object permissions, anonymous.

Without access, the store must behave exactly as for an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chatkit.store import NotFoundError
from chatkit.types import FileAttachment, Page
from django.contrib.auth.models import AnonymousUser, Permission
from django.core.exceptions import PermissionDenied

from chatkit_django import models
from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore
from tests.factories import make_thread, make_user_message
from tests.testapp import permissions

pytestmark = pytest.mark.django_db(transaction=True)

EMPTY: Page[Any] = Page(data=[], has_more=False, after=None)


@pytest.fixture(autouse=True)
def _clear_object_grants() -> Iterator[None]:
    yield
    permissions.GRANTS.clear()


@pytest.fixture
def store() -> DjangoStore:
    return DjangoStore()


@pytest.fixture
async def owner(auser_factory: Any) -> ChatKitContext:
    return ChatKitContext(user=await auser_factory())


@pytest.fixture
async def data(store: DjangoStore, owner: ChatKitContext) -> dict[str, Any]:
    """A thread with one item and an attachment, all belonging to ``owner``."""
    thread = make_thread(title="private")
    await store.save_thread(thread, owner)
    item = make_user_message(thread.id, "secret")
    await store.add_thread_item(thread.id, item, owner)
    attachment = FileAttachment(id="atc_private", name="a.txt", mime_type="text/plain")
    await store.save_attachment(attachment, owner)
    return {"thread": thread, "item": item, "attachment": attachment}


@pytest.fixture
def stranger_factory(auser_factory: Any) -> Any:
    """Returns ``make(*perms)``: a context for a new user holding those model permissions."""

    async def make(*perms: str) -> ChatKitContext:
        user = await auser_factory()
        if perms:
            codenames = [p.split(".", 1)[1] for p in perms]
            await user.user_permissions.aadd(
                *[p async for p in Permission.objects.filter(codename__in=codenames)]
            )
        return ChatKitContext(user=user)

    return make


async def not_found_message(call: Any) -> str:
    with pytest.raises(NotFoundError) as excinfo:
        await call
    return str(excinfo.value)


async def assert_cannot_read(store: DjangoStore, ctx: Any, data: dict[str, Any]) -> None:
    thread, item, attachment = data["thread"], data["item"], data["attachment"]
    # The very same errors as for ids that do not exist.
    assert await not_found_message(store.load_thread(thread.id, ctx)) == (
        await not_found_message(store.load_thread("thr_x", ctx))
    ).replace("thr_x", thread.id)
    assert await not_found_message(store.load_item(thread.id, item.id, ctx)) == (
        await not_found_message(store.load_item(thread.id, "msg_x", ctx))
    ).replace("msg_x", item.id)
    assert await not_found_message(store.load_attachment(attachment.id, ctx)) == (
        await not_found_message(store.load_attachment("atc_x", ctx))
    ).replace("atc_x", attachment.id)
    assert await store.load_thread_items(thread.id, None, 10, "desc", ctx) == EMPTY
    assert await store.load_thread_items(thread.id, item.id, 10, "desc", ctx) == EMPTY


async def assert_cannot_write(store: DjangoStore, ctx: Any, data: dict[str, Any]) -> None:
    thread, item, attachment = data["thread"], data["item"], data["attachment"]
    with pytest.raises(NotFoundError):
        await store.save_thread(thread.model_copy(update={"title": "hijacked"}), ctx)
    with pytest.raises(NotFoundError):
        await store.add_thread_item(thread.id, make_user_message(thread.id, "spam"), ctx)
    with pytest.raises(NotFoundError):
        await store.save_item(thread.id, item.model_copy(update={"quoted_text": "x"}), ctx)
    with pytest.raises(NotFoundError):
        await store.delete_thread_item(thread.id, item.id, ctx)
    with pytest.raises(NotFoundError):
        await store.delete_thread(thread.id, ctx)
    with pytest.raises(NotFoundError):
        await store.save_attachment(attachment.model_copy(update={"name": "evil"}), ctx)
    # Deleting is idempotent: the same silence as for a missing attachment, nothing deleted.
    await store.delete_attachment(attachment.id, ctx)
    await store.delete_attachment("atc_missing", ctx)


async def assert_untouched(data: dict[str, Any]) -> None:
    thread = await models.Thread.objects.aget(pk=data["thread"].id)
    assert thread.title == "private"
    assert thread.data["title"] == "private"
    assert [i.preview async for i in models.ThreadItem.objects.filter(thread=thread)] == ["secret"]
    attachment = await models.Attachment.objects.aget(pk=data["attachment"].id)
    assert attachment.name == "a.txt"


async def test_owner_has_full_access(
    store: DjangoStore, owner: ChatKitContext, data: dict[str, Any]
) -> None:
    thread, item = data["thread"], data["item"]
    assert await store.load_thread(thread.id, owner) == thread
    assert await store.load_item(thread.id, item.id, owner) == item
    assert await store.load_attachment(data["attachment"].id, owner) == data["attachment"]
    await store.delete_thread_item(thread.id, item.id, owner)
    await store.delete_attachment(data["attachment"].id, owner)
    await store.delete_thread(thread.id, owner)
    assert not await models.Thread.objects.aexists()


async def test_other_user_without_permissions(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    stranger = await stranger_factory()
    await assert_cannot_read(store, stranger, data)
    await assert_cannot_write(store, stranger, data)
    await assert_untouched(data)
    assert await store.load_threads(10, None, "desc", stranger) == EMPTY


async def test_view_permission_reads_but_does_not_write(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    viewer = await stranger_factory("chatkit_django.view_thread")
    thread, item = data["thread"], data["item"]
    assert await store.load_thread(thread.id, viewer) == thread
    assert await store.load_item(thread.id, item.id, viewer) == item
    page = await store.load_thread_items(thread.id, None, 10, "desc", viewer)
    assert page.data == [item]
    # Viewing threads is not viewing attachments.
    with pytest.raises(NotFoundError):
        await store.load_attachment(data["attachment"].id, viewer)
    await assert_cannot_write(store, viewer, data)
    await assert_untouched(data)


async def test_view_permission_does_not_list_others_threads(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    viewer = await stranger_factory("chatkit_django.view_thread")
    assert await store.load_threads(10, None, "desc", viewer) == EMPTY


async def test_change_permission_writes_items_and_thread(
    store: DjangoStore, owner: ChatKitContext, stranger_factory: Any, data: dict[str, Any]
) -> None:
    editor = await stranger_factory("chatkit_django.change_thread")
    thread, item = data["thread"], data["item"]
    with pytest.raises(NotFoundError):
        await store.load_thread(thread.id, editor)  # change does not imply view

    await store.save_thread(thread.model_copy(update={"title": "edited"}), editor)
    added = make_user_message(thread.id, "from support")
    await store.add_thread_item(thread.id, added, editor)
    await store.save_item(thread.id, item.model_copy(update={"quoted_text": "q"}), editor)
    await store.delete_thread_item(thread.id, added.id, editor)
    with pytest.raises(NotFoundError):
        await store.delete_thread(thread.id, editor)

    row = await models.Thread.objects.aget(pk=thread.id)
    assert (row.title, row.data["title"], row.owner_id) == ("edited", "edited", owner.user.pk)
    saved = await models.ThreadItem.objects.aget(pk=item.id)
    assert saved.data["quoted_text"] == "q"
    assert await models.ThreadItem.objects.acount() == 1


async def test_delete_permission_deletes_thread(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    deleter = await stranger_factory("chatkit_django.delete_thread")
    await store.delete_thread(data["thread"].id, deleter)
    assert not await models.Thread.objects.aexists()
    assert not await models.ThreadItem.objects.aexists()


async def test_attachment_permissions(
    store: DjangoStore, owner: ChatKitContext, stranger_factory: Any, data: dict[str, Any]
) -> None:
    attachment = data["attachment"]
    viewer = await stranger_factory("chatkit_django.view_attachment")
    assert await store.load_attachment(attachment.id, viewer) == attachment
    await store.delete_attachment(attachment.id, viewer)  # as for a missing one: no error
    assert await models.Attachment.objects.filter(pk=attachment.id).aexists()

    editor = await stranger_factory("chatkit_django.change_attachment")
    await store.save_attachment(attachment.model_copy(update={"name": "renamed"}), editor)
    row = await models.Attachment.objects.aget(pk=attachment.id)
    assert (row.name, row.owner_id) == ("renamed", owner.user.pk)

    deleter = await stranger_factory("chatkit_django.delete_attachment")
    await store.delete_attachment(attachment.id, deleter)
    assert not await models.Attachment.objects.aexists()


async def test_linking_an_attachment_needs_change_access_to_the_thread(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    stranger = await stranger_factory()
    mine = FileAttachment(
        id="atc_mine", name="m.txt", mime_type="text/plain", thread_id=data["thread"].id
    )
    with pytest.raises(NotFoundError):
        await store.save_attachment(mine, stranger)
    assert not await models.Attachment.objects.filter(pk="atc_mine").aexists()


async def test_object_permission_backend_is_honoured(
    store: DjangoStore, owner: ChatKitContext, stranger_factory: Any, data: dict[str, Any]
) -> None:
    other_thread = make_thread()
    await store.save_thread(other_thread, owner)
    helper = await stranger_factory()
    thread_row = await models.Thread.objects.aget(pk=data["thread"].id)
    permissions.grant(helper.user, "chatkit_django.view_thread", thread_row)
    permissions.grant(helper.user, "chatkit_django.change_thread", thread_row)
    attachment_row = await models.Attachment.objects.aget(pk=data["attachment"].id)
    permissions.grant(helper.user, "chatkit_django.view_attachment", attachment_row)

    assert await store.load_thread(data["thread"].id, helper) == data["thread"]
    await store.add_thread_item(
        data["thread"].id, make_user_message(data["thread"].id, "hi"), helper
    )
    assert await store.load_attachment(data["attachment"].id, helper) == data["attachment"]
    # The grant is for that one thread only.
    with pytest.raises(NotFoundError):
        await store.load_thread(other_thread.id, helper)
    with pytest.raises(NotFoundError):
        await store.delete_thread(data["thread"].id, helper)


async def test_superuser_may_do_everything(
    store: DjangoStore, auser_factory: Any, data: dict[str, Any]
) -> None:
    admin = ChatKitContext(user=await auser_factory(is_superuser=True))
    assert await store.load_thread(data["thread"].id, admin) == data["thread"]
    await store.delete_thread(data["thread"].id, admin)
    assert not await models.Thread.objects.aexists()


async def test_inactive_user_with_permissions_gets_nothing(
    store: DjangoStore, stranger_factory: Any, data: dict[str, Any]
) -> None:
    ctx = await stranger_factory("chatkit_django.view_thread")
    ctx.user.is_active = False
    with pytest.raises(NotFoundError):
        await store.load_thread(data["thread"].id, ctx)


async def test_anonymous_user(store: DjangoStore, data: dict[str, Any]) -> None:
    anonymous = ChatKitContext(user=AnonymousUser())
    await assert_cannot_read(store, anonymous, data)
    assert await store.load_threads(10, None, "desc", anonymous) == EMPTY
    with pytest.raises(PermissionDenied):
        await store.save_thread(make_thread(), anonymous)
    with pytest.raises(PermissionDenied):
        await store.save_attachment(
            FileAttachment(id="atc_anon", name="a", mime_type="text/plain"), anonymous
        )
    with pytest.raises(NotFoundError):
        await store.add_thread_item(
            data["thread"].id, make_user_message(data["thread"].id), anonymous
        )
    with pytest.raises(NotFoundError):
        await store.delete_thread(data["thread"].id, anonymous)
    await assert_untouched(data)
    assert await models.Thread.objects.acount() == 1


async def test_none_user_is_anonymous(store: DjangoStore, data: dict[str, Any]) -> None:
    ctx = ChatKitContext(user=None)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await store.load_thread(data["thread"].id, ctx)


async def test_loads_never_create_threads(
    store: DjangoStore, owner: ChatKitContext, stranger_factory: Any
) -> None:
    stranger = await stranger_factory("chatkit_django.view_thread")
    for ctx in (owner, stranger):
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_new", ctx)
        assert await store.load_thread_items("thr_new", None, 10, "asc", ctx) == EMPTY
        with pytest.raises(NotFoundError):
            await store.load_item("thr_new", "msg_new", ctx)
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_new", make_user_message("thr_new"), ctx)
        with pytest.raises(NotFoundError):
            await store.save_item("thr_new", make_user_message("thr_new"), ctx)
        with pytest.raises(NotFoundError):
            await store.save_attachment(
                FileAttachment(id="atc_n", name="n", mime_type="text/plain", thread_id="thr_new"),
                ctx,
            )
    assert not await models.Thread.objects.aexists()
    assert not await models.ThreadItem.objects.aexists()
    assert not await models.Attachment.objects.aexists()


async def test_has_access_is_the_one_place_to_override(
    owner: ChatKitContext, stranger_factory: Any, data: dict[str, Any]
) -> None:
    class ReadOnlyForAll(DjangoStore):
        async def has_access(self, user: Any, obj: Any, action: str) -> bool:
            return action == "view"

    store = ReadOnlyForAll()
    stranger = await stranger_factory()
    assert await store.load_thread(data["thread"].id, stranger) == data["thread"]
    with pytest.raises(NotFoundError):
        await store.delete_thread(data["thread"].id, stranger)
