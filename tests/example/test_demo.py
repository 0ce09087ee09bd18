"""The example project's page and demo server: offline streaming, and the agents path."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from chatkit.types import ItemsListParams, ItemsListReq, UserMessageTagContent
from django.test import AsyncClient, Client

from chatkit_django.models import Thread
from example_project.demo.server import DemoServer
from example_project.demo.tasks import post_notice, send_weekly_report
from tests.chatkit_client import config_of, create_req, parse_sse, post, read_stream
from tests.fake_openai import FakeOpenAI, ScriptedTurn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _demo(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.ROOT_URLCONF = "example_project.urls"
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "example_project.demo.server.DemoServer",
        "ENTITY_SOURCES": ["example_project.demo.entities.ArticleSource"],
    }
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(DemoServer, "word_delay", 0)


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_page_needs_a_login_then_embeds_chatkit(user_factory: Any) -> None:
    client = Client()
    response = client.get("/")
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert response["Location"].endswith("?next=/")

    client.force_login(user_factory())
    response = client.get("/")
    assert response.status_code == 200
    config = config_of(response.content.decode())
    assert config["options"]["api"]["uploadStrategy"]["type"] == "direct"
    assert config["options"]["composer"]["dictation"] == {"enabled": True}
    assert config["entitySearchUrl"] == "/chatkit/entities/search/"
    assert "csrftoken" in response.cookies

    config = config_of(client.get("/?uploads=two_phase").content.decode())
    assert config["options"]["api"]["uploadStrategy"] == {"type": "two_phase"}


async def test_offline_reply_streams_word_by_word_and_names_the_thread(
    user_client: AsyncClient,
) -> None:
    request = create_req("Plan the launch party")
    request.params.input.content.append(
        UserMessageTagContent(id="article:1", text="Launch", data={}, interactive=False)
    )
    response = await post(user_client, request)
    events = parse_sse(await read_stream(response))
    deltas = [e["update"]["delta"] for e in events if e["type"] == "thread.item.updated"]
    assert len(deltas) > 10
    (done,) = [
        e
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    ]
    text = done["item"]["content"][0]["text"]
    assert "".join(deltas) == text
    assert "You said: _Plan the launch party_" in text
    assert "`@Launch`" in text
    assert events[-1]["type"] == "thread.updated"
    assert events[-1]["thread"]["title"] == "Plan the launch party"
    thread = await Thread.objects.aget(pk=events[0]["thread"]["id"])
    assert thread.title == "Plan the launch party"


async def test_offline_dictation(user_client: AsyncClient) -> None:
    audio = base64.b64encode(b"abc").decode()
    response = await post(
        user_client,
        f'{{"type": "input.transcribe", "params": {{"audio_base64": "{audio}", '
        '"mime_type": "audio/webm"}}',
    )
    assert response.json() == {"text": "(offline dictation: 3 bytes of audio/webm)"}


async def test_with_a_key_the_agent_answers_and_titles_the_thread(
    user_client: AsyncClient, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fake_openai.turns.extend(
        [ScriptedTurn(text="Balloons first."), ScriptedTurn(text="Party plan")]
    )
    response = await post(user_client, create_req("Plan the launch party"))
    events = parse_sse(await read_stream(response))
    answer = [
        e["item"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    ]
    assert answer[0]["content"][0]["text"] == "Balloons first."
    assert events[-1]["thread"]["title"] == "Party plan"
    calls = [r for r in fake_openai.requests if r.path == "/v1/responses"]
    assert len(calls) == 2
    user_turns = [i for i in calls[0].json["input"] if i.get("role") == "user"]
    assert user_turns[0]["content"][0]["text"] == "Plan the launch party"
    # The title: title_thread() asks a small model, once the answer is done.
    assert calls[1].json["model"] == "gpt-4.1-nano"
    assert calls[1].json["input"] == "Plan the launch party"
    thread = await Thread.objects.aget(pk=events[0]["thread"]["id"])
    assert thread.title == "Party plan"


async def test_with_a_key_a_failing_title_call_leaves_the_answer_whole(
    user_client: AsyncClient,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fake_openai.turns.extend(
        [ScriptedTurn(text="Balloons first."), ScriptedTurn(error=(500, "title model down"))]
    )
    with caplog.at_level("ERROR", logger="chatkit_django.server"):
        response = await post(user_client, create_req("Plan the launch party"))
        events = parse_sse(await read_stream(response))
    assert [e["type"] for e in events if e["type"] in ("error", "thread.updated")] == []
    done = [e["item"] for e in events if e["type"] == "thread.item.done"]
    assert done[-1]["content"][0]["text"] == "Balloons first."
    thread = await Thread.objects.aget(pk=events[0]["thread"]["id"])
    assert thread.title == ""
    assert await thread.items.acount() == 2
    assert any(r.message.startswith("Could not name thread") for r in caplog.records)


async def test_the_tour_button_starts_an_answered_thread_and_the_page_opens_it(
    user_client: AsyncClient,
) -> None:
    response = await user_client.post("/welcome/")
    assert response.status_code == 302
    location = response["Location"]
    thread_id = location.removeprefix("/?agent=support&thread=")
    assert thread_id.startswith("thr_")

    page = await user_client.get(location)
    assert config_of(page.content.decode())["options"]["initialThread"] == thread_id
    thread = await Thread.objects.aget(pk=thread_id)
    assert (thread.owner_id, thread.title) == (user_client.user.pk, "Welcome tour")
    assert thread.data["metadata"] == {"started_by": "welcome button"}
    items = await post(
        user_client, ItemsListReq(params=ItemsListParams(thread_id=thread_id, order="asc"))
    )
    user_message, answer = items.json()["data"]
    assert user_message["content"][0]["text"] == "Show me around this demo"
    assert "You said: _Show me around this demo_" in answer["content"][0]["text"]
    assert (await user_client.get("/welcome/")).status_code == 405


def test_the_task_examples_start_a_thread_and_post_a_notice(user_factory: Any) -> None:
    user = user_factory()
    thread_id = send_weekly_report(user.pk, "- shipped the beta")
    post_notice(user.pk, thread_id, "The report was sent to your manager.")

    thread = Thread.objects.get(pk=thread_id)
    assert (thread.owner, thread.title) == (user, "Weekly report")
    assert list(thread.items.order_by("seq").values_list("type", flat=True)) == [
        "user_message",
        "assistant_message",
        "user_message",
    ]
