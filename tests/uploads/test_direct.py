"""Direct uploads (multipart POST to ``chatkit:upload``) and the content view, on local disk
and on S3 (moto)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from chatkit_django.models import Attachment
from tests.chatkit_client import content, upload
from tests.factories import PDF, PNG
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db


def test_direct_upload_stores_bytes_and_answers_attachment_json(
    client, user_factory, attachment_storage
):
    user = user_factory()
    client.force_login(user)

    response = upload(client)

    assert response.status_code == 201
    body = response.json()
    assert body["type"] == "image"
    assert body["name"] == "cat.png"
    assert body["mime_type"] == "image/png"
    assert body["upload_descriptor"] is None
    assert "metadata" not in body
    assert body["preview_url"].startswith("http://testserver/chatkit/attachments/")
    row = Attachment.objects.get(pk=body["id"])
    assert row.owner == user
    assert row.size == len(PNG)
    assert row.uploaded_at is not None
    assert row.file.name == f"chatkit/{row.pk}.png"
    assert stored_names(attachment_storage) == [row.file.name]
    with attachment_storage.open(row.file.name, "rb") as f:
        assert f.read() == PNG

    code, data, headers = content(client, row.pk)
    assert (code, data) == (200, PNG)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline")


def test_non_image_is_a_file_attachment_served_as_download(
    client, user_factory, attachment_storage
):
    client.force_login(user_factory())
    response = upload(client, name="report.pdf", data=PDF, content_type="application/pdf")
    assert response.status_code == 201
    body = response.json()
    assert body["type"] == "file" and "preview_url" not in body

    code, data, headers = content(client, body["id"])
    assert (code, data) == (200, PDF)
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == 'attachment; filename="report.pdf"'


def test_content_headers(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    attachment_id = upload(client).json()["id"]
    response = client.get(reverse("chatkit:attachment-content", args=[attachment_id]))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["Cache-Control"].startswith("private")
    if response.status_code == 302:
        location = urlsplit(response["Location"])
        query = parse_qs(location.query)
        assert query["response-content-type"] == ["image/png"]
        assert int(query["X-Amz-Expires"][0]) == 300
    else:
        assert response.status_code == 200
        assert response["Content-Length"] == str(len(PNG))
        response.close()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b""}, 400, "empty_file"),
        ({"content_type": "application/x-msdownload", "name": "a.exe"}, 415, None),
        ({"data": b"<svg onload=alert(1)>" * 10}, 400, "content_mismatch"),
        ({"content_type": "image/jpeg", "name": "cat.jpg"}, 400, "content_mismatch"),
    ],
    ids=["empty", "mime-not-allowed", "not-a-png", "png-declared-as-jpeg"],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    client, user_factory, attachment_storage, kwargs, status, code
):
    client.force_login(user_factory())
    response = upload(client, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == (code or "unsupported_attachment_type")
    assert body["detail"]
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


def test_no_file_field(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    response = client.post(reverse("chatkit:upload"), {"other": "x"})
    assert response.status_code == 400
    assert response.json()["code"] == "no_file"
    assert not Attachment.objects.exists()


def test_not_multipart_is_415(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    response = client.post(reverse("chatkit:upload"), PNG, content_type="image/png")
    assert response.status_code == 415
    assert not Attachment.objects.exists()


def test_too_large_is_413_and_nothing_is_stored(client, user_factory, attachment_storage, settings):
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": 1000}
    client.force_login(user_factory())
    response = upload(client, data=PNG + b"\x00" * 1000)
    assert response.status_code == 413
    assert response.json()["code"] == "attachment_too_large"
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []
    # Exactly at the limit is fine.
    assert upload(client, data=PNG[:1000]).status_code == 201


def test_mime_wildcards(client, user_factory, attachment_storage, settings):
    settings.CHATKIT = {**settings.CHATKIT, "ALLOWED_MIME_TYPES": ["image/*"]}
    client.force_login(user_factory())
    assert upload(client).status_code == 201
    response = upload(client, name="a.pdf", data=PDF, content_type="application/pdf")
    assert response.status_code == 415


def test_unsafe_file_name_is_display_only(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    response = upload(client, name="../../etc/pass\x00wd\r\n.png")
    assert response.status_code == 201
    row = Attachment.objects.get()
    assert row.file.name == f"chatkit/{row.pk}.png"
    assert ".." not in row.file.name
    assert row.name == response.json()["name"]
    assert "\x00" not in row.name and "\n" not in row.name and "\r" not in row.name
    code, data, headers = content(client, row.pk)
    assert (code, data) == (200, PNG)
    assert "\n" not in headers["Content-Disposition"]


def test_anonymous_cannot_upload(client, attachment_storage):
    response = upload(client)
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


def test_session_upload_needs_csrf(user_factory, attachment_storage):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user_factory())
    response = upload(client)
    assert response.status_code == 403
    assert not Attachment.objects.exists()


@override_settings(MIDDLEWARE=[])
def test_session_uploads_work_without_middleware(user_factory, attachment_storage):
    """The deploy guide lets ChatKit workers run without sync middleware: the upload views
    find the session user the way the endpoint does, and still ask for the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_factory())

    assert upload(client).status_code == 403  # no CSRF token
    assert not Attachment.objects.exists()

    token = "t" * 32
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    response = upload(client, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    code, data, _ = content(client, response.json()["id"])
    assert (code, data) == (200, PNG)


def test_storage_failure_mid_upload_leaves_no_row_and_no_bytes(
    client, user_factory, failing_storage
):
    client.force_login(user_factory())
    response = upload(client)
    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable"
    assert not Attachment.objects.exists()
    assert stored_names(failing_storage) == []


def test_other_users_attachment_is_404_and_permission_grants_read(
    client, user_factory, attachment_storage
):
    from django.contrib.auth.models import Permission

    owner, other = user_factory(), user_factory()
    client.force_login(owner)
    attachment_id = upload(client).json()["id"]

    client.force_login(other)
    response = client.get(reverse("chatkit:attachment-content", args=[attachment_id]))
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
    missing = client.get(reverse("chatkit:attachment-content", args=["atc_missing"]))
    assert missing.json() == response.json()

    other.user_permissions.add(Permission.objects.get(codename="view_attachment"))
    other = type(other).objects.get(pk=other.pk)  # drop the permission cache
    client.force_login(other)
    assert content(client, attachment_id)[:2] == (200, PNG)


def test_preview_url_grants_short_lived_read_without_a_session(
    client, user_factory, attachment_storage, settings
):
    client.force_login(user_factory())
    body = upload(client).json()
    preview = body["preview_url"]
    client.logout()

    assert content(client, preview)[:2] == (200, PNG)

    bare = reverse("chatkit:attachment-content", args=[body["id"]])
    assert client.get(bare).status_code == 403  # no session, no signature
    forged = client.get(bare, {"sig": "x" + parse_qs(urlsplit(preview).query)["sig"][0]})
    assert forged.status_code == 403
    assert forged.json()["code"] == "invalid_signature"


def test_preview_signature_is_bound_to_its_attachment(client, user_factory, attachment_storage):
    client.force_login(user_factory())
    first = upload(client).json()
    second = upload(client).json()
    client.logout()
    sig = parse_qs(urlsplit(first["preview_url"]).query)["sig"][0]
    response = client.get(reverse("chatkit:attachment-content", args=[second["id"]]), {"sig": sig})
    assert response.status_code == 403


def test_expired_preview_signature(client, user_factory, attachment_storage, monkeypatch):
    import time

    from django.core import signing

    client.force_login(user_factory())
    body = upload(client).json()
    client.logout()
    real = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real() + 301)
    assert content(client, body["preview_url"])[0] == 403


