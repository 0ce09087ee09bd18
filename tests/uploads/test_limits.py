"""``MAX_UPLOAD_BYTES`` per MIME pattern: the most specific pattern wins, on every path.

Direct upload, two-phase upload (raw PUT, chunked PUT, multipart POST), presigned
confirmation on S3, and the reads of stored bytes (content view, model input), each on
local disk and on S3 (moto). A 413 names the limit for the file's type.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from chatkit.store import NotFoundError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory

from chatkit_django import exceptions
from chatkit_django.models import Attachment
from chatkit_django.upload_limits import (
    chatkit_js_max_size,
    largest_upload_bytes,
    max_upload_bytes,
)
from chatkit_django.uploads import UploadTargetView
from tests import ROOT
from tests.chatkit_client import content, put, stored, target_path, upload
from tests.factories import PDF, PNG
from tests.sdk_calls import create_attachment, create_thread, model_input
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db

LIMITS = {"image/*": 1000, "image/gif": 300, "application/pdf": 3000, "*": 500}


def png(size: int) -> bytes:
    return (PNG + b"\x00" * size)[:size]


def pdf(size: int) -> bytes:
    return (PDF + b"x" * size)[:size]


@pytest.fixture
def per_type_limits(settings: Any) -> dict[str, int]:
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": LIMITS}
    return LIMITS


def test_the_most_specific_pattern_wins(settings):
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": LIMITS}
    assert max_upload_bytes("image/png") == 1000  # type/*
    assert max_upload_bytes("image/gif") == 300  # exact, before image/*
    assert max_upload_bytes("application/pdf") == 3000
    assert max_upload_bytes("text/plain") == 500  # *
    assert max_upload_bytes("imagex/png") == 500  # a prefix is not a type
    assert largest_upload_bytes() == 3000
    # Patterns match without regard to case; "*/*" is "*".
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": {"IMAGE/*": 7, "*/*": 9}}
    assert max_upload_bytes("image/png") == 7
    assert max_upload_bytes("text/plain") == 9
    assert chatkit_js_max_size() == {"image/*": 7, "*": 9}
    # No fallback: the default limit, which counts for the largest too.
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": {"application/pdf": 9}}
    assert max_upload_bytes("text/plain") == 20 * 1024 * 1024
    assert largest_upload_bytes() == 20 * 1024 * 1024
    # One number: the same for every type.
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": 1234}
    assert max_upload_bytes("image/png") == max_upload_bytes("text/plain") == 1234
    assert largest_upload_bytes() == chatkit_js_max_size() == 1234


# -- direct upload ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "mime", "limit"),
    [
        ("a.png", png, "image/png", 1000),
        ("a.gif", lambda n: (b"GIF89a" + b"\x00" * n)[:n], "image/gif", 300),
        ("a.pdf", pdf, "application/pdf", 3000),
        ("a.txt", lambda n: b"a" * n, "text/plain", 500),
    ],
)
def test_direct_upload_is_held_to_its_types_limit(
    client, user_factory, attachment_storage, per_type_limits, name, data, mime, limit
):
    client.force_login(user_factory())
    response = upload(client, name=name, data=data(limit + 1), content_type=mime)
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The file is larger than the limit of {limit} bytes for {mime!r} files "
        "(CHATKIT['MAX_UPLOAD_BYTES']).",
        "code": "attachment_too_large",
    }
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []
    # Exactly at its limit: accepted, though it is past the limit of other types.
    response = upload(client, name=name, data=data(limit), content_type=mime)
    assert response.status_code == 201
    assert Attachment.objects.get().size == limit


def test_direct_upload_without_a_declared_type_is_held_to_its_guessed_types_limit(
    client, user_factory, attachment_storage, per_type_limits
):
    client.force_login(user_factory())
    # The part declares no type: guessed from the name, as the attachment's type is.
    response = upload(client, name="a.pdf", data=pdf(2000), content_type="")
    assert response.status_code == 201
    assert Attachment.objects.get().mime_type == "application/pdf"
    response = upload(client, name="b.pdf", data=pdf(3001), content_type="")
    assert response.status_code == 413
    assert "3000 bytes for 'application/pdf' files" in response.json()["detail"]


# -- two-phase upload -----------------------------------------------------------------------


def test_two_phase_declared_size_is_held_to_its_types_limit(
    user_factory, attachment_storage, per_type_limits
):
    user = user_factory()
    with pytest.raises(exceptions.AttachmentTooLarge) as raised:
        create_attachment(user, "a.png", 1001, "image/png")
    assert str(raised.value.detail) == (
        "The file is 1001 bytes, more than the limit of 1000 bytes for 'image/png' files "
        "(CHATKIT['MAX_UPLOAD_BYTES'])."
    )
    assert create_attachment(user, "a.pdf", 2500, "application/pdf")["upload_descriptor"]


@pytest.mark.parametrize("how", ["put", "chunked-put", "multipart-post"])
def test_two_phase_bytes_are_held_to_the_declared_types_limit(
    client, user_factory, attachment_storage, per_type_limits, how
):
    user = user_factory()
    created = create_attachment(user, "a.png", 900, "image/png")
    url = created["upload_descriptor"]["url"]

    def send(data: bytes) -> Any:
        if how == "put":
            return put(client, url, data=data)
        if how == "multipart-post":
            # The part says PDF; the pending attachment's declared type is what counts.
            part = SimpleUploadedFile("a.pdf", data, content_type="application/pdf")
            return client.post(target_path(url), {"file": part})
        request = RequestFactory().put(target_path(url), data, content_type="image/png")
        del request.META["CONTENT_LENGTH"]  # no length to check up front: cut while streaming
        response = UploadTargetView.as_view()(request, attachment_id=created["id"])
        response.render()
        response.json = lambda: json.loads(response.content)
        return response

    response = send(png(1500))  # under the PDF limit and the largest one, over image/png's
    assert response.status_code == 413
    assert "1000 bytes for 'image/png' files" in response.json()["detail"]
    assert stored_names(attachment_storage) == []
    assert Attachment.objects.get().uploaded_at is None
    # The token was given back: the same URL takes bytes within the limit.
    assert send(png(1000)).status_code == 200
    assert Attachment.objects.get().size == 1000


# -- presigned uploads on S3 ----------------------------------------------------------------


def test_presigned_confirmation_is_held_to_the_types_limit(
    client, user_factory, s3_storage_settings, settings
):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "PRESIGNED_UPLOADS": True, "MAX_UPLOAD_BYTES": LIMITS}
    user = user_factory()
    image = create_attachment(user, "a.png", 900, "image/png")
    document = create_attachment(user, "a.pdf", 900, "application/pdf")
    for created, data in ((image, png(1500)), (document, pdf(1500))):
        descriptor = created["upload_descriptor"]
        assert httpx.put(descriptor["url"], content=data, headers=descriptor["headers"]).is_success

    # 1500 bytes: past the image limit, within the PDF one.
    with pytest.raises(NotFoundError):
        create_thread(user, "look", [image["id"]])
    assert Attachment.objects.get(pk=image["id"]).uploaded_at is None
    create_thread(user, "read", [document["id"]])
    assert Attachment.objects.get(pk=document["id"]).size == 1500


# -- reads of stored bytes --------------------------------------------------------------------


def test_reads_are_held_to_the_stored_types_limit(
    client, user_factory, attachment_storage, settings
):
    user = user_factory()
    image = stored(client, user, png(1500), "a.png", "image/png")
    document = stored(client, user, pdf(1500), "a.pdf", "application/pdf")
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": LIMITS}

    response = client.get(f"/chatkit/attachments/{image.pk}/content/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The stored file is larger than the limit of 1000 bytes for 'image/png' files "
        "(CHATKIT['MAX_UPLOAD_BYTES']) and is not served.",
        "code": "stored_file_too_large",
    }
    assert "larger than the upload limit" in model_input(user, image)["text"]

    assert content(client, document.pk)[:2] == (200, pdf(1500))
    assert model_input(user, document)["type"] == "input_file"


def test_image_url_for_the_model_is_held_to_the_types_limit(
    client, user_factory, settings, s3_storage_settings
):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "IMAGE_INPUT_AS_URL": True}
    user = user_factory()
    row = stored(client, user, png(1500), "a.png", "image/png")
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": {"image/*": 2000, "*": 10}}
    assert model_input(user, row)["image_url"].startswith("http://127.0.0.1")
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": {"image/*": 1499, "*": 10**6}}
    assert "larger than the upload limit" in model_input(user, row)["text"]


# -- the guide ----------------------------------------------------------------------------------


def test_the_guides_per_type_example_passes_the_checks_and_means_what_it_says(settings):
    from django.test import override_settings

    from chatkit_django import checks as chatkit_checks
    from chatkit_django.upload_limits import upload_too_large

    guide = (ROOT / "docs/guides/attachments.md").read_text()
    block = re.search(
        r"```python\n(# settings.py: per-type upload limits\n.*?)```", guide, re.DOTALL
    ).group(1)
    namespace: dict[str, Any] = {}
    exec(block, namespace)  # noqa: S102 - the guide's own settings snippet
    chatkit = {**namespace["CHATKIT"], "SERVER_CLASS": "tests.testapp.server.EchoServer"}
    with override_settings(CHATKIT=chatkit):
        assert chatkit_checks.check_settings() == []
        assert max_upload_bytes("image/png") == 10 * 2**20
        assert max_upload_bytes("application/pdf") == 25 * 2**20
        assert max_upload_bytes("text/plain") == 5 * 2**20
        section = guide[guide.index("### Per-type size limits") :]
        documented = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
        error = upload_too_large("image/png")
        assert documented == {"detail": str(error.detail), "code": "attachment_too_large"}
