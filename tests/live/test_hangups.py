"""Hang-ups at every early point of a stream, over a real uvicorn process.

A client may go away at any moment: before ``thread.created`` has reached it, right after,
after its own message came back, after the first delta. Each time the user's message is
saved, and no thread without items is left to show up in ``threads.list``.

The points are made distinct, not timed: ``HangUpServer`` holds the step under test (saving
the thread, saving the user message, the responder) until the endpoint has noticed the
hang-up or cancelled it, and the client hangs up on the event it reads, never after a sleep.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkit_django.models import Thread, ThreadItem
from tests.chatkit_client import ENDPOINT, add_message_req, body, create_req, parse_sse
from tests.live_server import APPS, read_until, wait_for

pytestmark = pytest.mark.live

SERVER = "tests.testapp.server.HangUpServer"

# point: (the step the server holds, the bytes after which the client hangs up; None: as
# soon as the response headers are in).
CREATE_POINTS = {
    "before thread.created": ("save_thread", None),
    "after thread.created": ("user_message", b'"type":"thread.created"'),
    "after the user item": ("respond", b'"type":"user_message"'),
    "after the first delta": ("delta", b'"delta":"partial "'),
}
ADD_POINTS = {
    "before the user item": ("user_message", None),
    "after the user item": ("respond", b'"type":"user_message"'),
    "after the first delta": ("delta", b'"delta":"partial "'),
}


@pytest.fixture(params=sorted(APPS))
def app(request):
    return APPS[request.param]


def hang_up(base: str, cookies: Any, headers: Any, request: str, hold: str, marker: Any) -> bytes:
    """Send ``request``, read up to ``marker``, hang up; return what was read."""
    seen = b""
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http,
        http.stream("POST", ENDPOINT, content=request, headers={"X-Test-Hold": hold}) as response,
    ):
        assert response.status_code == 200
        if marker is not None:
            seen = read_until(response.iter_raw(), marker)
    return seen


def wait_until_finished(marks: Path) -> str:
    """Wait for the server to be done with the stream (its cancellation handling has run)."""
    finished = marks / "finished"
    wait_for(finished.exists, timeout=20)
    outcome = finished.read_text()
    finished.unlink()
    assert not (marks / "timeout").exists(), (marks / "timeout").read_text()
    return outcome


def assert_no_blank_threads(base: str, cookies: Any, headers: Any, user: Any) -> None:
    assert not Thread.objects.filter(owner=user, items__isnull=True).exists()
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        listed = http.post(ENDPOINT, content=b'{"type": "threads.list", "params": {"limit": 100}}')
    assert listed.status_code == 200
    ids = {t["id"] for t in listed.json()["data"]}
    assert ids == set(Thread.objects.filter(owner=user).values_list("id", flat=True))


def assert_saved(user: Any, text: str, thread_id: str | None = None) -> ThreadItem:
    messages = ThreadItem.objects.filter(thread__owner=user, type="user_message", preview=text)
    assert [m.data["content"][0]["text"] for m in messages] == [text]
    message = messages.get()
    if thread_id is not None:
        assert message.thread_id == thread_id
    return message


def test_hang_ups_at_every_early_point_keep_the_message(
    live_server_factory, app, session, tmp_path
):
    user, cookies, headers = session
    base = live_server_factory(
        app, env={"CHATKIT_TEST_SERVER_CLASS": SERVER, "CHATKIT_TEST_HANGUP_DIR": str(tmp_path)}
    )
    thread_id = None
    for point, (hold, marker) in CREATE_POINTS.items():
        text = f"new thread, hang-up {point}"
        seen = hang_up(base, cookies, headers, body(create_req(text)), hold, marker)
        outcome = wait_until_finished(tmp_path)
        assert not outcome.startswith("cancelled"), f"{point}: {outcome}"
        events = parse_sse(seen)
        known = events[0]["thread"]["id"] if events else None
        message = assert_saved(user, text, known)
        thread_id = message.thread_id
        hidden = ThreadItem.objects.get(thread_id=thread_id, type="sdk_hidden_context")
        assert "cancelled" in hidden.data["content"]
        if hold == "delta":
            partial = ThreadItem.objects.get(thread_id=thread_id, type="assistant_message")
            assert partial.data["content"][0]["text"] == "partial "
        assert_no_blank_threads(base, cookies, headers, user)

    for point, (hold, marker) in ADD_POINTS.items():
        text = f"existing thread, hang-up {point}"
        request = body(add_message_req(thread_id, text))
        hang_up(base, cookies, headers, request, hold, marker)
        outcome = wait_until_finished(tmp_path)
        assert not outcome.startswith("cancelled"), f"{point}: {outcome}"
        assert_saved(user, text, thread_id)
        assert_no_blank_threads(base, cookies, headers, user)
    # Every message, in the order sent, in the thread they went to.
    texts = [
        item.data["content"][0]["text"]
        for item in ThreadItem.objects.filter(thread_id=thread_id, type="user_message").order_by(
            "created_at", "seq"
        )
    ]
    assert texts == [
        f"new thread, hang-up {list(CREATE_POINTS)[-1]}",
        *(f"existing thread, hang-up {point}" for point in ADD_POINTS),
    ]


# -- slow clients ---------------------------------------------------------------------------

FLOOD_EVENTS, FLOOD_SIZE = 3000, 4096  # 12 MB of progress text, more than the kernel holds


def socket_bound(sock: socket.socket) -> int:
    """Bytes the kernel may hold between the server and us: our receive buffer and, at
    most, the largest send buffer TCP autotuning gives the server."""
    send_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return send_max + sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def test_a_slow_client_holds_the_stream_back(live_server_factory, app, session, tmp_path):
    user, cookies, headers = session
    base = live_server_factory(
        app, env={"CHATKIT_TEST_SERVER_CLASS": SERVER, "CHATKIT_TEST_HANGUP_DIR": str(tmp_path)}
    )
    host, port = base.removeprefix("http://").split(":")
    payload = body(create_req("flood")).encode()
    request = (
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}\r\n"
        f"X-CSRFToken: {headers['X-CSRFToken']}\r\nContent-Type: application/json\r\n"
        f"X-Test-Flood: {FLOOD_EVENTS}x{FLOOD_SIZE}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    with socket.socket() as sock:
        # A small receive window, as a slow mobile client has.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect((host, int(port)))
        sock.sendall(request)
        received = sock.recv(1024)
        assert received.startswith(b"HTTP/1.1 200")
        # The client reads nothing more for now: the server fills what the kernel holds,
        # then its own buffer, and then must stop the responder.
        held, progress = tmp_path / "held", tmp_path / "progress"
        overrun = 2 * socket_bound(sock)

        def held_or_overrun() -> bool:
            return held.exists() or (progress.exists() and int(progress.read_text()) > overrun)

        wait_for(held_or_overrun, timeout=30)
        assert held.exists(), f"the responder ran on: {progress.read_text()} bytes produced"
        produced = int(held.read_text())
        # What the responder produced is what we read, what the kernel holds, the ASGI
        # server's write buffer, the endpoint's buffer and one event: not the answer.
        limit = 64 * 1024
        assert produced <= len(received) + socket_bound(sock) + limit + limit + FLOOD_SIZE
        assert produced < FLOOD_EVENTS * FLOOD_SIZE / 2
        assert not (tmp_path / "finished").exists()

        # Reading on, the client gets the whole answer, intact.
        while chunk := sock.recv(1024 * 1024):
            received += chunk
    assert received.count(b'"type":"progress_update"') == FLOOD_EVENTS
    assert b'"text":"flood done"' in received
    assert int((tmp_path / "finished").read_text()) == FLOOD_EVENTS * FLOOD_SIZE
    assert ThreadItem.objects.get(thread__owner=user, type="assistant_message").preview == (
        "flood done"
    )
