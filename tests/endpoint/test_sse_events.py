"""``EventStream``: between the SDK's stream and the response, on its own; read
(``chunks()``) and writing itself to an ASGI ``send`` (``send_to``)."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatkit_django.asgi import writing_to
from chatkit_django.streaming import (
    INPUT_STORED,
    SSE_KEEPALIVE,
    EventStream,
    EventStreamResponse,
)


class Script:
    """An SDK stream stand-in: yields chunks, sleeping where the script says."""

    def __init__(self, *steps: bytes | float | Exception) -> None:
        self.steps = steps
        self.cancelled = False
        self.finished = False
        self.release = asyncio.Event()

    async def __aiter__(self):
        try:
            for step in self.steps:
                if isinstance(step, bytes):
                    yield step
                elif isinstance(step, Exception):
                    raise step
                elif step == float("inf"):
                    await self.release.wait()
                else:
                    await asyncio.sleep(step)
        except asyncio.CancelledError:
            # Where the SDK runs handle_stream_cancelled: it must be allowed to finish.
            await asyncio.sleep(0.01)
            self.cancelled = True
            raise
        self.finished = True


def read_stream(*args, **kwargs):
    """An ``EventStream``'s events, read (``async for``): what Django's handler does."""
    return EventStream(*args, **kwargs).chunks()


async def collect(stream) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_events_flowing_faster_than_the_interval_get_no_keepalive():
    script = Script(b"a", 0.01, b"b", 0.01, b"c", 0.01, b"d")
    chunks = await collect(read_stream(script, keepalive=0.2))
    assert b"".join(chunks) == b"abcd"
    assert SSE_KEEPALIVE not in chunks
    assert script.finished


async def test_silence_longer_than_the_interval_sends_keepalives_between_events():
    script = Script(b"a", 0.35, b"b")
    chunks = await collect(read_stream(script, keepalive=0.1))
    assert chunks[0] == b"a"
    assert chunks[-1] == b"b"
    # 0.35 s of silence at a 0.1 s interval: three comments (timers can run late, not early).
    assert 2 <= chunks.count(SSE_KEEPALIVE) <= 3
    assert set(chunks[1:-1]) == {SSE_KEEPALIVE}


async def test_the_silence_is_counted_from_the_last_write():
    # Each gap is shorter than the interval, though together they are far longer.
    script = Script(b"a", 0.06, b"b", 0.06, b"c", 0.06, b"d", 0.06, b"e")
    chunks = await collect(read_stream(script, keepalive=0.1))
    assert SSE_KEEPALIVE not in chunks
    assert b"".join(chunks) == b"abcde"


async def test_events_produced_while_the_reader_is_busy_go_out_in_one_write():
    script = Script(b"a", b"b", b"c", 0.01, b"d")
    stream = read_stream(script, keepalive=5)
    first = await anext(stream)
    # The generator yields nothing between "a", "b" and "c", so the reader finds all three.
    assert first == b"abc"
    assert await collect(stream) == [b"d"]


async def test_an_error_outside_the_sdk_ends_the_stream_with_its_error_event():
    script = Script(b"data: {}\n\n", RuntimeError("row vanished"))
    chunks = await collect(read_stream(script, keepalive=5))
    assert chunks[0] == b"data: {}\n\n"
    assert chunks[-1].startswith(b"data: ")
    event = json.loads(chunks[-1][len(b"data: ") :])
    assert event == {"type": "error", "code": "stream.error", "allow_retry": False}


async def test_closing_the_reader_cancels_the_stream_and_waits_for_its_cleanup():
    script = Script(b"a", float("inf"), b"never")
    stream = read_stream(script, keepalive=5)
    assert await anext(stream) == b"a"
    await stream.aclose()
    # aclose() returned only after the SDK's cancellation handling had run.
    assert script.cancelled
    assert not script.finished


async def test_cancelling_the_reading_task_cancels_the_stream():
    script = Script(b"a", float("inf"), b"never")
    started = asyncio.Event()

    async def read():
        async for chunk in read_stream(script, keepalive=5):
            started.set()
            assert chunk == b"a"

    task = asyncio.create_task(read())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert script.cancelled


async def test_no_timer_outlives_the_stream():
    loop = asyncio.get_running_loop()
    before = {h for h in loop._scheduled if not h.cancelled()}
    await collect(read_stream(Script(b"a", 0.01, b"b"), keepalive=0.05))
    after = {h for h in loop._scheduled if not h.cancelled()}
    assert after <= before


async def test_the_response_hands_its_chunks_to_the_handler_as_they_are():
    async def events():
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    stream = events()
    response = EventStreamResponse(stream, content_type="text/event-stream")
    assert aiter(response) is stream
    assert [chunk async for chunk in response] == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_the_response_serves_what_a_middleware_put_in_its_place():
    async def events():
        yield b"data: 1\n\n"

    async def wrapped(inner):
        async for chunk in inner:
            yield chunk.upper()

    response = EventStreamResponse(events(), content_type="text/event-stream")
    response.streaming_content = wrapped(response.streaming_content)
    assert [chunk async for chunk in response] == [b"DATA: 1\n\n"]
    # A synchronous replacement is Django's business: its own __aiter__ serves it.
    response.streaming_content = iter(["plain"])
    with pytest.warns(Warning, match="synchronous iterators"):
        assert [chunk async for chunk in response] == [b"plain"]


async def test_release_runs_every_interval_while_the_stream_is_open():
    calls = []

    async def release():
        calls.append(asyncio.get_running_loop().time())

    script = Script(b"a", 0.35, b"b", 0.01, b"c")
    chunks = await collect(read_stream(script, keepalive=5, release=release, release_every=0.1))
    assert b"".join(chunks) == b"abc"
    assert SSE_KEEPALIVE not in chunks  # a release is not a silence
    assert 2 <= len(calls) <= 4
    # Nothing runs once the stream is over.
    count = len(calls)
    await asyncio.sleep(0.25)
    assert len(calls) == count


async def test_a_failing_release_is_logged_and_the_stream_goes_on(caplog):
    async def release():
        raise RuntimeError("database went away")

    script = Script(b"a", 0.25, b"b")
    chunks = await collect(read_stream(script, keepalive=5, release=release, release_every=0.1))
    assert b"".join(chunks) == b"ab"
    assert "Releasing database connections" in caplog.text


async def test_no_release_without_an_interval():
    calls = []

    async def release():
        calls.append(1)

    await collect(read_stream(Script(b"a", 0.2, b"b"), keepalive=5, release=release))
    assert calls == []


# -- hang-ups before the input is stored ----------------------------------------------------

OPTIONS = INPUT_STORED + b',"stream_options":{"allow_cancel":true}}\n\n'


async def test_a_hang_up_before_the_input_is_stored_lets_the_sdk_store_it_first():
    # The SDK saves the thread and the user message between "thread.created" and the
    # stream options: a hang-up in between must not cancel that.
    script = Script(b"created", float("inf"), OPTIONS, 5.0, b"never")
    stream = read_stream(script, keepalive=5, shield_until=INPUT_STORED)
    assert await anext(stream) == b"created"
    closing = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waiting for the input to be stored
    assert not script.cancelled
    script.release.set()  # the user message is stored, the SDK announces its options
    await closing
    # Cancelled right after, where the SDK waits for the responder: not one event later.
    assert script.cancelled
    assert not script.finished


async def test_a_hang_up_after_the_input_is_stored_cancels_at_once():
    script = Script(b"created", OPTIONS, b"delta", float("inf"), b"never")
    stream = read_stream(script, keepalive=5, shield_until=INPUT_STORED)
    assert b"delta" in await anext(stream)
    await stream.aclose()
    assert script.cancelled


async def test_without_a_shield_a_hang_up_cancels_at_once():
    script = Script(b"created", float("inf"), OPTIONS)
    stream = read_stream(script, keepalive=5)
    assert await anext(stream) == b"created"
    await stream.aclose()
    assert script.cancelled


# -- a slow client holds the producer back --------------------------------------------------


class Flood:
    """An SDK stream that never waits: ``count`` chunks of ``size`` bytes as fast as asked."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self.produced = 0
        self.cancelled = False

    async def __aiter__(self):
        try:
            for i in range(self.count):
                self.produced += 1
                yield str(i % 10).encode() * self.size
                await asyncio.sleep(0)  # the SDK's own awaits, where cancellation lands
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_slow_reader_holds_the_producer_back():
    flood = Flood(count=1000, size=1000)
    stream = read_stream(flood, keepalive=5, max_buffer=10_000)
    received = 0
    for _ in range(20):
        received += len(await anext(stream))
        # The client is slow: plenty of time for the producer to run ahead.
        for _ in range(50):
            await asyncio.sleep(0)
        # It never holds more than the buffer (and the chunk that filled it) unread.
        assert flood.produced * 1000 - received <= 10_000 + 1000
    assert flood.produced < 300
    rest = b"".join(await collect(stream))
    assert received + len(rest) == 1000 * 1000  # nothing lost on the way
    assert flood.produced == 1000


