"""``sse_events``: the pump between the SDK's stream and the response, on its own."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatkit_django.streaming import SSE_KEEPALIVE, EventStreamResponse, sse_events


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


async def collect(stream) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_events_flowing_faster_than_the_interval_get_no_keepalive():
    script = Script(b"a", 0.01, b"b", 0.01, b"c", 0.01, b"d")
    chunks = await collect(sse_events(script, keepalive=0.2))
    assert b"".join(chunks) == b"abcd"
    assert SSE_KEEPALIVE not in chunks
    assert script.finished


async def test_silence_longer_than_the_interval_sends_keepalives_between_events():
    script = Script(b"a", 0.35, b"b")
    chunks = await collect(sse_events(script, keepalive=0.1))
    assert chunks[0] == b"a"
    assert chunks[-1] == b"b"
    # 0.35 s of silence at a 0.1 s interval: three comments (timers can run late, not early).
    assert 2 <= chunks.count(SSE_KEEPALIVE) <= 3
    assert set(chunks[1:-1]) == {SSE_KEEPALIVE}


async def test_the_silence_is_counted_from_the_last_write():
    # Each gap is shorter than the interval, though together they are far longer.
    script = Script(b"a", 0.06, b"b", 0.06, b"c", 0.06, b"d", 0.06, b"e")
    chunks = await collect(sse_events(script, keepalive=0.1))
    assert SSE_KEEPALIVE not in chunks
    assert b"".join(chunks) == b"abcde"


async def test_events_produced_while_the_reader_is_busy_go_out_in_one_write():
    script = Script(b"a", b"b", b"c", 0.01, b"d")
    stream = sse_events(script, keepalive=5)
    first = await anext(stream)
    # The generator yields nothing between "a", "b" and "c", so the reader finds all three.
    assert first == b"abc"
    assert await collect(stream) == [b"d"]


async def test_an_error_outside_the_sdk_ends_the_stream_with_its_error_event():
    script = Script(b"data: {}\n\n", RuntimeError("row vanished"))
    chunks = await collect(sse_events(script, keepalive=5))
    assert chunks[0] == b"data: {}\n\n"
    assert chunks[-1].startswith(b"data: ")
    event = json.loads(chunks[-1][len(b"data: ") :])
    assert event == {"type": "error", "code": "stream.error", "allow_retry": False}


async def test_closing_the_reader_cancels_the_stream_and_waits_for_its_cleanup():
    script = Script(b"a", float("inf"), b"never")
    stream = sse_events(script, keepalive=5)
    assert await anext(stream) == b"a"
    await stream.aclose()
    # aclose() returned only after the SDK's cancellation handling had run.
    assert script.cancelled
    assert not script.finished


async def test_cancelling_the_reading_task_cancels_the_stream():
    script = Script(b"a", float("inf"), b"never")
    started = asyncio.Event()

    async def read():
        async for chunk in sse_events(script, keepalive=5):
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
    await collect(sse_events(Script(b"a", 0.01, b"b"), keepalive=0.05))
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
    chunks = await collect(sse_events(script, keepalive=5, release=release, release_every=0.1))
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
    chunks = await collect(sse_events(script, keepalive=5, release=release, release_every=0.1))
    assert b"".join(chunks) == b"ab"
    assert "Releasing database connections" in caplog.text


async def test_no_release_without_an_interval():
    calls = []

    async def release():
        calls.append(1)

    await collect(sse_events(Script(b"a", 0.2, b"b"), keepalive=5, release=release))
    assert calls == []
