"""The agents path end to end: converter → Agents SDK → the real openai client → a local
fake of the Responses API → stream_agent_response with DjangoResponseStreamConverter."""

import base64
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chatkit_django.models import Attachment, ThreadItem
from tests.factories import PNG, store_attachment
from tests.fake_openai import FakeOpenAI, ScriptedTurn
from tests.sdk_calls import done_items, process, user_input
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

B64 = base64.b64encode(PNG).decode()


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.testapp.agent_server.AgentServer",
        "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"],
        "BASE_URL": "http://testserver",
    }


async def test_model_receives_the_converted_input_and_the_answer_streams(
    fake_openai: FakeOpenAI, auser_factory: Any
) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow by 10%")
    text = await sync_to_async(store_attachment)(user, "a.txt", "text/plain", b"file text")
    fake_openai.turns.append(ScriptedTurn(text="Here is the summary."))
    tag = {"type": "input_tag", "id": f"note:{note.pk}", "text": "Plan", "data": {}}

    events = await process(
        {
            "type": "threads.create",
            "params": {"input": user_input("Summarise ", attachments=[text.id], tags=[tag])},
        },
        user,
    )

    (answer,) = done_items(events, "assistant_message")
    assert answer["content"][0]["text"] == "Here is the summary."
    (request,) = [r for r in fake_openai.requests if r.path == "/v1/responses"]
    assert request.json["model"] == "gpt-4.1-mini"
    assert request.json["stream"] is True
    assert "<ENTITY>" in request.json["instructions"]
    user_items = [i for i in request.json["input"] if i.get("role") == "user"]
    assert user_items[0]["content"] == [
        {"type": "input_text", "text": "Summarise @Plan"},
        {
            "type": "input_text",
            "text": '<ATTACHMENT name="a.txt" type="text/plain">\nfile text\n</ATTACHMENT>',
        },
    ]
    assert user_items[1]["content"][-1] == {
        "type": "input_text",
        "text": f'<ENTITY id="note:{note.pk}" source="note">\nTitle: Plan\nGrow by 10%\n</ENTITY>',
    }


async def test_generated_image_is_stored_not_inlined(
    fake_openai: FakeOpenAI, auser_factory: Any
) -> None:
    user = await auser_factory()
    fake_openai.turns.append(ScriptedTurn(text="Done.", image_b64=B64, partial_images=[B64]))

    events = await process(
        {"type": "threads.create", "params": {"input": user_input("draw a cat")}}, user
    )

    (image_item,) = done_items(events, "generated_image")
    row = await Attachment.objects.aget()
    assert image_item["image"]["url"] == f"http://testserver/chatkit/attachments/{row.pk}/content/"
    assert row.owner_id == user.pk and row.thread_id == image_item["thread_id"]
    stored = await ThreadItem.objects.aget(pk=image_item["id"])
    assert B64 not in str(stored.data)
    # The partial image went over the stream only.
    updates = [e for e in events if e["type"] == "thread.item.updated"]
    assert updates and updates[0]["update"]["image"]["url"].startswith("data:image/png")

    # Next turn: the image goes back to the model as bytes, not as the session-bound URL.
    fake_openai.turns.append(ScriptedTurn(text="A cat."))
    await process(
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": image_item["thread_id"], "input": user_input("what is it?")},
        },
        user,
    )
    second = [r for r in fake_openai.requests if r.path == "/v1/responses"][-1]
    images = [
        c
        for i in second.json["input"]
        if isinstance(i.get("content"), list)
        for c in i["content"]
        if c.get("type") == "input_image"
    ]
    assert images == [
        {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{B64}"}
    ]


async def test_generated_image_through_the_endpoint_is_served_to_its_owner_only(
    fake_openai: FakeOpenAI, auser_factory: Any, attachment_storage: Any
) -> None:
    import json

    from django.test import AsyncClient

    from tests.chatkit_client import parse_sse, post, read_stream

    owner, other = AsyncClient(), AsyncClient()
    await owner.aforce_login(await auser_factory())
    await other.aforce_login(await auser_factory())
    fake_openai.turns.append(ScriptedTurn(text="Here.", image_b64=B64))

    response = await post(
        owner, json.dumps({"type": "threads.create", "params": {"input": user_input("draw")}})
    )
    (image_item,) = done_items(parse_sse(await read_stream(response)), "generated_image")
    path = image_item["image"]["url"].removeprefix("http://testserver")

    assert (await other.get(path)).status_code == 404
    served = await owner.get(path)
    if served.status_code == 302:  # S3: a presigned redirect
        import httpx

        async with httpx.AsyncClient() as http:
            assert (await http.get(served["Location"])).content == PNG
    else:
        assert served.status_code == 200
        # Under ASGI the content view streams the file with an async iterator.
        body = b"".join([chunk async for chunk in served.streaming_content])
        served.close()
        assert body == PNG
