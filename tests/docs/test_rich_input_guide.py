"""The SDK's rich-input guide, walked end to end through the endpoint: upload an image and a
PDF, mention an entity, send, check the exact model input, answer a structured question,
dictate (against the local fake OpenAI API)."""

import base64
import json
from typing import Any

import pytest
from django.test import AsyncClient
from django.urls import reverse

from chatkit_django.models import ThreadItem
from tests.chatkit_client import parse_sse, post, read_stream
from tests.factories import PDF, PNG, make_upload
from tests.fake_openai import FakeOpenAI
from tests.sdk_calls import done_items, user_input
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.testapp.rich_server.GuideServer",
        "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"],
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_the_whole_guide(
    fake_openai: FakeOpenAI, auser_factory: Any, attachment_storage: Any
) -> None:
    http = AsyncClient()
    user = await auser_factory()
    await http.aforce_login(user)
    note = await Note.objects.acreate(owner=user, title="Launch plan", body="Ship on Monday.")

    # 1. Upload an image and a PDF (ChatKit.js' direct upload strategy).
    uploaded = []
    for name, data, mime in [("cat.png", PNG, "image/png"), ("spec.pdf", PDF, "application/pdf")]:
        response = await http.post(
            reverse("chatkit:upload"), {"file": make_upload(name, data, mime)}
        )
        assert response.status_code == 201, response.content
        uploaded.append(response.json()["id"])

    # 2. Find the entity to mention, as entities.onTagSearch would.
    (entity,) = (await http.get(reverse("chatkit:entity-search"), {"q": "launch"})).json()["data"]
    assert (
        await http.get(reverse("chatkit:entity-preview"), {"id": entity["id"]})
    ).status_code == 200
    tag = {"type": "input_tag", "id": entity["id"], "text": entity["title"], "data": entity["data"]}

    # 3. Send; the server answers with the exact model input its converter produced.
    response = await post(
        http,
        json.dumps(
            {
                "type": "threads.create",
                "params": {
                    "input": user_input(
                        "Compare with the survey ", attachments=uploaded, tags=[tag]
                    )
                },
            }
        ),
    )
    assert response.status_code == 200
    events = parse_sse(await read_stream(response))
    (answer,) = done_items(events, "assistant_message")
    assert json.loads(answer["content"][0]["text"]) == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Compare with the survey @Launch plan"},
                {
                    "type": "input_image",
                    "detail": "auto",
                    "image_url": f"data:image/png;base64,{b64(PNG)}",
                },
                {
                    "type": "input_file",
                    "file_data": f"data:application/pdf;base64,{b64(PDF)}",
                    "filename": "spec.pdf",
                },
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "# User-provided context for @-mentions\n"
                    "- When referencing resolved entities, use their canonical names **without** '@'.\n"
                    "- The '@' form appears only in user text and should not be echoed.",
                },
                {
                    "type": "input_text",
                    "text": f'<ENTITY id="note:{note.pk}" source="note">\n'
                    "Title: Launch plan\nShip on Monday.\n</ENTITY>",
                },
            ],
        },
    ]

    # 4. Answer the structured question the server asked.
    (question,) = done_items(events, "structured_input")
    response = await post(
        http,
        json.dumps(
            {
                "type": "threads.add_structured_input",
                "params": {
                    "thread_id": question["thread_id"],
                    "item_id": question["id"],
                    "input": {
                        "answers": {"topic": {"values": ["Dictation"]}, "note": {"values": ["hi"]}}
                    },
                },
            }
        ),
    )
    events = parse_sse(await read_stream(response))
    (follow_up,) = done_items(events, "assistant_message")
    assert json.loads(follow_up["content"][0]["text"])[0]["content"][0]["text"] == (
        "A structured input request was displayed to the user with the following status: "
        "answered\n<StructuredInput>\n"
        "- Which rich input should we try first?: Dictation\n"
        "- Anything you'd like to add?: hi\n</StructuredInput>"
    )
    stored = await ThreadItem.objects.aget(pk=question["id"])
    assert stored.data["status"] == "answered"

    # 5. Dictate.
    fake_openai.transcription_text = "and now by voice"
    response = await post(
        http,
        json.dumps(
            {
                "type": "input.transcribe",
                "params": {"audio_base64": b64(b"OggS audio"), "mime_type": "audio/ogg"},
            }
        ),
    )
    assert response.json() == {"text": "and now by voice"}
    assert fake_openai.requests[-1].files["file"] == ("dictation.ogg", "audio/ogg", b"OggS audio")


async def test_mentions_of_hidden_entities_never_reach_the_model(auser_factory: Any) -> None:
    http = AsyncClient()
    user, other = await auser_factory(), await auser_factory()
    await http.aforce_login(user)
    secret = await Note.objects.acreate(owner=other, title="Secret title", body="secret body")
    forged = {
        "type": "input_tag",
        "id": f"note:{secret.pk}",
        "text": "Plan",
        "data": {"source": "note", "summary": "forged"},
    }

    response = await post(
        http,
        json.dumps(
            {"type": "threads.create", "params": {"input": user_input("see ", tags=[forged])}}
        ),
    )

    events = parse_sse(await read_stream(response))
    (answer,) = done_items(events, "assistant_message")
    text = answer["content"][0]["text"]
    assert '[The user mentioned \\"@Plan\\", which could not be found.]' in text
    assert "Secret" not in text and "secret body" not in text and "forged" not in text
