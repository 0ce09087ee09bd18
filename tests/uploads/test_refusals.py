"""Odd and racing input to the upload views: JSON errors, no 500s, nothing left behind.

Found by a review of ``uploads.py``: a pending attachment deleted while its bytes stream in,
MIME types that are not MIME types, ids PostgreSQL cannot store, and Django's own multipart
limits. Every case runs on SQLite and PostgreSQL (``make test`` runs both).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.models import Attachment
from tests.factories import PNG, make_upload
from tests.sdk_calls import create_attachment, sdk_call
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db


def target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_an_attachment_deleted_while_its_bytes_stream_in_leaves_no_file(
    client, user_factory, attachment_storage, monkeypatch
):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    save = DjangoAttachmentStore.save_bytes

    def save_while_the_user_deletes(self, storage, name, content, mime_type):
        # The user removes the attachment from the composer while its bytes arrive.
        sdk_call(user, {"type": "attachments.delete", "params": {"attachment_id": created["id"]}})
        return save(self, storage, name, content, mime_type)

    monkeypatch.setattr(DjangoAttachmentStore, "save_bytes", save_while_the_user_deletes)
    response = client.put(
        target(created["upload_descriptor"]["url"]), PNG, content_type="image/png"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


def test_an_attachment_deleted_just_after_its_token_was_spent_is_404(
    client, user_factory, attachment_storage, monkeypatch
):
    user = user_factory()
    created = create_attachment(user, "cat.png", len(PNG), "image/png")
    store_bytes = DjangoAttachmentStore.store_pending_bytes

    def deleted_first(self, attachment_id, read_content, request):
        Attachment.objects.filter(pk=attachment_id).delete()
        return store_bytes(self, attachment_id, read_content, request)

    monkeypatch.setattr(DjangoAttachmentStore, "store_pending_bytes", deleted_first)
    response = client.put(
        target(created["upload_descriptor"]["url"]), PNG, content_type="image/png"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert stored_names(attachment_storage) == []


BAD_TYPES = {
    "header-injection": "text/plain\r\nX-Evil: 1",
    "nul": "text/pl\x00ain",
    "overlong": "text/" + "x" * 300,
    "space": "text/ plain",
}


@pytest.mark.parametrize("mime_type", BAD_TYPES.values(), ids=BAD_TYPES.keys())
def test_a_declared_type_that_is_not_a_mime_type_is_415(client, user_factory, mime_type):
    # text/* is allowed, and each of these starts with "text/".
    client.force_login(user_factory())
    payload = {
        "type": "attachments.create",
        "params": {"name": "a.txt", "size": 5, "mime_type": mime_type},
    }
    response = client.post(reverse("chatkit:endpoint"), json.dumps(payload), "application/json")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_attachment_type"
    assert not Attachment.objects.exists()


def multipart_body(part_content_type: bytes) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: " + part_content_type + b"\r\n\r\nhello\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    "part_type", [b"text/pl\x00ain", b"text/" + b"x" * 300], ids=["nul", "overlong"]
)
def test_a_direct_upload_with_a_malformed_part_type_is_415(
    client, user_factory, attachment_storage, part_type
):
    client.force_login(user_factory())
    response = client.generic(
        "POST",
        reverse("chatkit:upload"),
        multipart_body(part_type),
        content_type="multipart/form-data; boundary=B",
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_attachment_type"
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


@pytest.mark.parametrize("view", ["attachment-content", "upload-target"])
@pytest.mark.parametrize("attachment_id", ["atc\x00x", "atc_" + "x" * 300], ids=["nul", "long"])
def test_ids_no_row_can_have_are_404(client, user_factory, view, attachment_id):
    client.force_login(user_factory())
    url = reverse(f"chatkit:{view}", args=[attachment_id])
    if view == "attachment-content":
        response = client.get(url)
    else:
        response = client.put(url, b"x", content_type="text/plain")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize("case", ["too-many-files", "big-form-field"])
def test_djangos_multipart_limits_are_answered_as_json(
    client, user_factory, attachment_storage, case
):
    client.force_login(user_factory())
    data = {"file": make_upload("a.png")}
    if case == "too-many-files":  # DATA_UPLOAD_MAX_NUMBER_FILES: 100
        data |= {f"f{i}": SimpleUploadedFile(f"{i}.png", PNG) for i in range(101)}
        expected = (400, "bad_request")
    else:  # DATA_UPLOAD_MAX_MEMORY_SIZE: 2.5 MB of form fields
        data["note"] = "y" * (3 * 1024 * 1024)
        expected = (413, "request_too_large")
    response = client.post(reverse("chatkit:upload"), data)
    assert (response.status_code, response.json()["code"]) == expected
    assert response["Content-Type"] == "application/json"
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []


BROWSER_ACCEPT = "text/html,application/xhtml+xml"


@pytest.mark.parametrize("method", ["get", "put"])
def test_a_browser_gets_405_not_406(client, user_factory, method):
    # Opening /chatkit/upload/ in a browser: the answer is the method, whatever Accept says.
    client.force_login(user_factory())
    response = getattr(client, method)(reverse("chatkit:upload"), HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "method_not_allowed"
    # And the view's own errors are JSON too.
    response = client.post(reverse("chatkit:upload"), {}, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert (response.status_code, response.json()["code"]) == (400, "no_file")
