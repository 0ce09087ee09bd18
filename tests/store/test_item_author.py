"""``ThreadItem.author``: who sent a user message, set by the store and by migration 0003."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chatkit_django import models
from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore, dump
from tests.factories import make_assistant_message, make_thread, make_user_message

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def may_change_threads(user: Any) -> Any:
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="chatkit_django", codename="change_thread")
    )
    return type(user).objects.get(pk=user.pk)  # fresh, without a permission cache


async def authors(thread_id: str) -> dict[str, Any]:
    rows = models.ThreadItem.objects.filter(thread_id=thread_id).values_list("id", "author_id")
    return {pk: author async for pk, author in rows}


async def test_user_messages_remember_who_sent_them(auser_factory: Any) -> None:
    owner = await auser_factory()
    helper = await may_change_threads(await auser_factory())
    store = DjangoStore()
    as_owner, as_helper = ChatKitContext(user=owner), ChatKitContext(user=helper)
    thread = make_thread()
    await store.save_thread(thread, as_owner)

    asked = make_user_message(thread.id, "owner asks")
    await store.add_thread_item(thread.id, asked, as_owner)
    helped = make_user_message(thread.id, "helper adds")
    await store.add_thread_item(thread.id, helped, as_helper)
    answer = make_assistant_message(thread.id)
    await store.add_thread_item(thread.id, answer, as_owner)
    saved = make_user_message(thread.id, "saved, not added")
    await store.save_item(thread.id, saved, as_helper)
    assert await authors(thread.id) == {
        asked.id: owner.pk,
        helped.id: helper.pk,
        answer.id: None,
        saved.id: helper.pk,
    }

    # Saving an existing message again keeps who sent it, whoever saves.
    await store.save_item(thread.id, asked.model_copy(update={"quoted_text": "q"}), as_helper)
    await store.add_thread_item(thread.id, helped, as_owner)
    assert (await authors(thread.id))[asked.id] == owner.pk
    assert (await authors(thread.id))[helped.id] == helper.pk


@dataclass
class MemberContext:
    """A project context without ``user``: the store finds the user through ``get_user``."""

    member: Any


class MemberStore(DjangoStore):
    def get_user(self, context: Any) -> Any:
        return context.member


async def test_the_author_comes_from_the_get_user_hook(auser_factory: Any) -> None:
    user = await auser_factory()
    store, ctx = MemberStore(), MemberContext(member=user)
    thread = make_thread()
    await store.save_thread(thread, ctx)  # type: ignore[arg-type]
    item = make_user_message(thread.id)
    await store.add_thread_item(thread.id, item, ctx)  # type: ignore[arg-type]
    assert await authors(thread.id) == {item.id: user.pk}


async def test_deleting_the_author_keeps_the_owners_thread(auser_factory: Any) -> None:
    owner = await auser_factory()
    helper = await may_change_threads(await auser_factory())
    store = DjangoStore()
    thread = make_thread()
    await store.save_thread(thread, ChatKitContext(user=owner))
    item = make_user_message(thread.id)
    await store.add_thread_item(thread.id, item, ChatKitContext(user=helper))
    await helper.adelete()
    assert await authors(thread.id) == {item.id: None}


def test_migration_0003_makes_owners_the_authors_of_existing_messages(user_factory: Any) -> None:
    owner = user_factory()
    executor = MigrationExecutor(connection)
    before = [("chatkit_django", "0002_fk_indexes_covered_by_composites")]
    after = [("chatkit_django", "0003_threaditem_author")]
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Thread, ThreadItem = (
            old.get_model("chatkit_django", "Thread"),
            old.get_model("chatkit_django", "ThreadItem"),
        )
        meta = make_thread()
        Thread.objects.create(
            id=meta.id, owner_id=owner.pk, created_at=meta.created_at.astimezone(), seq=1,
            data=dump(meta),
        )  # fmt: skip
        for n, item in enumerate(
            [make_user_message(meta.id, "old"), make_assistant_message(meta.id, "reply")]
        ):
            ThreadItem.objects.create(
                id=item.id, thread_id=meta.id, type=item.type, seq=n,
                created_at=item.created_at.astimezone(), data=dump(item),
            )  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(
        models.ThreadItem.objects.filter(thread_id=meta.id).values_list("type", "author_id")
    ) == {"user_message": owner.pk, "assistant_message": None}