def test_base_url_setting_makes_preview_urls(client, user_factory, attachment_storage, settings):
    settings.CHATKIT = {**settings.CHATKIT, "BASE_URL": "https://chat.example.com/"}
    client.force_login(user_factory())
    body = upload(client).json()
    assert body["preview_url"].startswith(
        f"https://chat.example.com/chatkit/attachments/{body['id']}/content/?sig="
    )


def test_query_counts_do_not_depend_on_the_file(
    client, user_factory, attachment_storage, django_assert_num_queries
):
    client.force_login(user_factory())
    # Session, user, INSERT; whatever the file's size.
    for data in (PNG, PNG * 50):
        with django_assert_num_queries(3):
            attachment_id = upload(client, data=data).json()["id"]
    # Session, user, the attachment.
    with django_assert_num_queries(3):
        response = client.get(reverse("chatkit:attachment-content", args=[attachment_id]))
    response.close()


@pytest.fixture
def object_grants():
    """Grants through the object-permission backend of tests/testapp/permissions.py."""
    from tests.testapp import permissions

    permissions.GRANTS.clear()
    yield permissions.grant
    permissions.GRANTS.clear()


def test_object_permission_grants_read_of_that_attachment_only(
    client, user_factory, attachment_storage, object_grants
):
    owner, support = user_factory(), user_factory()
    client.force_login(owner)
    first = upload(client).json()["id"]
    second = upload(client).json()["id"]
    object_grants(support, "chatkit_django.view_attachment", Attachment.objects.get(pk=first))

    client.force_login(support)
    assert content(client, first)[:2] == (200, PNG)
    assert content(client, second)[0] == 404


def test_object_permission_grants_delete_through_the_sdk(
    client, user_factory, attachment_storage, object_grants, django_capture_on_commit_callbacks
):
    from tests.sdk_calls import sdk_call

    owner, support = user_factory(), user_factory()
    client.force_login(owner)
    attachment_id = upload(client).json()["id"]
    row = Attachment.objects.get(pk=attachment_id)
    object_grants(support, "chatkit_django.delete_attachment", row)

    with django_capture_on_commit_callbacks(execute=True):
        deleted = sdk_call(
            support, {"type": "attachments.delete", "params": {"attachment_id": attachment_id}}
        )
    assert deleted == {}
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


def test_drf_token_authentication_uploads_without_csrf(user_factory, attachment_storage, settings):
    from django.test import Client
    from rest_framework.authtoken.models import Token

    settings.CHATKIT = {
        **settings.CHATKIT,
        "AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    }
    user = user_factory()
    token = Token.objects.create(user=user)
    client = Client(enforce_csrf_checks=True)
    response = upload(client, headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 201
    assert Attachment.objects.get().owner == user

    response = upload(client, headers={"Authorization": "Token nope"})
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert Attachment.objects.count() == 1


def test_content_is_streamed_asynchronously_under_asgi(client, user_factory, settings, tmp_path):
    """Under ASGI Django would read a synchronous file iterator whole into memory first."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    from chatkit_django.uploads import AttachmentContentView

    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    user = user_factory()
    client.force_login(user)
    data = PNG * 300  # several chunks
    attachment_id = upload(client, data=data).json()["id"]
    request = AsyncRequestFactory().get(f"/chatkit/attachments/{attachment_id}/content/")
    request.user = user
    response = AttachmentContentView.as_view()(request, attachment_id=attachment_id)

    assert response.is_async
    assert response["Content-Length"] == str(len(data))

    async def read() -> list[bytes]:
        return [chunk async for chunk in response]

    chunks = async_to_sync(read)()
    response.close()
    assert len(chunks) > 1
    assert b"".join(chunks) == data
