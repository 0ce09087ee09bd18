"""Attachments through a real uvicorn process: uploads streamed by an HTTP client, previews
fetched without a session, the two-phase flow through the endpoint. Local disk and S3."""

from __future__ import annotations

import json

import httpx
import pytest
from django.test import Client

from chatkit_django.models import Attachment
from tests.chatkit_client import ENDPOINT, parse_sse
from tests.factories import PNG
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.live

BIG_PNG = PNG + bytes(range(256)) * 4096 * 3  # ~3 MB: past FILE_UPLOAD_MAX_MEMORY_SIZE


@pytest.fixture
def server(live_server_factory, settings, attachment_storage):
    """A live server sharing the test's attachment storage."""
    return live_server_factory(
        env={"CHATKIT_TEST_STORAGE": json.dumps(settings.STORAGES["chatkit"])}
    )


@pytest.fixture
def browser(user_factory):
    """An httpx client with a logged-in session and its CSRF token."""
    client = Client()
    user = user_factory()
    client.force_login(user)
    token = "c" * 32
    with httpx.Client(
        cookies={"sessionid": client.cookies["sessionid"].value, "csrftoken": token},
        headers={"X-CSRFToken": token},
        timeout=60,
    ) as http:
        http.user = user
        yield http


def chunks(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_direct_upload_and_preview(server, browser, attachment_storage):
    response = browser.post(
        f"{server}/chatkit/upload/", files={"file": ("big.png", BIG_PNG, "image/png")}
    )
    assert response.status_code == 201, response.text
    attachment = response.json()
    assert attachment["preview_url"].startswith(f"{server}/chatkit/attachments/")
    row = Attachment.objects.get()
    assert row.size == len(BIG_PNG)

    # An <img> has no session: the preview URL alone must work (and redirect on S3).
    fetched = httpx.get(attachment["preview_url"], follow_redirects=True, timeout=60)
    assert fetched.status_code == 200
    assert fetched.content == BIG_PNG
    assert fetched.headers["Content-Type"] == "image/png"

    unsigned = httpx.get(f"{server}/chatkit/attachments/{row.pk}/content/", timeout=60)
    assert unsigned.status_code == 403


def test_two_phase_flow_through_the_endpoint(server, browser, attachment_storage):
    created = browser.post(
        f"{server}{ENDPOINT}",
        json={
            "type": "attachments.create",
            "params": {"name": "big.png", "size": len(BIG_PNG), "mime_type": "image/png"},
        },
    )
    assert created.status_code == 200, created.text
    attachment = created.json()
    descriptor = attachment["upload_descriptor"]
    assert descriptor["url"].startswith(f"{server}/chatkit/attachments/")

    # ChatKit.js sends the body as it reads the file, without a session.
    uploaded = httpx.put(
        descriptor["url"],
        content=chunks(BIG_PNG),
        headers={**descriptor["headers"], "Content-Length": str(len(BIG_PNG))},
        timeout=60,
    )
    assert uploaded.status_code == 200, uploaded.text
    again = httpx.put(descriptor["url"], content=BIG_PNG, headers=descriptor["headers"])
    assert again.status_code == 403

    with browser.stream(
        "POST",
        f"{server}{ENDPOINT}",
        json={
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "look"}],
                    "attachments": [attachment["id"]],
                    "inference_options": {},
                }
            },
        },
    ) as response:
        assert response.status_code == 200
        events = parse_sse(response.read())
    message = events[1]["item"]
    assert message["attachments"][0]["id"] == attachment["id"]
    assert message["attachments"][0]["thread_id"] == events[0]["thread"]["id"]

    deleted = browser.post(
        f"{server}{ENDPOINT}",
        json={"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
    )
    assert deleted.status_code == 200
    assert not Attachment.objects.exists()
    assert stored_names(attachment_storage) == []