async def test_a_hang_up_while_the_producer_waits_for_space_cancels_inside_the_sdk():
    flood = Flood(count=1000, size=1000)
    stream = read_stream(flood, keepalive=5, max_buffer=5000)
    await anext(stream)
    for _ in range(50):
        await asyncio.sleep(0)  # the producer fills the buffer and waits
    produced = flood.produced
    await stream.aclose()
    # Woken, it went back into the SDK, which got the cancellation there.
    assert flood.cancelled
    assert flood.produced <= produced + 1


@pytest.mark.django_db(transaction=True)
async def test_the_sdk_announces_stream_options_right_after_storing_the_input(auser_factory):
    # What the shield relies on: in the SDK's own stream, the event INPUT_STORED matches
    # follows the stored thread and user message and precedes the responder's events.
    from chatkit_django.context import ChatKitContext
    from tests.chatkit_client import body, create_req
    from tests.testapp.server import EchoServer

    context = ChatKitContext(user=await auser_factory())
    result = await EchoServer().process(body(create_req("hi")), context)
    chunks = [chunk async for chunk in result.json_events]
    kinds = [json.loads(chunk[len(b"data: ") :])["type"] for chunk in chunks]
    marked = [i for i, chunk in enumerate(chunks) if chunk.startswith(INPUT_STORED)]
    assert marked == [2]
    assert kinds == ["thread.created", "thread.item.done", "stream_options", "thread.item.done"]


