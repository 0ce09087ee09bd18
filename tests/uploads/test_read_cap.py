"""Every read of attachment bytes stops at ``MAX_UPLOAD_BYTES``.

Bytes are checked against the limit when they arrive; a stored file found larger later
(replaced out of band, or the limit lowered) is refused, never read or served whole.
Images and PDFs are refused (a truncated one is garbage); text is cut, as it already is at
``ATTACHMENT_TEXT_MAX_CHARS``.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.uploads import AttachmentContentView
from tests.chatkit_client import content, stored
from tests.factories import PDF, PNG
from tests.sdk_calls import model_input

pytestmark = pytest.mark.django_db

BIG_PNG = PNG + b"\x00" * 3000


def lower_limit(settings: Any, limit: int) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": limit}


@pytest.mark.parametrize(("data", "mime"), [(BIG_PNG, "image/png"), (PDF * 8, "application/pdf")])
def test_content_view_refuses_stored_bytes_past_the_limit(
    client, user_factory, attachment_storage, settings, data, mime
):
    row = stored(client, user_factory(), data, "f", mime)
    lower_limit(settings, len(data) - 1)

    response = client.get(f"/chatkit/attachments/{row.pk}/content/")
    assert response.status_code == 409  # on S3 too: no redirect to the whole object
    assert response.json()["code"] == "stored_file_too_large"

    lower_limit(settings, len(data))  # at the limit exactly: served
    assert content(client, row.pk)[:2] == (200, data)


def test_streaming_stops_at_the_limit_even_if_the_file_grew_after_the_check(
    client, user_factory, settings, tmp_path, monkeypatch
):
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    row = stored(client, user_factory(), BIG_PNG, "a.png", "image/png")
    lower_limit(settings, 1000)
    # The size check saw 1000 bytes; the file has grown since.
    monkeypatch.setattr(AttachmentContentView, "check_size", lambda self, row: 1000)

    status, body, headers = content(client, row.pk)
    assert status == 200
    assert body == BIG_PNG[:1000]
    assert headers["Content-Length"] == "1000"


@pytest.mark.parametrize(
    ("data", "name", "mime"),
    [(BIG_PNG, "a.png", "image/png"), (PDF * 8, "a.pdf", "application/pdf")],
)
def test_converter_notes_stored_bytes_past_the_limit(
    client, user_factory, attachment_storage, settings, data, name, mime
):
    user = user_factory()
    row = stored(client, user, data, name, mime)
    lower_limit(settings, len(data) - 1)

    part = model_input(user, row)
    assert part["type"] == "input_text"
    assert "larger than the upload limit" in part["text"]
    assert name in part["text"]

    lower_limit(settings, len(data))
    assert model_input(user, row)["type"] in {"input_image", "input_file"}


def test_reads_ask_the_storage_for_at_most_the_limit(
    client, user_factory, attachment_storage, settings, monkeypatch
):
    """A ranged GET on S3, a bounded read on disk: never the whole object."""
    from chatkit_django import attachments

    user = user_factory()
    row = stored(client, user, BIG_PNG, "a.png", "image/png")
    lower_limit(settings, 1000)
    asked = []
    read_start = attachments.read_start

    def spy(storage, name, size):
        asked.append(size)
        return read_start(storage, name, size)

    monkeypatch.setattr(attachments, "read_start", spy)
    with pytest.raises(Exception, match="larger than"):
        DjangoAttachmentStore().read_bytes(row)
    assert asked == [1001]


def test_text_past_the_limit_is_cut_not_refused(client, user_factory, attachment_storage, settings):
    user = user_factory()
    row = stored(client, user, b"a" * 3000, "notes.txt", "text/plain")
    lower_limit(settings, 1000)

    part = model_input(user, row)
    assert "a" * 1000 in part["text"] and "a" * 1001 not in part["text"]
    assert "[Truncated" in part["text"]


def test_image_url_is_not_handed_out_past_the_limit(
    client, user_factory, settings, s3_storage_settings
):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "IMAGE_INPUT_AS_URL": True}
    user = user_factory()
    row = stored(client, user, BIG_PNG, "a.png", "image/png")
    assert model_input(user, row)["image_url"].startswith("http://127.0.0.1")

    lower_limit(settings, len(BIG_PNG) - 1)
    part = model_input(user, row)
    assert "larger than the upload limit" in part["text"]
