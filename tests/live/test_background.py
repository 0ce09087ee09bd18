"""``CHATKIT['ON_DISCONNECT'] = "finish"``: answers that outlive the connection, over a real
uvicorn (or the Channels consumer) process.

The client hangs up on the first delta; the responder (``FinishingServer``'s ``gate``) then
waits for a file the test creates, so every step is ordered by what the test sees, never by
a sleep: the server marks when the answer went to the background and when it ended.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from chatkit_django.models import ThreadItem
from chatkit_django.store import PARTIAL_KEY
from tests import ROOT
from tests.chatkit_client import ENDPOINT, add_message_req, body, create_req, parse_sse
from tests.live_server import APPS, free_port, read_until, wait_for

pytestmark = pytest.mark.live

SERVER = "tests.testapp.server.FinishingServer"


def finish_env(marks: Path, **settings: Any) -> dict[str, str]:
    chatkit = {"ON_DISCONNECT": "finish", "PARTIAL_SAVE_SECONDS": 0.05, **settings}
    return {
        "CHATKIT_TEST_SERVER_CLASS": SERVER,
        "CHATKIT_TEST_HANGUP_DIR": str(marks),
        "CHATKIT_TEST_SETTINGS": json.dumps(chatkit),
    }


@pytest.fixture(params=sorted(APPS))
def app(request):
    return APPS[request.param]


def start_and_hang_up(base: str, cookies: Any, headers: Any, text: str) -> str:
    """Start a thread with ``text``, hang up on the first delta; return the thread id."""
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http,
        http.stream("POST", ENDPOINT, content=body(create_req(text))) as response,
    ):
        assert response.status_code == 200
        seen = read_until(response.iter_raw(), b'"delta":"partial "')
    return parse_sse(seen)[0]["thread"]["id"]


def wait_for_mark(marks: Path, name: str) -> str:
    path = marks / name
    wait_for(path.exists, timeout=20)
    return path.read_text()


def assistant_texts(base: str, cookies: Any, headers: Any, thread_id: str) -> list[str]:
    """The assistant messages ``items.list`` answers, as a reloading client sees them."""
    request = {"type": "items.list", "params": {"thread_id": thread_id, "limit": 100}}
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        listed = http.post(ENDPOINT, content=json.dumps(request))
    assert listed.status_code == 200, listed.text
    return [
        item["content"][0]["text"]
        for item in listed.json()["data"]
        if item["type"] == "assistant_message"
    ]


def send(base: str, cookies: Any, headers: Any, thread_id: str, text: str) -> httpx.Response:
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        return http.post(ENDPOINT, content=body(add_message_req(thread_id, text)))


def test_a_hang_up_lets_the_answer_finish(live_server_factory, app, session, tmp_path):
    _, cookies, headers = session
    base = live_server_factory(app, env=finish_env(tmp_path))
    gate = tmp_path / "gate"
    thread_id = start_and_hang_up(base, cookies, headers, f"gate {gate}")
    assert wait_for_mark(tmp_path, "detached") == "1"  # one answer running in the background

    # A reload mid-answer shows the text so far (a partial copy of the message).
    wait_for(lambda: assistant_texts(base, cookies, headers, thread_id) == ["partial "])
    # New input waits for the answer.
    refused = send(base, cookies, headers, thread_id, "and another thing")
    assert refused.status_code == 409
    assert refused.json()["code"] == "answer_in_progress"
    assert not ThreadItem.objects.filter(thread_id=thread_id, preview="and another thing")

    gate.touch()
    assert wait_for_mark(tmp_path, "ended") == "0"
    # The whole answer, in place of the partial copy (same id), and no cancellation.
    assert assistant_texts(base, cookies, headers, thread_id) == ["partial done"]
    final = ThreadItem.objects.get(thread_id=thread_id, type="assistant_message")
    assert PARTIAL_KEY not in final.data
    assert not ThreadItem.objects.filter(thread_id=thread_id, type="sdk_hidden_context")

    # The thread takes input again.
    answered = send(base, cookies, headers, thread_id, "hello")
    assert answered.status_code == 200
    assert "echo: hello" in answered.text


def test_a_background_answer_that_fails_keeps_what_was_saved(
    live_server_factory, session, tmp_path
):
    _, cookies, headers = session
    base = live_server_factory(env=finish_env(tmp_path))
    gate = tmp_path / "gate"
    thread_id = start_and_hang_up(base, cookies, headers, f"gatefail {gate}")
    wait_for_mark(tmp_path, "detached")
    wait_for(lambda: assistant_texts(base, cookies, headers, thread_id) == ["partial "])
    gate.touch()
    assert wait_for_mark(tmp_path, "ended") == "0"
    assert assistant_texts(base, cookies, headers, thread_id) == ["partial "]
    answered = send(base, cookies, headers, thread_id, "hello")
    assert answered.status_code == 200
    assert "echo: hello" in answered.text


def test_a_background_answer_past_its_time_is_saved_as_partial(
    live_server_factory, session, tmp_path
):
    _, cookies, headers = session
    base = live_server_factory(
        env=finish_env(tmp_path, PARTIAL_SAVE_SECONDS=None, BACKGROUND_MAX_SECONDS=0.2)
    )
    thread_id = start_and_hang_up(base, cookies, headers, f"gate {tmp_path / 'never'}")
    wait_for_mark(tmp_path, "detached")
    assert wait_for_mark(tmp_path, "ended") == "0"
    # The SDK's cancellation handling saved the message so far.
    assert assistant_texts(base, cookies, headers, thread_id) == ["partial "]
    assert ThreadItem.objects.filter(thread_id=thread_id, type="sdk_hidden_context").count() == 1


SERVERS = {
    "uvicorn": ["-m", "uvicorn", "tests.asgi:application", "--host", "127.0.0.1", "--port"],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p"],
}
APP_ARGS = {
    "uvicorn": ["--lifespan", "off", "--log-level", "warning"],
    "daphne": ["tests.asgi:application"],
}


@pytest.mark.parametrize("asgi_server", sorted(SERVERS))
def test_sigterm_saves_background_answers_before_the_server_stops(
    live_server_factory, session, tmp_path, asgi_server
):
    _, cookies, headers = session
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "CHATKIT_LIVE_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONDEVMODE": "0",
        **finish_env(tmp_path, PARTIAL_SAVE_SECONDS=None),
    }
    args = [*SERVERS[asgi_server], str(port), *APP_ARGS[asgi_server]]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env)
    try:
        with serving_process(proc, port) as base:
            thread_id = start_and_hang_up(base, cookies, headers, f"gate {tmp_path / 'never'}")
            wait_for_mark(tmp_path, "detached")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "ended").read_text() == "0"
    # Saved by the SDK's cancellation handling: the message so far, and the hidden note
    # that tells the next answer the last one was cut off.
    final = ThreadItem.objects.get(thread_id=thread_id, type="assistant_message")
    assert PARTIAL_KEY not in final.data
    assert ThreadItem.objects.filter(thread_id=thread_id, type="sdk_hidden_context").count() == 1

    # After a restart, the thread shows it and takes input.
    base = live_server_factory(env=finish_env(tmp_path))
    assert assistant_texts(base, cookies, headers, thread_id) == ["partial "]
    assert send(base, cookies, headers, thread_id, "hello").status_code == 200


@contextmanager
def serving_process(proc: subprocess.Popen[bytes], port: int) -> Iterator[str]:
    """Yield the base URL once ``proc`` answers on ``port`` (as ``serving()`` waits)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"


def test_cancel_mode_refuses_nothing_and_saves_on_hang_up(live_server_factory, session, tmp_path):
    """The default: a hang-up cancels the answer (the SDK saves the partial), no 409."""
    _, cookies, headers = session
    base = live_server_factory(
        env={
            "CHATKIT_TEST_SERVER_CLASS": "tests.testapp.server.HangUpServer",
            "CHATKIT_TEST_HANGUP_DIR": str(tmp_path),
        }
    )
    thread_id = start_and_hang_up(base, cookies, headers, "hang up")
    wait_for_mark(tmp_path, "finished")
    assert assistant_texts(base, cookies, headers, thread_id) == ["partial "]
    assert not (tmp_path / "detached").exists()


def test_the_example_project_finishes_answers() -> None:
    from django.test import override_settings

    from chatkit_django.checks import check_settings
    from example_project import settings as example

    assert example.CHATKIT["ON_DISCONNECT"] == "finish"
    with override_settings(CHATKIT=example.CHATKIT):
        assert check_settings() == []