# -- the stream writes itself (send_to) -----------------------------------------------------


class Sent:
    """An ASGI ``send``: keeps the bodies; ``block()`` makes the next calls wait, as a server's
    flow control does for a client that does not read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = 0
        self.wrote = asyncio.Event()  # set once something was written

    def block(self) -> None:
        self.open.clear()

    async def __call__(self, message: dict) -> None:
        assert message["type"] == "http.response.body"
        assert message["more_body"] is True  # the caller sends the closing message
        self.waiting += 1
        await self.open.wait()
        self.waiting -= 1
        self.bodies.append(message["body"])
        self.wrote.set()


async def test_the_stream_writes_each_event_to_send_as_it_comes():
    script = Script(b"a", 0.01, b"b", b"c")
    sent = Sent()
    await EventStream(script, keepalive=5).send_to(sent)
    assert sent.bodies == [b"a", b"b", b"c"]  # one message per event, nothing buffered
    assert script.finished


async def test_the_writing_stream_sends_keepalives_in_silences():
    script = Script(b"a", 0.35, b"b")
    sent = Sent()
    await EventStream(script, keepalive=0.1).send_to(sent)
    assert sent.bodies[0] == b"a"
    assert sent.bodies[-1] == b"b"
    assert 2 <= sent.bodies.count(SSE_KEEPALIVE) <= 3
    assert set(sent.bodies[1:-1]) == {SSE_KEEPALIVE}


async def test_the_writing_stream_counts_the_silence_from_the_last_write():
    script = Script(b"a", 0.06, b"b", 0.06, b"c", 0.06, b"d", 0.06, b"e")
    sent = Sent()
    await EventStream(script, keepalive=0.1).send_to(sent)
    assert sent.bodies == [b"a", b"b", b"c", b"d", b"e"]


async def test_the_writing_stream_ends_a_failed_stream_with_the_error_event():
    sent = Sent()
    await EventStream(Script(b"a", RuntimeError("row vanished")), keepalive=5).send_to(sent)
    assert sent.bodies[0] == b"a"
    event = json.loads(sent.bodies[-1][len(b"data: ") :])
    assert event == {"type": "error", "code": "stream.error", "allow_retry": False}


async def test_a_hang_up_cancels_the_writing_stream_inside_the_sdk():
    script = Script(b"a", float("inf"), b"never")
    sent = Sent()
    task = asyncio.create_task(EventStream(script, keepalive=5).send_to(sent))
    await sent.wrote.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The task ended only after the SDK's cancellation handling had run.
    assert script.cancelled
    assert sent.bodies == [b"a"]


async def test_a_client_that_does_not_read_holds_the_sdk_back():
    flood = Flood(count=1000, size=1000)
    sent = Sent()
    sent.block()
    task = asyncio.create_task(EventStream(flood, keepalive=0.05).send_to(sent))
    await asyncio.sleep(0.2)
    # One event waits in send(); the SDK is not asked for more, and no keep-alive is
    # written behind it (the client is not reading).
    assert flood.produced == 1
    assert sent.waiting == 1
    sent.open.set()
    await task
    assert b"".join(b for b in sent.bodies if b != SSE_KEEPALIVE) == b"".join(
        str(i % 10).encode() * 1000 for i in range(1000)
    )


async def test_a_hang_up_while_send_waits_cancels_inside_the_sdk_not_in_send():
    flood = Flood(count=1000, size=1000)
    sent = Sent()
    sent.block()
    task = asyncio.create_task(EventStream(flood, keepalive=5).send_to(sent))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for send() to let go
    assert not flood.cancelled
    sent.open.set()  # as the server does for a client that has gone
    with pytest.raises(asyncio.CancelledError):
        await task
    # Back in the SDK, which got the cancellation at its next wait: no event later.
    assert flood.cancelled
    assert flood.produced == 1


async def test_a_hang_up_before_the_input_is_stored_lets_the_writing_stream_store_it():
    script = Script(b"created", float("inf"), OPTIONS, 5.0, b"never")
    sent = Sent()
    task = asyncio.create_task(
        EventStream(script, keepalive=5, shield_until=INPUT_STORED).send_to(sent)
    )
    await sent.wrote.wait()
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the input to be stored
    assert not script.cancelled
    script.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert script.cancelled
    assert not script.finished
    assert sent.bodies == [b"created"]  # nothing written after the hang-up


async def test_the_writing_stream_releases_connections_on_its_interval():
    calls = []

    async def release():
        calls.append(1)

    sent = Sent()
    stream = EventStream(Script(b"a", 0.35, b"b"), keepalive=5, release=release, release_every=0.1)
    await stream.send_to(sent)
    assert sent.bodies == [b"a", b"b"]
    assert 2 <= len(calls) <= 4


async def test_no_timer_outlives_the_writing_stream():
    loop = asyncio.get_running_loop()
    before = {h for h in loop._scheduled if not h.cancelled()}
    await EventStream(Script(b"a", 0.01, b"b"), keepalive=0.05).send_to(Sent())
    after = {h for h in loop._scheduled if not h.cancelled()}
    assert after <= before


async def test_the_response_lets_its_stream_write_itself_where_a_writer_is_set():
    sent = Sent()
    response = EventStreamResponse(
        EventStream(Script(b"a", b"b"), keepalive=5), content_type="text/event-stream"
    )
    with writing_to(sent):
        chunks = [chunk async for chunk in response]
    assert chunks == []  # nothing for the handler to write
    assert sent.bodies == [b"a", b"b"]


async def test_without_a_writer_the_response_is_read():
    response = EventStreamResponse(
        EventStream(Script(b"a", 0.01, b"b"), keepalive=5), content_type="text/event-stream"
    )
    assert [chunk async for chunk in response] == [b"a", b"b"]


async def test_content_a_middleware_put_in_place_is_read_even_with_a_writer():
    async def wrapped(inner):
        async for chunk in inner:
            yield chunk.upper()

    sent = Sent()
    response = EventStreamResponse(
        EventStream(Script(b"a"), keepalive=5), content_type="text/event-stream"
    )
    response.streaming_content = wrapped(response.streaming_content)
    with writing_to(sent):
        chunks = [chunk async for chunk in response]
    assert chunks == [b"A"]
    assert sent.bodies == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("app", "writes"),
    [
        ("tests.shared_asgi", True),  # chatkit_django.asgi's handler
        ("channels", True),  # ChatKitConsumer
        ("tests.asgi", False),  # Django's own handler reads the stream
    ],
)
def test_which_handlers_let_the_stream_write_itself(app, writes, monkeypatch, user_factory):
    from asgiref.sync import async_to_sync
    from asgiref.testing import ApplicationCommunicator
    from django.test import Client

    from chatkit_django.consumers import ChatKitConsumer
    from tests.chatkit_client import ENDPOINT, body, create_req, parse_sse

    written = []
    send_to = EventStream.send_to

    async def spy(self, send):
        written.append(self)
        await send_to(self, send)

    monkeypatch.setattr(EventStream, "send_to", spy)
    client = Client()
    client.force_login(user_factory())
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={'c' * 32}"
    if app == "channels":
        application = ChatKitConsumer.as_asgi()
    else:
        application = __import__(app, fromlist=["application"]).application
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": ENDPOINT,
        "query_string": b"",
        "headers": [
            (b"cookie", cookie.encode()),
            (b"x-csrftoken", b"c" * 32),
            (b"content-type", b"application/json"),
        ],
    }

    async def request() -> tuple[int, bytes]:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input(
            {"type": "http.request", "body": body(create_req("hi")).encode()}
        )
        start = await communicator.receive_output(10)
        received = b""
        while (message := await communicator.receive_output(10)).get("more_body"):
            received += message["body"]
        await communicator.wait(10)
        return start["status"], received + message.get("body", b"")

    status, received = async_to_sync(request)()
    assert status == 200
    events = parse_sse(received)
    assert events[0]["type"] == "thread.created"
    assert events[-1]["type"] == "thread.item.done"
    assert len(written) == (1 if writes else 0)
