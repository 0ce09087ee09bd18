"""``DjangoAttachmentStore.get_storage(owner_id)`` is asked on every path that touches bytes.

``PerUserAttachmentStore`` (tests/testapp/access.py) puts user A's bytes on a local directory
and user B's on an S3 bucket (moto). Each user's files must land on, be read from and be
deleted from their own storage, whatever path wrote or removes them: direct upload,
two-phase upload, generated image, the content view, the converter, ``attachments.delete``,
``threads.delete`` and ``chatkit_cleanup``.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import storages
from django.core.management import call_command
from django.urls import reverse

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment
from chatkit_django.server import get_server
from tests.chatkit_client import answer, aupload
from tests.factories import PNG
from tests.sdk_calls import user_input
from tests.storage_fixtures import stored_names
from tests.testapp import access

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_storages(settings: Any, tmp_path: Any, s3_storage_settings: dict[str, Any]) -> Any:
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit_x": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "x")},
        },
        "chatkit_y": s3_storage_settings,
    }
    settings.CHATKIT = {
        **settings.CHATKIT,
        "ATTACHMENT_STORE_CLASS": "tests.testapp.access.PerUserAttachmentStore",
        "BASE_URL": "http://testserver",
    }
    yield storages["chatkit_x"], storages["chatkit_y"]
    access.STORAGE_OF_USER.clear()


async def upload(client: Any) -> str:
    response = await aupload(client)
    assert response.status_code == 201, response.content
    return response.json()["id"]


async def two_phase(client: Any) -> str:
    created = await answer(
        client,
        {
            "type": "attachments.create",
            "params": {"name": "b.png", "size": len(PNG), "mime_type": "image/png"},
        },
    )
    url = created["upload_descriptor"]["url"].removeprefix("http://testserver")
    response = await client.put(url, PNG, content_type="image/png")
    assert response.status_code == 200, response.content
    return created["id"]


async def read_content(client: Any, attachment_id: str) -> bytes:
    response = await client.get(
        reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    )
    if response.status_code == 302:  # S3: a presigned GET
        return (await sync_to_async(httpx.get)(response["Location"])).content
    assert response.status_code == 200
    return b"".join([chunk async for chunk in response.streaming_content])


async def names(*attachment_ids: str) -> list[str]:
    return [
        name
        async for name in Attachment.objects.filter(pk__in=attachment_ids)
        .order_by("pk")
        .values_list("file", flat=True)
    ]


async def test_each_users_bytes_live_and_die_on_their_own_storage(
    async_client: Any, auser_factory: Any, two_storages: Any
) -> None:
    x, y = two_storages
    a, b = await auser_factory(), await auser_factory()
    access.STORAGE_OF_USER.update({a.pk: "chatkit_x", b.pk: "chatkit_y"})
    server = get_server()

    for user, mine, theirs in ((a, x, y), (b, y, x)):
        before_theirs = await sync_to_async(stored_names)(theirs)
        await async_client.aforce_login(user)
        direct, pending, unattached = (
            await upload(async_client),
            await two_phase(async_client),
            await upload(async_client),
        )
        events = await answer(
            async_client,
            {
                "type": "threads.create",
                "params": {"input": user_input("hi", [direct])},
            },
        )
        thread_id = events[0]["thread"]["id"]
        context = ChatKitContext(user=user)
        thread = await server.store.load_thread(thread_id, context)
        url = await server.get_response_stream_converter(thread, context).base64_image_to_url(
            "ig_1", base64.b64encode(PNG).decode()
        )
        generated = url.rstrip("/").split("/")[-2]

        ids = (direct, pending, unattached, generated)
        files = await names(*ids)
        assert len(files) == 4
        assert await sync_to_async(stored_names)(mine) == sorted(files)
        assert await sync_to_async(stored_names)(theirs) == before_theirs
        for attachment_id in ids:
            assert await read_content(async_client, attachment_id) == PNG
        converter = server.get_thread_item_converter(context)
        row = await Attachment.objects.aget(pk=direct)
        assert await converter.read_bytes(row) == PNG

        await answer(
            async_client, {"type": "attachments.delete", "params": {"attachment_id": pending}}
        )
        await sync_to_async(call_command)("chatkit_cleanup", "--max-age", "0")  # unattached
        assert await sync_to_async(stored_names)(mine) == sorted(await names(direct, generated))
        await answer(async_client, {"type": "threads.delete", "params": {"thread_id": thread_id}})
        assert await sync_to_async(stored_names)(mine) == []
        assert await sync_to_async(stored_names)(theirs) == before_theirs

    # Nothing went to the default storage on the way.
    assert await sync_to_async(stored_names)(storages["default"]) == []
