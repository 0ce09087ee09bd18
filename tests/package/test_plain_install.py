"""A plain install (django-storages, no boto3): attachments work, checks explain, nothing 500s.

``without_boto3`` (tests/no_boto3.py) makes django-storages' S3 module fail to import exactly
as it does without the ``s3`` extra; tests/docs/test_quickstart.py proves it in a real venv.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import FileSystemStorage
from django.test import Client
from django.urls import reverse

from chatkit_django import checks as chatkit_checks
from chatkit_django.attachments import can_presign, get_attachment_storage
from tests.factories import PNG, make_upload

ECHO = "tests.testapp.server.EchoServer"


@pytest.fixture
def local_storage(settings: Any, tmp_path: Any) -> Any:
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return get_attachment_storage()


def test_can_presign_is_false_for_local_storage_and_imports_nothing(
    without_boto3: None, tmp_path: Any
) -> None:
    assert can_presign(FileSystemStorage(location=tmp_path)) is False
    assert "storages.backends.s3" not in sys.modules


@pytest.mark.django_db
def test_image_content_and_preview_are_served(
    without_boto3: None, local_storage: Any, client: Client, user_factory: Any
) -> None:
    client.force_login(user_factory())
    response = client.post(
        reverse("chatkit:upload"),
        {"file": make_upload()},
    )
    assert response.status_code == 201
    attachment = response.json()

    content = client.get(f"/chatkit/attachments/{attachment['id']}/content/")
    assert content.status_code == 200
    assert b"".join(content.streaming_content) == PNG

    # The signed preview URL ChatKit.js and the admin use, without a session.
    preview = urlsplit(attachment["preview_url"])
    anonymous = Client().get(f"{preview.path}?{preview.query}")
    assert anonymous.status_code == 200
    assert anonymous["Content-Type"] == "image/png"
    assert b"".join(anonymous.streaming_content) == PNG


def test_presigned_uploads_on_gives_w004_not_a_crash(without_boto3: None, settings: Any) -> None:
    settings.CHATKIT = {"SERVER_CLASS": ECHO, "PRESIGNED_UPLOADS": True}
    messages = chatkit_checks.check_settings()
    assert [m.id for m in messages] == ["chatkit_django.W004"]
    assert "pip install 'chatkit-django[s3]'" in messages[0].hint
