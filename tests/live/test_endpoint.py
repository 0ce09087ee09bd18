"""The endpoint over a real uvicorn process: streaming order, disconnects, keep-alives.

Each test runs twice: through Django's ASGI handler (``ChatKitView``) and through Channels
(``ChatKitConsumer``), the two ways a project can serve the endpoint.
"""

from __future__ import annotations

import httpx
import pytest

from chatkit_django.models import Thread, ThreadItem
from tests.chatkit_client import ENDPOINT, body, create_req, parse_sse
from tests.live_server import APPS, read_until, wait_for

pytestmark = pytest.mark.live

SCRIPTED = {"CHATKIT_TEST_SERVER_CLASS": "tests.testapp.server.ScriptedServer"}


@pytest.fixture(params=sorted(APPS))
def app(request):
    return APPS[request.param]


def test_events_arrive_before_the_responder_finishes(live_server_factory, app, session, tmp_path):
    base = live_server_factory(app, env=SCRIPTED)
    _, cookies, headers = session
    gate = tmp_path / "gate"
    request = body(create_req(f"gate {gate}"))
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http,
        http.stream("POST", ENDPOINT, content=request) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        # The responder is blocked on the gate; its first delta must already be here.
        chunks = response.iter_raw()
        seen = read_until(chunks, b'"delta":"partial "')
        assert b"thread.item.done" in seen
        gate.touch()
        seen += b"".join(chunks)
    events = parse_sse(seen)
    assert events[-1]["type"] == "thread.item.done"
    assert events[-1]["item"]["content"][0]["text"] == "partial done"


def test_client_disconnect_saves_the_partial_message(live_server_factory, app, session, tmp_path):
    base = live_server_factory(app, env=SCRIPTED)
    _, cookies, headers = session
    request = body(create_req(f"gate {tmp_path / 'never-opened'}"))
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http,
        http.stream("POST", ENDPOINT, content=request) as response,
    ):
        seen = read_until(response.iter_raw(), b'"delta":"partial "')
    # Leaving the block hung up mid-stream.
    thread_id = parse_sse(seen)[0]["thread"]["id"]

    def cancelled():
        return ThreadItem.objects.filter(thread_id=thread_id, type="sdk_hidden_context").exists()

    wait_for(cancelled)
    assistant = ThreadItem.objects.get(thread_id=thread_id, type="assistant_message")
    assert assistant.data["content"][0]["text"] == "partial "
    hidden = ThreadItem.objects.get(thread_id=thread_id, type="sdk_hidden_context")
    assert "cancelled" in hidden.data["content"]
    assert Thread.objects.filter(pk=thread_id).exists()


def test_keepalive_comments_while_the_responder_is_silent(live_server_factory, app, session):
    base = live_server_factory(app, env={**SCRIPTED, "CHATKIT_TEST_KEEPALIVE": "0.1"})
    _, cookies, headers = session
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        response = http.post(ENDPOINT, content=body(create_req("sleep 0.6")))
    raw = response.content
    partial = raw.index(b'"delta":"partial "')
    done = raw.rindex(b"thread.item.done")
    assert raw.count(b": keep-alive\n\n", partial, done) >= 2
    assert parse_sse(raw)[-1]["item"]["content"][0]["text"] == "partial done"


# Under chatkit_django.asgi a connection belongs to a shared thread, not to a stream: there
# is nothing to give back (tests/live/test_threads.py counts the connections there).
@pytest.mark.parametrize("app", [APPS["view"], APPS["consumer"]], ids=["view", "consumer"])
@pytest.mark.parametrize(("release", "expected"), [("0.2", "released"), ("off", "held")])
def test_a_stream_gives_back_its_database_connection_while_the_model_talks(
    live_server_factory, app, session, release, expected
):
    env = {**SCRIPTED, "CHATKIT_TEST_RELEASE": release}
    base = live_server_factory(app, env=env)
    user, cookies, headers = session
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        response = http.post(ENDPOINT, content=body(create_req("probe 0.6")))
    events = parse_sse(response.content)
    # The thread and the user message were saved before the pause; the connection that
    # saved them was open then, and is given back (or not) while the responder is silent.
    assert events[-1]["item"]["content"][0]["text"] == f"partial {expected}"
    # The answer was still saved, on a connection opened again.
    thread_id = events[0]["thread"]["id"]
    texts = [
        row.data["content"][0]["text"]
        for row in ThreadItem.objects.filter(thread_id=thread_id, type="assistant_message")
    ]
    assert texts == [f"partial {expected}"]
    assert Thread.objects.get(pk=thread_id).owner == user


def test_json_requests_and_errors_over_the_wire(live_server_factory, app, session):
    base = live_server_factory(app)
    _, cookies, headers = session
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        response = http.post(ENDPOINT, content=b'{"type": "threads.list", "params": {}}')
        assert response.status_code == 200
        assert response.json()["data"] == []
        response = http.post(ENDPOINT, content=b"{oops")
        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"
        # Without the CSRF header a cookie-authenticated request is refused.
        response = http.post(
            ENDPOINT,
            content=b'{"type": "threads.list", "params": {}}',
            headers={"X-CSRFToken": ""},
        )
        assert response.status_code == 403
        response = http.post(ENDPOINT, content=b"x" * (10 * 1024 * 1024 + 1))
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"
    with httpx.Client(base_url=base, timeout=60) as http:
        response = http.post(ENDPOINT, content=b'{"type": "threads.list", "params": {}}')
        assert response.status_code == 403
        assert response.json()["code"] == "not_authenticated"
