"""Presigned S3 uploads: the bytes checked on confirmation are the bytes used.

A presigned PUT URL stays valid until it expires, whatever happens to the attachment. These
tests replay it with a real HTTP client against the moto S3 server after the upload was
confirmed and after the attachment was deleted, and make the copy step fail for real.
"""

from __future__ import annotations

import base64
from io import StringIO
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from chatkit_django.attachments import DjangoAttachmentStore, get_attachment_storage
from chatkit_django.models import Attachment
from chatkit_django.store import AttachmentAdapter
from tests.chatkit_client import content
from tests.factories import PNG, make_converter
from tests.sdk_calls import create_attachment, create_thread, sdk_call
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db

HTML = b"<html><script>alert(1)</script>" + b"<p>x</p>" * 25_000  # ~200 KB


@pytest.fixture
def presigned(settings: Any, s3_storage_settings: Any) -> Any:
    """S3 (moto) as the attachment storage, with presigned uploads; returns the storage."""
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "PRESIGNED_UPLOADS": True}
    return get_attachment_storage()


def put(descriptor: dict[str, Any], data: bytes) -> httpx.Response:
    """A PUT as ChatKit.js sends it: straight to S3, with the descriptor's headers."""
    return httpx.put(descriptor["url"], content=data, headers=descriptor["headers"])


def model_input(user: Any, attachment_id: str) -> Any:
    """What the converter gives the model for the attachment."""
    row = Attachment.objects.get(pk=attachment_id)
    converter = make_converter(user)
    return async_to_sync(converter.attachment_to_message_content)(
        AttachmentAdapter.validate_python(row.data)
    )


def png_data_url(data: bytes = PNG) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def uploaded(user: Any, data: bytes = PNG) -> dict[str, Any]:
    """A presigned upload of ``data``, PUT to S3 but not confirmed yet."""
    created = create_attachment(user, "cat.png", len(data), "image/png")
    assert put(created["upload_descriptor"], data).status_code == 200
    return created


def test_presigned_url_writes_the_upload_key_only(user_factory, presigned):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    row = Attachment.objects.get()
    assert row.file.name == f"chatkit/uploads/{created['id']}.png"
    assert f"/chatkit/uploads/{created['id']}.png?" in created["upload_descriptor"]["url"]


def test_replay_after_confirmation_changes_nothing_that_is_read(client, user_factory, presigned):
    user = user_factory()
    created = uploaded(user)
    create_thread(user, "look", [created["id"]])  # confirms the upload
    row = Attachment.objects.get()
    assert row.uploaded_at is not None and row.size == len(PNG)

    # The URL still works until it expires: S3 takes the replayed body...
    assert put(created["upload_descriptor"], HTML).status_code == 200

    # ...but nothing reads it: the content view and the model still get the checked PNG.
    client.force_login(user)
    assert content(client, created["id"])[:2] == (200, PNG)
    assert model_input(user, created["id"])["image_url"] == png_data_url()
    row.refresh_from_db()
    assert row.size == len(PNG)
    with presigned.open(row.file.name, "rb") as f:
        assert f.read() == PNG

    # The row names a copy; the replay landed on the upload key, which nothing reads.
    assert row.file.name.startswith(f"chatkit/{created['id']}_")
    assert row.file.name.endswith(".png")
    assert stored_names(presigned) == sorted(
        [row.file.name, f"chatkit/uploads/{created['id']}.png"]
    )


def test_replay_before_first_use_is_checked_like_the_first_put(client, user_factory, presigned):
    """Before confirmation the last PUT wins; it is what gets checked, copied and served."""
    user = user_factory()
    created = uploaded(user)
    assert put(created["upload_descriptor"], HTML).status_code == 200

    client.force_login(user)
    assert content(client, created["id"])[0] == 404  # refused (not a PNG) and deleted
    assert stored_names(presigned) == []
    assert Attachment.objects.get().uploaded_at is None

    other = PNG + b"\x00" * 10
    assert put(created["upload_descriptor"], other).status_code == 200
    assert content(client, created["id"])[:2] == (200, other)


def test_put_after_delete_leaves_no_claimed_object_and_cleanup_removes_it(
    user_factory, presigned, settings, django_capture_on_commit_callbacks
):
    user = user_factory()
    created = uploaded(user)
    create_thread(user, "look", [created["id"]])
    with django_capture_on_commit_callbacks(execute=True):
        sdk_call(user, {"type": "attachments.delete", "params": {"attachment_id": created["id"]}})
    assert not Attachment.objects.exists()
    assert stored_names(presigned) == []

    assert put(created["upload_descriptor"], HTML).status_code == 200
    stray = f"chatkit/uploads/{created['id']}.png"
    assert stored_names(presigned) == [stray]  # no row claims it, nothing reads it

    # Fresher than UPLOAD_TOKEN_MAX_AGE: its URL may still write, so it is left for later.
    assert "0 stray upload(s)" in cleanup()
    assert stored_names(presigned) == [stray]

    settings.CHATKIT = {**settings.CHATKIT, "UPLOAD_TOKEN_MAX_AGE": 0}
    assert f"stray upload  {stray}" in cleanup("--dry-run")
    assert stored_names(presigned) == [stray]
    assert "1 stray upload(s)" in cleanup()
    assert stored_names(presigned) == []


