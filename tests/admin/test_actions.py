"""Admin actions: JSON and Markdown export, deletion with items and attachment bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatkit_django import export
from chatkit_django.admin import ThreadAdmin
from chatkit_django.attachments import get_attachment_storage
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.signals import thread_deleted
from chatkit_django.store import DjangoStore
from tests import sdk_items
from tests.factories import (
    give_feedback,
    make_assistant_message,
    make_context,
    make_user_message,
    store_image,
    store_thread,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:chatkit_django_thread_changelist"


@pytest.fixture
def admin_user(user_factory: Any) -> Any:
    return user_factory(username="boss", is_staff=True, is_superuser=True)


def run_action(client: Any, action: str, ids: list[str], **extra: str) -> Any:
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": ids, **extra}, follow=False
    )


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_export_json_round_trips_through_the_sdk(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory()
    items = [build("x") for build in sdk_items.ITEM_BUILDERS.values()]
    full = store_thread(owner, items, title="Everything")
    other = store_thread(owner, [make_user_message("x", "second")])
    store_thread(owner, [make_user_message("x", "not selected")])
    client.force_login(admin_user)

    response = run_action(client, "export_json", [full.id, other.id])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="chatkit-threads-')
    document = json.loads(body(response))
    assert document["format"] == "chatkit-django.threads"
    threads = {t.id: t for t in export.load_threads(document)}
    assert set(threads) == {full.id, other.id}

    # The same models the store loads: metadata and every item, in thread order.
    store, ctx = DjangoStore(), make_context(owner)
    assert threads[full.id].title == "Everything"
    loaded = async_to_sync(store.load_thread_items)(full.id, None, 100, "asc", ctx)
    assert threads[full.id].items.data == loaded.data
    assert len(loaded.data) == len(items)
    meta = async_to_sync(store.load_thread)(full.id, ctx)
    assert threads[full.id].model_dump(exclude={"items"}) == meta.model_dump()


def test_export_markdown(client: Any, admin_user: Any, user_factory: Any) -> None:
    owner = user_factory(username="carol")
    items = [build("x") for build in sdk_items.ITEM_BUILDERS.values()]
    thread = store_thread(owner, items, title="Support case")
    client.force_login(admin_user)
    response = run_action(client, "export_markdown", [thread.id])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = body(response)
    assert text.startswith("# Support case\n")
    assert "- Owner: carol" in text
    assert "### User" in text and "Ask @Ada Lovelace about é✓ unicode" in text
    assert "Quoting:\n\n```text\nthe quoted passage\n```" in text
    assert "- Attachment: report.pdf (application/pdf, `atc_file`)" in text
    assert "### Assistant" in text and "- Source: Docs (https://example.com/docs)" in text
    assert "- **Which size?** S, M" in text and "- **Anything else?** _skipped_" in text
    assert "### Client tool call `get_location` (completed)" in text
    assert "### Hidden context (not shown to the user)" in text


def test_export_needs_view_permission(client: Any, user_factory: Any) -> None:
    thread = store_thread(user_factory(), [make_user_message("x")])
    staff = user_factory(is_staff=True)
    client.force_login(staff)
    response = run_action(client, "export_json", [thread.id])
    assert response.status_code == 403


@pytest.mark.django_db(transaction=True)  # bytes and signals go on a real commit
def test_delete_action_removes_items_feedback_attachments_and_bytes(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory()
    reply = make_assistant_message("x")
    doomed = store_thread(owner, [make_user_message("x"), reply])
    image = store_image(owner, doomed.id)
    give_feedback(owner, reply.id)
    kept = store_thread(owner, [make_user_message("x", "stay")])
    kept_image = store_image(owner, kept.id, "keep.png")
    storage = get_attachment_storage()
    doomed_file = Attachment.objects.get(pk=image.id).file.name
    kept_file = Attachment.objects.get(pk=kept_image.id).file.name
    assert storage.exists(doomed_file)
    signalled: list[str] = []

    def receiver(sender: Any, thread_id: str, user: Any, **kwargs: Any) -> None:
        signalled.append(thread_id)
        assert user == admin_user

    thread_deleted.connect(receiver)
    try:
        client.force_login(admin_user)
        confirm = run_action(client, "delete_selected", [doomed.id])
        assert confirm.status_code == 200
        page = confirm.content.decode()
        assert "thread items: 2" in page.lower() and "attachments: 1" in page.lower()
        done = run_action(client, "delete_selected", [doomed.id], post="yes")
        assert done.status_code == 302
    finally:
        thread_deleted.disconnect(receiver)

    assert signalled == [doomed.id]
    assert not Thread.objects.filter(pk=doomed.id).exists()
    assert not ThreadItem.objects.filter(thread_id=doomed.id).exists()
    assert not Attachment.objects.filter(pk=image.id).exists()
    assert not Feedback.objects.exists()
    assert not storage.exists(doomed_file)
    assert Thread.objects.filter(pk=kept.id).exists() and storage.exists(kept_file)


@pytest.mark.django_db(transaction=True)  # bytes and signals go on a real commit
def test_delete_view_of_one_thread(client: Any, admin_user: Any, user_factory: Any) -> None:
    owner = user_factory()
    thread = store_thread(owner, [make_user_message("x") for _ in range(5)])
    image = store_image(owner, thread.id)
    file_name = Attachment.objects.get(pk=image.id).file.name
    client.force_login(admin_user)
    url = reverse("admin:chatkit_django_thread_delete", args=[quote(thread.id)])
    assert client.get(url).status_code == 200
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Thread.objects.exists() and not ThreadItem.objects.exists()
    assert not get_attachment_storage().exists(file_name)


def test_delete_query_count_does_not_grow_with_the_thread(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory()
    client.force_login(admin_user)

    def queries(n: int) -> int:
        thread = store_thread(owner, [make_user_message("x") for _ in range(n)])
        url = reverse("admin:chatkit_django_thread_delete", args=[quote(thread.id)])
        with CaptureQueriesContext(connection) as ctx:
            assert client.post(url, {"post": "yes"}).status_code == 302
        assert not Thread.objects.filter(pk=thread.id).exists()
        return len(ctx.captured_queries)

    queries(1)  # warm-up: the first request also caches content types
    assert queries(2) == queries(60)


def test_staff_with_delete_thread_only_can_delete(client: Any, user_factory: Any) -> None:
    """Items, attachments and feedback are part of the thread: no extra permission needed."""
    owner = user_factory()
    thread = store_thread(owner, [make_user_message("x")])
    store_image(owner, thread.id)
    staff = user_factory(is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(codename__in=["view_thread", "delete_thread"])
    )
    client.force_login(staff)
    response = run_action(client, "delete_selected", [thread.id], post="yes")
    assert response.status_code == 302
    assert not Thread.objects.exists() and not Attachment.objects.exists()


@pytest.mark.django_db(transaction=True)  # on_commit: a real commit or rollback
def test_admin_delete_is_announced_on_commit_only(
    client: Any, admin_user: Any, user_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin's delete view runs in a transaction: the signal waits for its commit."""
    thread = store_thread(user_factory(), [make_user_message("x")])
    url = reverse("admin:chatkit_django_thread_delete", args=[quote(thread.id)])
    seen: list[tuple[str, bool]] = []

    def receiver(thread_id: str, **kwargs: Any) -> None:
        seen.append((thread_id, connection.in_atomic_block))

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the response failed after the delete")

    client.force_login(admin_user)
    thread_deleted.connect(receiver)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(ThreadAdmin, "response_delete", fail)
            with pytest.raises(RuntimeError, match="response failed"):
                client.post(url, {"post": "yes"})
        assert seen == []  # rolled back: nothing to announce
        assert Thread.objects.filter(pk=thread.id).exists()

        assert client.post(url, {"post": "yes"}).status_code == 302
    finally:
        thread_deleted.disconnect(receiver)
    assert seen == [(thread.id, False)]  # after the admin's transaction committed
    assert not Thread.objects.filter(pk=thread.id).exists()
