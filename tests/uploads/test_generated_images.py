"""DjangoResponseStreamConverter: generated images become attachments of the thread."""

import base64
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from chatkit.types import GeneratedImage, GeneratedImageItem
from django.db import IntegrityError
from django.utils import timezone

from chatkit_django.agents import DjangoResponseStreamConverter, DjangoThreadItemConverter
from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment
from chatkit_django.store import DjangoStore
from tests.factories import PNG, make_thread
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db(transaction=True)

B64 = base64.b64encode(PNG).decode()


@pytest.fixture(autouse=True)
def _base_url(settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "BASE_URL": "http://testserver"}


async def saved_thread(user: Any) -> Any:
    thread = make_thread()
    await DjangoStore().save_thread(thread, ChatKitContext(user=user))
    return thread


async def test_final_image_is_stored_as_an_uploaded_attachment(
    auser_factory: Any, attachment_storage: Any
) -> None:
    user = await auser_factory()
    thread = await saved_thread(user)
    converter = DjangoResponseStreamConverter(thread, ChatKitContext(user=user))

    url = await converter.base64_image_to_url("ig_1", B64)

    row = await Attachment.objects.aget()
    assert url == f"http://testserver/chatkit/attachments/{row.pk}/content/"
    assert (row.owner_id, row.thread_id, row.name, row.mime_type, row.type, row.size) == (
        user.pk,
        thread.id,
        "ig_1.png",
        "image/png",
        "image",
        len(PNG),
    )
    assert row.uploaded_at is not None
    assert row.data["thread_id"] == thread.id
    with attachment_storage.open(row.file.name, "rb") as f:
        assert f.read() == PNG


async def test_partial_images_stay_data_urls(auser_factory: Any) -> None:
    user = await auser_factory()
    converter = DjangoResponseStreamConverter(await saved_thread(user), ChatKitContext(user=user))

    url = await converter.base64_image_to_url("ig_1", B64, partial_image_index=0)

    assert url == f"data:image/png;base64,{B64}"
    assert await Attachment.objects.acount() == 0


async def test_a_failed_row_leaves_no_file(auser_factory: Any, attachment_storage: Any) -> None:
    user = await auser_factory()
    missing_thread = make_thread()  # never saved: the row's foreign key fails
    converter = DjangoResponseStreamConverter(missing_thread, ChatKitContext(user=user))

    with pytest.raises(IntegrityError):
        await converter.base64_image_to_url("ig_1", B64)

    assert await Attachment.objects.acount() == 0
    assert await sync_to_async(stored_names)(attachment_storage) == []


async def test_stored_image_goes_back_to_the_model_as_bytes(auser_factory: Any) -> None:
    user, other = await auser_factory(), await auser_factory()
    thread = await saved_thread(user)
    url = await DjangoResponseStreamConverter(
        thread, ChatKitContext(user=user)
    ).base64_image_to_url("ig_1", B64)
    item = GeneratedImageItem(
        id="msg_1",
        thread_id=thread.id,
        created_at=timezone.now(),
        image=GeneratedImage(id="ig_1", url=url),
    )

    mine = await DjangoThreadItemConverter(ChatKitContext(user=user)).generated_image_to_input(item)
    theirs = await DjangoThreadItemConverter(ChatKitContext(user=other)).generated_image_to_input(
        item
    )

    assert mine["content"][1] == {
        "type": "input_image",
        "detail": "auto",
        "image_url": f"data:image/png;base64,{B64}",
    }
    # Someone who may not see the attachment gets the SDK's default: the URL, not the bytes.
    assert theirs["content"][1]["image_url"] == url


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_content_view_serves_the_image_to_its_owner_only(
    client: Any, user_factory: Any, attachment_storage: Any
) -> None:
    from asgiref.sync import async_to_sync

    owner, other = user_factory(), user_factory()

    async def generate() -> str:
        thread = make_thread()
        await DjangoStore().save_thread(thread, ChatKitContext(user=owner))
        converter = DjangoResponseStreamConverter(thread, ChatKitContext(user=owner))
        return await converter.base64_image_to_url("ig_1", B64)

    url = async_to_sync(generate)()
    path = url.removeprefix("http://testserver")

    client.force_login(other)
    assert client.get(path).status_code == 404
    client.force_login(owner)
    response = client.get(path, follow=False)
    if response.status_code == 302:  # S3: a presigned redirect
        import httpx

        assert httpx.get(response["Location"]).content == PNG
    else:
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == PNG