def test_cleanup_keeps_an_upload_a_pending_attachment_waits_for(user_factory, presigned, settings):
    user = user_factory()
    created = uploaded(user)  # PUT, not used yet: its row names the upload key
    settings.CHATKIT = {**settings.CHATKIT, "UPLOAD_TOKEN_MAX_AGE": 0}
    assert "0 stray upload(s)" in cleanup()
    assert stored_names(presigned) == [f"chatkit/uploads/{created['id']}.png"]

    create_thread(user, "look", [created["id"]])  # still confirms
    assert Attachment.objects.get().uploaded_at is not None


def test_deleting_a_pending_presigned_attachment_deletes_its_upload(
    user_factory, presigned, django_capture_on_commit_callbacks
):
    user = user_factory()
    created = uploaded(user)
    with django_capture_on_commit_callbacks(execute=True):
        sdk_call(user, {"type": "attachments.delete", "params": {"attachment_id": created["id"]}})
    assert stored_names(presigned) == []


def cleanup(*args: str) -> str:
    out = StringIO()
    call_command("chatkit_cleanup", *args, stdout=out)
    return out.getvalue()


def test_failed_copy_leaves_the_row_unconfirmed_and_no_orphan(
    client, user_factory, presigned, monkeypatch
):
    """The upload vanishes just before the copy: S3 refuses it (NoSuchKey)."""
    user = user_factory()
    created = uploaded(user)
    upload_key = f"chatkit/uploads/{created['id']}.png"
    copy = DjangoAttachmentStore.copy_presigned_upload

    def vanish_then_copy(self, storage, row):
        storage.delete(upload_key)
        return copy(self, storage, row)

    monkeypatch.setattr(DjangoAttachmentStore, "copy_presigned_upload", vanish_then_copy)
    client.force_login(user)
    assert content(client, created["id"])[0] == 404
    row = Attachment.objects.get()
    assert row.uploaded_at is None and row.size is None and row.file.name == upload_key
    assert stored_names(presigned) == []

    # The URL may still upload it, and the next look confirms.
    monkeypatch.setattr(DjangoAttachmentStore, "copy_presigned_upload", copy)
    assert put(created["upload_descriptor"], PNG).status_code == 200
    assert content(client, created["id"])[:2] == (200, PNG)


def test_failed_check_of_the_copy_deletes_the_copy(client, user_factory, presigned, monkeypatch):
    """The copy cannot be checked (a storage error): no copy stays, the upload waits."""
    user = user_factory()
    created = uploaded(user)
    upload_key = f"chatkit/uploads/{created['id']}.png"

    def unreachable(self, storage, row, name):
        raise OSError("S3 is unreachable")

    monkeypatch.setattr(DjangoAttachmentStore, "check_presigned_upload", unreachable)
    client.force_login(user)
    assert content(client, created["id"])[0] == 404
    assert Attachment.objects.get().uploaded_at is None
    assert stored_names(presigned) == [upload_key]


def test_put_between_copy_and_confirmation_is_not_what_is_used(
    client, user_factory, presigned, monkeypatch
):
    """The checked copy is what the row names; a PUT racing the confirmation is dropped."""
    user = user_factory()
    created = uploaded(user)
    copy = DjangoAttachmentStore.copy_presigned_upload

    def copy_then_replay(self, storage, row):
        name = copy(self, storage, row)
        assert put(created["upload_descriptor"], HTML).status_code == 200
        return name

    monkeypatch.setattr(DjangoAttachmentStore, "copy_presigned_upload", copy_then_replay)
    client.force_login(user)
    assert content(client, created["id"])[:2] == (200, PNG)
    assert model_input(user, created["id"])["image_url"] == png_data_url()
    assert stored_names(presigned) == [Attachment.objects.get().file.name]


@pytest.mark.parametrize("when", ["before-our-copy", "after-our-copy"])
def test_concurrent_confirmations_keep_one_copy(client, user_factory, presigned, monkeypatch, when):
    """Another request confirms while this one copies: one copy stays, the row's."""
    user = user_factory()
    created = uploaded(user)
    copy = DjangoAttachmentStore.copy_presigned_upload
    raced = []

    def copy_while_another_confirms(self, storage, row):
        if raced:
            return copy(self, storage, row)
        raced.append(True)
        other = DjangoAttachmentStore()
        if when == "before-our-copy":  # our copy then finds no upload key
            assert other.confirm_upload(Attachment.objects.get(pk=row.pk))
            return copy(self, storage, row)
        ours = copy(self, storage, row)  # our update then finds the row confirmed
        assert other.confirm_upload(Attachment.objects.get(pk=row.pk))
        return ours

    monkeypatch.setattr(DjangoAttachmentStore, "copy_presigned_upload", copy_while_another_confirms)
    client.force_login(user)
    assert content(client, created["id"])[:2] == (200, PNG)
    row = Attachment.objects.get()
    assert row.uploaded_at is not None and row.size == len(PNG)
    assert stored_names(presigned) == [row.file.name]
