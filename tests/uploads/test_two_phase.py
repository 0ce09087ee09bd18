"""Two-phase uploads: ``attachments.create`` through the SDK, then the bytes to our upload
target (signed single-use token) or to a presigned S3 PUT."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from chatkit.store import NotFoundError
from django.core import signing
from django.db import transaction
from django.urls import reverse

from chatkit_django import exceptions
from chatkit_django.attachments import UPLOAD_TOKEN_SALT, make_upload_token
from chatkit_django.models import Attachment, ThreadItem
from tests.chatkit_client import content, put, target_path
from tests.factories import PNG, make_upload
from tests.sdk_calls import add_user_message, create_attachment, create_thread, sdk_call
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db


def test_full_two_phase_flow(
    client, user_factory, attachment_storage, django_capture_on_commit_callbacks
):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")

    assert created["type"] == "image"
    descriptor = created["upload_descriptor"]
    assert descriptor["method"] == "PUT"
    assert descriptor["headers"] == {"Content-Type": "image/png"}
    assert descriptor["url"].startswith(
        f"http://testserver/chatkit/attachments/{created['id']}/upload/?token="
    )
    row = Attachment.objects.get(pk=created["id"])
    assert row.owner == user and row.uploaded_at is None and not row.file
    client.force_login(user)
    assert content(client, created["id"])[0] == 404  # no bytes yet

    # ChatKit.js sends the bytes without a session (and without a CSRF token).
    client.logout()
    response = put(client, descriptor["url"])
    assert response.status_code == 200
    assert response.json()["upload_descriptor"] is None
    row.refresh_from_db()
    assert row.uploaded_at is not None and row.size == len(PNG)
    assert row.data["upload_descriptor"] is None
    assert stored_names(attachment_storage) == [row.file.name]

    events = create_thread(user, "look", [created["id"]])
    thread_id = events[0]["thread"]["id"]
    message = next(e["item"] for e in events if e["type"] == "thread.item.done")
    assert message["type"] == "user_message"
    assert [a["id"] for a in message["attachments"]] == [created["id"]]
    assert message["attachments"][0]["thread_id"] == thread_id
    row.refresh_from_db()
    assert row.thread_id == thread_id

    client.force_login(user)
    assert content(client, created["id"])[:2] == (200, PNG)

    with django_capture_on_commit_callbacks(execute=True):
        deleted = sdk_call(
            user, {"type": "attachments.delete", "params": {"attachment_id": created["id"]}}
        )
    assert deleted == {}
    assert not Attachment.objects.filter(pk=created["id"]).exists()
    assert stored_names(attachment_storage) == []


def test_post_multipart_to_the_target(client, user_factory, attachment_storage):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    response = client.post(
        target_path(created["upload_descriptor"]["url"]),
        {"file": make_upload("x.png")},
    )
    assert response.status_code == 200
    row = Attachment.objects.get()
    assert row.uploaded_at is not None and row.size == len(PNG)
    with attachment_storage.open(row.file.name, "rb") as f:
        assert f.read() == PNG


def expired_token(attachment_id: str, owner_pk, nonce: str) -> str:
    class Past(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 16 * 60)

    return Past(salt=UPLOAD_TOKEN_SALT).sign_object(
        {"a": attachment_id, "u": str(owner_pk), "n": nonce}
    )


@pytest.mark.parametrize("case", ["forged", "expired", "other-attachment", "bad-nonce", "missing"])
def test_bad_tokens_are_403_and_store_nothing(client, user_factory, attachment_storage, case):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    other = create_attachment(user, "dog.png", len(PNG), "image/png")
    row = Attachment.objects.get(pk=created["id"])
    path = reverse("chatkit:upload-target", args=[created["id"]])
    token = parse_qs(urlsplit(created["upload_descriptor"]["url"]).query)["token"][0]
    tokens = {
        "forged": token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"),
        "expired": expired_token(row.pk, user.pk, row.upload_nonce),
        "other-attachment": parse_qs(urlsplit(other["upload_descriptor"]["url"]).query)["token"][0],
        "bad-nonce": make_upload_token(row.pk, user.pk, "not-the-nonce"),
        "missing": "",
    }
    client.force_login(user)
    response = client.put(f"{path}?token={tokens[case]}", PNG, content_type="image/png")
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_upload_token"
    row.refresh_from_db()
    assert row.uploaded_at is None and not row.file
    assert stored_names(attachment_storage) == []


def test_token_is_single_use(client, user_factory, attachment_storage):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    url = created["upload_descriptor"]["url"]
    assert put(client, url).status_code == 200
    stored = stored_names(attachment_storage)

    response = put(client, url, data=PNG + b"again")
    assert response.status_code == 403
    assert stored_names(attachment_storage) == stored
    with attachment_storage.open(stored[0], "rb") as f:
        assert f.read() == PNG


def test_another_users_token_is_403(client, user_factory, attachment_storage):
    owner, other = user_factory(), user_factory()
    created = create_attachment(owner, "cat.png", len(PNG), "image/png")
    client.force_login(other)
    response = put(client, created["upload_descriptor"]["url"])
    assert response.status_code == 403
    assert not Attachment.objects.get().uploaded_at
    assert stored_names(attachment_storage) == []


def test_uploading_to_another_users_attachment_without_token_is_404(
    client, user_factory, attachment_storage
):
    owner, other = user_factory(), user_factory()
    created = create_attachment(owner, "cat.png", len(PNG), "image/png")
    client.force_login(other)
    path = reverse("chatkit:upload-target", args=[created["id"]])
    response = client.put(path, PNG, content_type="image/png")
    assert response.status_code == 404
    assert client.put(reverse("chatkit:upload-target", args=["atc_nope"]), PNG).status_code == 404


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (PNG + b"\x00" * 1000, 413, "attachment_too_large"),
        (b"GIF89a" + b"\x00" * 50, 400, "content_mismatch"),
        (b"", 400, "empty_file"),
    ],
    ids=["too-large", "not-a-png", "empty"],
)
def test_bad_bytes_keep_the_token_for_a_retry(
    client, user_factory, attachment_storage, settings, data, status, code
):
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": 1000}
    user = user_factory()
    created = create_attachment(user, "cat.png", 900, "image/png")
    response = put(client, created["upload_descriptor"]["url"], data=data)
    assert response.status_code == status
    assert response.json()["code"] == code
    row = Attachment.objects.get()
    assert row.uploaded_at is None and not row.file
    assert stored_names(attachment_storage) == []

    assert put(client, created["upload_descriptor"]["url"], data=PNG[:900]).status_code == 200


def test_too_large_without_content_length_stops_while_streaming(
    user_factory, attachment_storage, settings
):
    """A chunked body has no Content-Length to check up front: the stream is cut at the limit."""
    from django.test import RequestFactory

    from chatkit_django.uploads import UploadTargetView

    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": 1000}
    user = user_factory()
    created = create_attachment(user, "cat.png", 900, "image/png")
    request = RequestFactory().put(
        target_path(created["upload_descriptor"]["url"]),
        PNG * 10,
        content_type="image/png",
    )
    del request.META["CONTENT_LENGTH"]
    response = UploadTargetView.as_view()(request, attachment_id=created["id"])
    assert response.status_code == 413
    assert stored_names(attachment_storage) == []
    assert Attachment.objects.get().uploaded_at is None


def test_storage_failure_leaves_the_attachment_without_bytes(client, user_factory, failing_storage):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    response = put(client, created["upload_descriptor"]["url"])
    assert response.status_code == 503
    row = Attachment.objects.get()
    assert row.uploaded_at is None and not row.file and row.size is None
    assert stored_names(failing_storage) == []
    with pytest.raises(NotFoundError):
        create_thread(user, "look", [row.pk])
    assert not ThreadItem.objects.filter(type="user_message").exists()


@pytest.mark.parametrize(
    ("params", "exc"),
    [
        ({"name": "a.exe", "size": 10, "mime_type": "application/x-msdownload"}, "Unsupported"),
        ({"name": "a.png", "size": 10**12, "mime_type": "image/png"}, "TooLarge"),
        ({"name": "a.png", "size": 0, "mime_type": "image/png"}, "Empty"),
    ],
)
def test_create_refuses_bad_metadata(user_factory, attachment_storage, params, exc):
    expected = {
        "Unsupported": exceptions.UnsupportedAttachmentType,
        "TooLarge": exceptions.AttachmentTooLarge,
        "Empty": exceptions.EmptyFile,
    }[exc]
    with pytest.raises(expected):
        create_attachment(user_factory(), **params)
    assert not Attachment.objects.exists()


def test_pending_attachment_cannot_be_attached(user_factory, attachment_storage):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    with pytest.raises(NotFoundError, match="no uploaded content"):
        create_thread(user, "look", [created["id"]])
    assert Attachment.objects.get().thread_id is None
    assert not ThreadItem.objects.filter(type="user_message").exists()


def test_other_users_attachment_cannot_be_attached(client, user_factory, attachment_storage):
    owner, other = user_factory(), user_factory()
    created = create_attachment(owner, "cat.png", len(PNG), "image/png")
    assert put(client, created["upload_descriptor"]["url"]).status_code == 200

    with pytest.raises(NotFoundError):
        create_thread(other, "mine now", [created["id"]])
    events = create_thread(other, "hello", [])
    thread_id = events[0]["thread"]["id"]
    with pytest.raises(NotFoundError):
        add_user_message(other, thread_id, "mine now", [created["id"]])

    assert Attachment.objects.get().thread_id is None
    assert not any(
        i.data.get("attachments") for i in ThreadItem.objects.filter(type="user_message")
    )


def test_other_users_attachment_cannot_be_deleted(client, user_factory, attachment_storage):
    owner, other = user_factory(), user_factory()
    created = create_attachment(owner, "cat.png", len(PNG), "image/png")
    assert put(client, created["upload_descriptor"]["url"]).status_code == 200
    # The same answer as for a missing attachment (deleting is idempotent); nothing deleted.
    answer = sdk_call(
        other, {"type": "attachments.delete", "params": {"attachment_id": created["id"]}}
    )
    assert answer == sdk_call(
        other, {"type": "attachments.delete", "params": {"attachment_id": "atc_missing"}}
    )
    assert answer == {}
    assert Attachment.objects.filter(pk=created["id"]).exists()
    assert len(stored_names(attachment_storage)) == 1


@pytest.mark.django_db(transaction=True)
def test_rolled_back_delete_keeps_the_bytes(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    attachment_id = client.post(
        reverse("chatkit:upload"),
        {"file": make_upload("a.png")},
    ).json()["id"]
    name = Attachment.objects.get().file.name

    with pytest.raises(RuntimeError), transaction.atomic():
        Attachment.objects.filter(pk=attachment_id).delete()
        raise RuntimeError("roll back")
    assert attachment_storage.exists(name)

    with transaction.atomic():
        Attachment.objects.filter(pk=attachment_id).delete()
        assert attachment_storage.exists(name)  # not before the commit
    assert not attachment_storage.exists(name)


def test_deleting_a_thread_deletes_its_attachments_bytes(
    client, user_factory, attachment_storage, django_capture_on_commit_callbacks
):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    assert put(client, created["upload_descriptor"]["url"]).status_code == 200
    thread_id = create_thread(user, "look", [created["id"]])[0]["thread"]["id"]
    with django_capture_on_commit_callbacks(execute=True):
        sdk_call(user, {"type": "threads.delete", "params": {"thread_id": thread_id}})
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


def test_loads_present_fresh_preview_urls(client, user_factory, attachment_storage, settings):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    assert put(client, created["upload_descriptor"]["url"]).status_code == 200
    thread_id = create_thread(user, "look", [created["id"]])[0]["thread"]["id"]
    # Whatever URL the stored JSON holds, an expired one say, is never what a load returns.
    item = ThreadItem.objects.get(type="user_message")
    item.data["attachments"][0]["preview_url"] = "https://stale.example/old"
    item.save()
    settings.CHATKIT = {**settings.CHATKIT, "BASE_URL": "https://chat.example.com"}

    thread = sdk_call(user, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
    items = sdk_call(user, {"type": "items.list", "params": {"thread_id": thread_id}})
    for loaded in (thread["items"]["data"], items["data"]):
        message = next(i for i in loaded if i["type"] == "user_message")
        url = message["attachments"][0]["preview_url"]
        assert url.startswith(f"https://chat.example.com/chatkit/attachments/{created['id']}/")
        client.logout()
        path = url.removeprefix("https://chat.example.com")
        assert content(client, path)[:2] == (200, PNG)


def test_presigned_s3_upload(client, user_factory, s3_storage_settings, settings):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "PRESIGNED_UPLOADS": True}
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    descriptor = created["upload_descriptor"]
    endpoint = s3_storage_settings["OPTIONS"]["endpoint_url"]
    assert descriptor["method"] == "PUT"
    assert descriptor["url"].startswith(endpoint)
    assert "X-Amz-Signature=" in descriptor["url"]

    # Bytes go straight to S3, with a real HTTP client.
    response = httpx.put(descriptor["url"], content=PNG, headers=descriptor["headers"])
    assert response.status_code == 200

    # The app confirms the upload when the attachment is first used.
    events = create_thread(user, "look", [created["id"]])
    message = next(e["item"] for e in events if e["type"] == "thread.item.done")
    assert message["attachments"][0]["id"] == created["id"]
    row = Attachment.objects.get()
    assert row.uploaded_at is not None and row.size == len(PNG)
    client.force_login(user)
    assert content(client, created["id"])[:2] == (200, PNG)


@pytest.mark.parametrize("bad", ["not-a-png", "too-large"])
def test_presigned_upload_of_bad_bytes_is_refused_and_deleted(
    client, user_factory, s3_storage_settings, settings, bad
):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "PRESIGNED_UPLOADS": True, "MAX_UPLOAD_BYTES": 2000}
    user = user_factory()
    created = create_attachment(user, "cat.png", 1000, "image/png")
    data = b"<html>" * 100 if bad == "not-a-png" else PNG + b"\x00" * 2000
    descriptor = created["upload_descriptor"]
    assert httpx.put(descriptor["url"], content=data, headers=descriptor["headers"]).is_success

    with pytest.raises(NotFoundError):
        create_thread(user, "look", [created["id"]])
    from chatkit_django.attachments import get_attachment_storage

    assert stored_names(get_attachment_storage()) == []
    assert Attachment.objects.get().uploaded_at is None


def test_upload_target_query_count(
    client, user_factory, attachment_storage, django_assert_num_queries
):
    created = create_attachment(user_factory(), "cat.png", len(PNG), "image/png")
    # Spend the token (UPDATE), read the row, record the upload (UPDATE).
    with django_assert_num_queries(3):
        assert put(client, created["upload_descriptor"]["url"]).status_code == 200
