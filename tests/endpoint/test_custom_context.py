"""A project's own context type works on every attachment path.

``AccountContext`` (tests/testapp/access.py) has neither ``user`` nor ``request``:
``AccountStore.get_user`` / ``get_request`` find them. The attachment store, the upload
views (through ``CHATKIT['CONTEXT_FACTORY']``), previews and the response stream converter
must all ask those hooks instead of reading ``context.user`` / ``context.request``.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import RequestFactory
from django.urls import reverse

from chatkit_django.models import Attachment
from chatkit_django.server import get_server
from tests.chatkit_client import answer
from tests.factories import PNG, make_upload
from tests.testapp.access import account_context

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _account_context(settings: Any, tmp_path: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.CHATKIT = {
        **settings.CHATKIT,
        "STORE_CLASS": "tests.testapp.access.AccountStore",
        "CONTEXT_FACTORY": "tests.testapp.access.account_context",
    }


def signed(url: str) -> bool:
    parts = urlsplit(url)
    return parts.netloc == "testserver" and "sig" in parse_qs(parts.query)


async def test_attachments_work_with_a_context_of_the_projects_own(
    async_client: Any, auser_factory: Any
) -> None:
    user = await auser_factory()
    await async_client.aforce_login(user)

    created = await answer(
        async_client,
        {
            "type": "attachments.create",
            "params": {"name": "b.png", "size": len(PNG), "mime_type": "image/png"},
        },
    )
    assert signed(created["preview_url"])
    put = await async_client.put(
        created["upload_descriptor"]["url"].removeprefix("http://testserver"),
        PNG,
        content_type="image/png",
    )
    assert put.status_code == 200, put.content
    direct = await async_client.post(
        reverse("chatkit:upload"),
        {"file": make_upload()},
    )
    assert direct.status_code == 201, direct.content
    assert signed(direct.json()["preview_url"])

    events = await answer(
        async_client,
        {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "hi"}],
                    "attachments": [created["id"], direct.json()["id"]],
                    "inference_options": {},
                }
            },
        },
    )
    thread_id = events[0]["thread"]["id"]
    page = await answer(async_client, {"type": "items.list", "params": {"thread_id": thread_id}})
    previews = [a["preview_url"] for item in page["data"] for a in item.get("attachments", [])]
    assert len(previews) == 2
    assert all(signed(url) for url in previews)  # fresh, from the request: no BASE_URL set

    # A generated image, through the server's converter and the project's context.
    request = RequestFactory().post("/chatkit/")
    request.user = user
    context = account_context(request)
    server = get_server()
    thread = await server.store.load_thread(thread_id, context)
    url = await server.get_response_stream_converter(thread, context).base64_image_to_url(
        "ig_1", base64.b64encode(PNG).decode()
    )
    assert url.startswith("http://testserver/chatkit/attachments/")
    row = await Attachment.objects.aget(pk=url.rstrip("/").split("/")[-2])
    assert (row.owner_id, row.thread_id) == (user.pk, thread_id)

    deleted = await answer(
        async_client,
        {"type": "attachments.delete", "params": {"attachment_id": direct.json()["id"]}},
    )
    assert deleted == {}
    assert await Attachment.objects.filter(owner=user).acount() == 2
