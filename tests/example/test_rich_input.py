"""The example project's rich input: demo articles as @-mentions, the structured question."""

import io
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.core.management import call_command
from django.test import AsyncClient
from django.urls import reverse

from chatkit_django.models import ThreadItem
from example_project.demo.models import Article
from tests.chatkit_client import parse_sse, post, read_stream
from tests.sdk_calls import done_items, user_input

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "example_project.demo.server.DemoServer",
        "ENTITY_SOURCES": ["example_project.demo.entities.ArticleSource"],
    }


async def send(user_client: Any, payload: dict) -> list[dict]:
    import json

    response = await post(user_client, json.dumps(payload))
    assert response.status_code == 200, response.content
    return parse_sse(await read_stream(response))


async def test_survey_is_asked_answered_persisted_and_followed_up(
    user_client: Any, auser_factory: Any
) -> None:
    events = await send(
        user_client, {"type": "threads.create", "params": {"input": user_input("start the survey")}}
    )
    (question,) = done_items(events, "structured_input")
    assert question["status"] == "pending"
    assert [q["type"] for q in question["inputs"]] == ["multiple_choice", "freeform"]
    thread_id = events[0]["thread"]["id"]

    events = await send(
        user_client,
        {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": thread_id,
                "item_id": question["id"],
                "input": {
                    "status": "answered",
                    "answers": {"topic": {"values": ["Mentions"]}, "note": {"values": ["soon"]}},
                },
            },
        },
    )

    replaced = [e for e in events if e["type"] == "thread.item.replaced"]
    assert replaced[0]["item"]["status"] == "answered"
    (follow_up,) = done_items(events, "assistant_message")
    assert follow_up["content"][0]["text"] == 'Let\'s start with Mentions. You added: "soon".'
    stored = await ThreadItem.objects.aget(pk=question["id"])
    assert stored.data["status"] == "answered"
    assert [q["answer"] for q in stored.data["inputs"]] == [
        {"values": ["Mentions"], "skipped": False},
        {"values": ["soon"], "skipped": False},
    ]

    # The answer shows in the admin's transcript of the thread.
    admin = AsyncClient()
    await admin.aforce_login(await auser_factory(is_staff=True, is_superuser=True))
    # quote(): the admin reads "_XX" in a URL as an escape, and ids are random hex.
    page = await admin.get(reverse("admin:chatkit_django_thread_change", args=[quote(thread_id)]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Which rich input should we try first?" in html
    assert '<dd class="chatkit-answer">Mentions</dd>' in html
    assert '<dd class="chatkit-answer">soon</dd>' in html


async def test_skipped_survey_is_acknowledged(user_client: Any) -> None:
    events = await send(
        user_client, {"type": "threads.create", "params": {"input": user_input("survey")}}
    )
    (question,) = done_items(events, "structured_input")

    events = await send(
        user_client,
        {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": question["thread_id"],
                "item_id": question["id"],
                "input": {"status": "skipped"},
            },
        },
    )

    (follow_up,) = done_items(events, "assistant_message")
    assert follow_up["content"][0]["text"] == "No problem, we can skip the survey."


async def test_answering_twice_is_a_clean_error(user_client: Any) -> None:
    import json

    events = await send(
        user_client, {"type": "threads.create", "params": {"input": user_input("survey")}}
    )
    (question,) = done_items(events, "structured_input")
    answer = {
        "type": "threads.add_structured_input",
        "params": {
            "thread_id": question["thread_id"],
            "item_id": question["id"],
            "input": {"status": "skipped"},
        },
    }
    await send(user_client, answer)

    response = await post(user_client, json.dumps(answer))

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Item {question['id']} was answered already.",
        "code": "already_answered",
    }


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_demo_articles_are_mentionable_and_drafts_stay_private(
    client: Any, user_factory: Any
) -> None:
    call_command("demo_setup", stdout=io.StringIO())
    reader = user_factory()
    client.force_login(reader)

    titles = [e["title"] for e in client.get(reverse("chatkit:entity-search")).json()["data"]]
    draft = Article.objects.get(published=False)

    assert titles == ["Dictation", "Getting started with ChatKit", "Uploading files"]
    assert (
        client.get(reverse("chatkit:entity-preview"), {"id": f"article:{draft.pk}"}).status_code
        == 404
    )
    client.force_login(draft.author)
    assert (
        client.get(reverse("chatkit:entity-preview"), {"id": f"article:{draft.pk}"}).status_code
        == 200
    )
