"""Attachments over HTTP through the ChatKit endpoint, as ChatKit.js drives them:
attachments.create -> upload -> threads.create with the attachment -> attachments.delete."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
from asgiref.sync import sync_to_async
from chatkit.types import (
    AttachmentCreateParams,
    AttachmentDeleteParams,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
)
from django.test import AsyncClient

from chatkit_django.models import Attachment, Thread, ThreadItem
from tests.chatkit_client import add_message_req, create_req, parse_sse, post, read_stream
from tests.factories import PNG
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db(transaction=True)


async def create(user_client, name="cat.png", size=None, mime_type="image/png"):
    return await post(
        user_client,
        AttachmentsCreateReq(
            params=AttachmentCreateParams(
                name=name, size=len(PNG) if size is None else size, mime_type=mime_type
            )
        ),
    )


async def upload_bytes(user_client, descriptor, data=PNG):
    """Send the bytes where the descriptor says, as ChatKit.js would."""
    url = descriptor["url"]
    if url.startswith("http://testserver/"):
        parts = urlsplit(url)
        return await user_client.put(
            f"{parts.path}?{parts.query}", data, content_type=descriptor["headers"]["Content-Type"]
        )
    async with httpx.AsyncClient() as http:
        return await http.put(url, content=data, headers=descriptor["headers"])


async def names(storage):
    return await sync_to_async(stored_names)(storage)


async def test_two_phase_flow_through_the_endpoint(user_client, attachment_storage):
    response = await create(user_client)
    assert response.status_code == 200
    attachment = json.loads(response.content)
    assert "metadata" not in attachment
    assert attachment["preview_url"].startswith("http://testserver/chatkit/attachments/")

    uploaded = await upload_bytes(user_client, attachment["upload_descriptor"])
    assert uploaded.status_code == 200

    response = await post(user_client, create_req("look", attachments=[attachment["id"]]))
    assert response.status_code == 200
    events = parse_sse(await read_stream(response))
    thread_id = events[0]["thread"]["id"]
    message = events[1]["item"]
    assert message["type"] == "user_message"
    assert message["attachments"][0]["id"] == attachment["id"]
    assert message["attachments"][0]["thread_id"] == thread_id
    row = await Attachment.objects.aget(pk=attachment["id"])
    assert row.thread_id == thread_id
    assert await names(attachment_storage) == [row.file.name]

    response = await post(
        user_client,
        AttachmentsDeleteReq(params=AttachmentDeleteParams(attachment_id=attachment["id"])),
    )
    assert (response.status_code, json.loads(response.content)) == (200, {})
    assert not await Attachment.objects.filter(pk=attachment["id"]).aexists()
    assert await names(attachment_storage) == []


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"mime_type": "application/x-msdownload", "name": "a.exe"},
            415,
            "unsupported_attachment_type",
        ),
        ({"size": 10**12}, 413, "attachment_too_large"),
        ({"size": 0}, 400, "empty_file"),
    ],
)
async def test_create_refuses_bad_metadata_with_json_errors(
    user_client, attachment_storage, kwargs, status, code
):
    response = await create(user_client, **kwargs)
    assert response.status_code == status
    body = json.loads(response.content)
    assert body["code"] == code and body["detail"]
    assert not await Attachment.objects.aexists()


async def test_pending_attachment_cannot_be_attached(user_client, attachment_storage):
    attachment = json.loads((await create(user_client)).content)
    response = await post(user_client, create_req("look", attachments=[attachment["id"]]))
    assert response.status_code == 404
    assert not await Thread.objects.aexists()


async def test_another_users_attachment_is_not_found_and_attaches_nothing(
    user_client, auser_factory, attachment_storage
):
    other = AsyncClient()
    await other.aforce_login(await auser_factory())
    theirs = json.loads((await create(other)).content)
    assert (await upload_bytes(other, theirs["upload_descriptor"])).status_code == 200

    response = await post(user_client, create_req("mine?", attachments=[theirs["id"]]))
    assert response.status_code == 404
    assert json.loads(response.content)["code"] == "not_found"

    response = await post(user_client, create_req("hello"))
    thread_id = parse_sse(await read_stream(response))[0]["thread"]["id"]
    request = add_message_req(thread_id, "mine?")
    request.params.input.attachments = [theirs["id"]]
    response = await post(user_client, request)
    assert response.status_code == 404

    assert (await Attachment.objects.aget(pk=theirs["id"])).thread_id is None
    async for item in ThreadItem.objects.filter(type="user_message"):
        assert item.data["attachments"] == []

    # Deleting is idempotent: the answer for someone else's attachment is the one for a
    # missing attachment, and theirs stays.
    response = await post(
        user_client, AttachmentsDeleteReq(params=AttachmentDeleteParams(attachment_id=theirs["id"]))
    )
    missing = await post(
        user_client,
        AttachmentsDeleteReq(params=AttachmentDeleteParams(attachment_id="atc_missing")),
    )
    assert (response.status_code, response.content) == (200, b"{}")
    assert (missing.status_code, missing.content) == (200, b"{}")
    assert await Attachment.objects.filter(pk=theirs["id"]).aexists()
    assert len(await names(attachment_storage)) == 1


async def test_presigned_s3_flow_through_the_endpoint(user_client, s3_storage_settings, settings):
    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "PRESIGNED_UPLOADS": True}
    attachment = json.loads((await create(user_client)).content)
    descriptor = attachment["upload_descriptor"]
    assert descriptor["url"].startswith(s3_storage_settings["OPTIONS"]["endpoint_url"])

    uploaded = await upload_bytes(user_client, descriptor)
    assert uploaded.status_code == 200

    response = await post(user_client, create_req("look", attachments=[attachment["id"]]))
    assert response.status_code == 200
    events = parse_sse(await read_stream(response))
    assert events[1]["item"]["attachments"][0]["id"] == attachment["id"]

    content = await user_client.get(f"/chatkit/attachments/{attachment['id']}/content/")
    assert content.status_code == 302
    async with httpx.AsyncClient() as http:
        fetched = await http.get(content["Location"])
    assert fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"
