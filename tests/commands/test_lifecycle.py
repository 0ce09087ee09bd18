"""chatkit_purge, chatkit_export_user and chatkit_erase_user."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatkit_django import export
from chatkit_django._internal.durations import parse_age
from chatkit_django.attachments import get_attachment_storage
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from tests.factories import (
    give_feedback,
    make_assistant_message,
    make_user_message,
    send_message,
    store_image,
    store_thread,
)

pytestmark = pytest.mark.django_db


def age(thread_id: str, *, created_days: int = 0, inactive_days: int = 0) -> None:
    now = timezone.now()
    Thread.objects.filter(pk=thread_id).update(
        created_at=now - timedelta(days=created_days),
        updated_at=now - timedelta(days=inactive_days),
    )


def run(*args: Any, **kwargs: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("45m") == timedelta(minutes=45)
    assert parse_age("2w") == timedelta(weeks=2)
    assert parse_age("7") == timedelta(days=7)
    with pytest.raises(ValueError, match="not an age"):
        parse_age("soon")


@pytest.fixture
def aged(user_factory: Any) -> dict[str, Any]:
    owner = user_factory()
    old = store_thread(owner, [make_user_message("x"), make_assistant_message("x")])
    age(old.id, created_days=400, inactive_days=10)
    stale = store_thread(owner, [make_user_message("x")])
    age(stale.id, created_days=100, inactive_days=100)
    fresh = store_thread(owner, [make_user_message("x")])
    image = store_image(owner, old.id)
    give_feedback(owner, ThreadItem.objects.filter(thread_id=old.id).last().pk)
    return {"owner": owner, "old": old, "stale": stale, "fresh": fresh, "image": image}


def test_purge_dry_run_deletes_nothing(aged: dict[str, Any]) -> None:
    out = run("chatkit_purge", "--older-than", "365d", "--dry-run")
    assert "Would delete 1 thread(s) with 2 item(s), 1 attachment(s) and 1 feedback" in out
    assert Thread.objects.count() == 3


@pytest.mark.django_db(transaction=True)  # bytes and signals go on a real commit
def test_purge_older_than(aged: dict[str, Any]) -> None:
    file_name = Attachment.objects.get(pk=aged["image"].id).file.name
    out = run("chatkit_purge", "--older-than", "365d")
    assert "Deleted 1 thread(s)." in out
    assert set(Thread.objects.values_list("pk", flat=True)) == {
        aged["stale"].id,
        aged["fresh"].id,
    }
    assert not ThreadItem.objects.filter(thread_id=aged["old"].id).exists()
    assert not Attachment.objects.exists() and not Feedback.objects.exists()
    assert not get_attachment_storage().exists(file_name)


def test_purge_inactive_for(aged: dict[str, Any]) -> None:
    run("chatkit_purge", "--inactive-for", "90d")
    assert set(Thread.objects.values_list("pk", flat=True)) == {aged["old"].id, aged["fresh"].id}


def test_purge_needs_an_age_and_valid_values(aged: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="--older-than"):
        run("chatkit_purge")
    with pytest.raises(CommandError, match="not an age"):
        run("chatkit_purge", "--older-than", "yesterday")
    with pytest.raises(CommandError, match="batch-size"):
        run("chatkit_purge", "--older-than", "1d", "--batch-size", "0")
    assert Thread.objects.count() == 3


def test_purge_works_in_batches(user_factory: Any) -> None:
    owner = user_factory()
    for _ in range(7):
        thread = store_thread(owner, [make_user_message("x")])
        age(thread.id, created_days=30)
    keep = store_thread(owner, [make_user_message("x")])
    with CaptureQueriesContext(connection) as ctx:
        out = run("chatkit_purge", "--older-than", "7d", "--batch-size", "3", "--verbosity", "2")
    assert "Deleted 3 thread(s) so far." in out and "Deleted 6 thread(s) so far." in out
    assert "Deleted 7 thread(s)." in out
    assert list(Thread.objects.values_list("pk", flat=True)) == [keep.id]
    # Batches are selected with LIMIT: never all ids in one go.
    selects = [q["sql"] for q in ctx.captured_queries if "LIMIT 3" in q["sql"]]
    assert len(selects) == 4  # 3 + 3 + 1, then an empty batch


def grant_change_thread(user: Any) -> Any:
    """``user`` with the model permission to write in anyone's thread (fresh: no perm cache)."""
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="chatkit_django", codename="change_thread")
    )
    return type(user).objects.get(pk=user.pk)


def test_export_user(user_factory: Any) -> None:
    alice = grant_change_thread(user_factory(username="alice"))
    bob = user_factory(username="bob")
    mine = store_thread(alice, [make_user_message("x", "alice's words")], title="Mine")
    image = store_image(alice, mine.id)
    theirs = store_thread(bob, [make_user_message("x", "bob asks"), make_assistant_message("x")])
    sent = send_message(alice, theirs.id, make_user_message("x", "alice helps out"))
    store_thread(bob, [make_user_message("x", "bob alone")])
    answer = ThreadItem.objects.get(thread_id=theirs.id, type="assistant_message").pk
    give_feedback(alice, answer, "positive")

    document = json.loads(run("chatkit_export_user", "alice"))
    assert document["user"]["username"] == "alice"
    threads = export.load_threads(document)
    assert [t.id for t in threads] == [mine.id]
    assert threads[0].items.data[0].content[0].text == "alice's words"
    # Her message in bob's thread, and nothing else of his.
    assert [(m["id"], m["thread_id"]) for m in document["messages"]] == [(sent.id, theirs.id)]
    assert document["messages"][0]["content"][0]["text"] == "alice helps out"
    assert [a["name"] for a in document["attachments"]] == ["cat.png"]
    assert document["feedback"] == [
        {
            "thread_id": theirs.id,
            "item_id": answer,
            "kind": "positive",
            "created_at": Feedback.objects.get().created_at.isoformat(),
        }
    ]

    markdown = run("chatkit_export_user", str(alice.pk), "--pk", "--format", "markdown")
    assert markdown.startswith("# Mine\n") and "alice's words" in markdown
    assert "bob asks" not in markdown and "bob alone" not in markdown
    others = markdown.split("# Messages in threads of others\n\n", 1)[1].split("\n---\n")[0]
    assert others.startswith(f"## Thread `{theirs.id}`\n\n### User · ")
    assert "```text\nalice helps out\n```" in others
    row = Attachment.objects.get(pk=image.id)
    attachments = markdown.split("# Attachments\n\n", 1)[1].split("\n---\n")[0]
    assert attachments == (
        f"- cat.png (image/png, {row.size} bytes, `{image.id}`, thread `{mine.id}`, "
        f"{row.created_at.isoformat(timespec='seconds')})\n"
    )
    feedback = markdown.split("# Feedback given\n\n", 1)[1]
    assert feedback == (
        f"- positive on item `{answer}` in thread `{theirs.id}` "
        f"({Feedback.objects.get().created_at.isoformat(timespec='seconds')})\n"
    )
    with pytest.raises(CommandError, match="No user"):
        run("chatkit_export_user", "nobody")


def test_export_user_markdown_without_anything_else(user_factory: Any) -> None:
    user_factory(username="alice")
    markdown = run("chatkit_export_user", "alice", "--format", "markdown")
    assert markdown == (
        "\n---\n\n# Messages in threads of others\n\nNone.\n"
        "\n---\n\n# Attachments\n\nNone.\n"
        "\n---\n\n# Feedback given\n\nNone.\n"
    )


def test_export_user_to_a_file(user_factory: Any, tmp_path: Any) -> None:
    alice = user_factory(username="alice")
    store_thread(alice, [make_user_message("x", "hello")])
    target = tmp_path / "alice.json"
    call_command("chatkit_export_user", "alice", "--output", str(target), stderr=StringIO())
    assert len(export.load_threads(target.read_text())) == 1


@pytest.mark.django_db(transaction=True)  # bytes and signals go on a real commit
def test_erase_user(user_factory: Any) -> None:
    alice = grant_change_thread(user_factory(username="alice"))
    bob = user_factory(username="bob")
    mine = store_thread(alice, [make_user_message("x"), make_assistant_message("x")])
    image = store_image(alice, mine.id)
    theirs = store_thread(bob, [make_user_message("x", "bob asks"), make_assistant_message("x")])
    sent = send_message(alice, theirs.id, make_user_message("x", "alice helps out"))
    store_image(bob, theirs.id, "bob.png")
    answer = ThreadItem.objects.get(thread_id=theirs.id, type="assistant_message").pk
    give_feedback(alice, answer)
    give_feedback(bob, answer, "positive")
    give_feedback(bob, sent.id, "positive")  # on her message: goes with it
    file_name = Attachment.objects.get(pk=image.id).file.name

    out = run("chatkit_erase_user", "alice", "--dry-run")
    assert "1 threads, 2 items, 1 messages in threads of others, 1 attachments, 1 feedback" in out
    assert Thread.objects.count() == 2

    out = run("chatkit_erase_user", "alice", "--noinput")
    assert "Erased for alice" in out
    assert list(Thread.objects.values_list("owner__username", flat=True)) == ["bob"]
    assert set(ThreadItem.objects.values_list("preview", flat=True)) == {"bob asks", "hi"}
    assert list(Attachment.objects.values_list("owner__username", flat=True)) == ["bob"]
    assert list(Feedback.objects.values_list("user__username", "item_id")) == [("bob", answer)]
    assert not get_attachment_storage().exists(file_name)
    assert type(alice).objects.filter(pk=alice.pk).exists()  # the account is the project's


def test_erase_user_asks_first(user_factory: Any, monkeypatch: Any) -> None:
    alice = user_factory(username="alice")
    store_thread(alice, [make_user_message("x")])
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="cancelled"):
        run("chatkit_erase_user", "alice")
    assert Thread.objects.count() == 1
