"""``DjangoChatKitServer.process``: the SDK's routing, without a pydantic adapter per request."""

from __future__ import annotations

import json

import chatkit.server
import pytest
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ThreadListParams, ThreadsListReq
from django.test import AsyncClient, override_settings

from chatkit_django.models import Thread, ThreadItem
from chatkit_django.server import DjangoChatKitServer, get_server
from tests.chatkit_client import add_message_req, body, create_req, parse_sse, post, read_stream
from tests.factories import make_context
from tests.testapp.server import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)


async def drain(result: StreamingResult) -> bytes:
    return b"".join([chunk async for chunk in result])


async def test_process_answers_as_the_sdk_does(auser_factory):
    user = await auser_factory()
    server = EchoServer()
    context = make_context(user)
    events = parse_sse(await drain(await server.process(body(create_req("hi")), context)))
    assert events[0]["type"] == "thread.created"
    assert events[-1]["item"]["content"][0]["text"] == "echo: hi"

    list_body = body(ThreadsListReq(params=ThreadListParams(limit=5)))
    ours = await server.process(list_body, context)
    sdks = await ChatKitServer.process(server, list_body, context)
    assert isinstance(ours, NonStreamingResult)
    assert ours.json == sdks.json
    assert [t["id"] for t in json.loads(ours.json)["data"]] == [events[0]["thread"]["id"]]


async def test_process_builds_no_adapter_per_request(auser_factory, monkeypatch):
    class NoAdapter:
        def __class_getitem__(cls, item):
            return cls

        def __init__(self, *args, **kwargs):
            raise AssertionError("a TypeAdapter was built for this request")

    # The SDK's own process() builds chatkit.server.TypeAdapter[ChatKitReq] on every call.
    monkeypatch.setattr(chatkit.server, "TypeAdapter", NoAdapter)
    context = make_context(await auser_factory())
    request = body(ThreadsListReq(params=ThreadListParams()))
    with pytest.raises(AssertionError):
        await ChatKitServer.process(EchoServer(), request, context)
    result = await EchoServer().process(request, context)
    assert json.loads(result.json)["data"] == []


class RecordingServer(EchoServer):
    """A project server that overrides ``process()``: the endpoint must call it."""

    bodies: list[bytes] = []

    async def process(self, request, context):
        RecordingServer.bodies.append(request)
        return await super().process(request, context)


async def test_the_endpoint_calls_a_server_that_overrides_process(auser_factory):
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    RecordingServer.bodies = []
    with override_settings(CHATKIT={"SERVER_CLASS": "tests.endpoint.test_server.RecordingServer"}):
        response = await post(client, create_req("overridden"))
        events = parse_sse(await read_stream(response))
    assert events[-1]["item"]["content"][0]["text"] == "echo: overridden"
    assert len(RecordingServer.bodies) == 1
    assert json.loads(RecordingServer.bodies[0])["type"] == "threads.create"
    assert await Thread.objects.acount() == 1


async def test_the_endpoint_hands_our_servers_the_parsed_request(auser_factory, monkeypatch):
    async def refuse(self, request, context):
        raise AssertionError("the body was handed over to be parsed again")

    calls = []
    original = DjangoChatKitServer.process_request

    async def spy(self, request, context):
        calls.append(request.type)
        return await original(self, request, context)

    monkeypatch.setattr(DjangoChatKitServer, "process", refuse)
    monkeypatch.setattr(DjangoChatKitServer, "process_request", spy)
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    response = await post(client, body(ThreadsListReq(params=ThreadListParams())))
    assert response.status_code == 200
    assert json.loads(response.content)["data"] == []
    assert calls == ["threads.list"]


async def test_the_endpoint_asks_the_server_to_check_a_request_before_it_streams(
    auser_factory,
):
    user = await auser_factory()
    client = AsyncClient()
    await client.aforce_login(user)
    settings = {"SERVER_CLASS": "tests.testapp.server.ArchivingServer"}
    with override_settings(CHATKIT=settings):
        events = parse_sse(await read_stream(await post(client, create_req("first"))))
        thread_id = events[0]["thread"]["id"]
        response = await post(client, add_message_req(thread_id, "more"))
        assert parse_sse(await read_stream(response))[-1]["item"]["type"] == "assistant_message"
        server = get_server()
        thread = await server.store.load_thread(thread_id, make_context(user))
        thread.metadata["archived"] = True
        await server.store.save_thread(thread, make_context(user))
        response = await post(client, add_message_req(thread_id, "more"))
        assert response.status_code == 400
        assert response.json() == {
            "detail": f"Thread {thread_id} is archived.",
            "code": "invalid_request",
        }
        # The default checks still run first: a missing thread is a 404.
        response = await post(client, add_message_req("thr_missing", "more"))
        assert response.status_code == 404
    assert await ThreadItem.objects.filter(thread_id=thread_id).acount() == 4


async def test_process_checks_a_streaming_request_before_it_streams(auser_factory):
    # Every way into the server gets the check, not only the endpoint: process() with a body
    # raises before handing out a stream; the SDK alone raises only once it is streaming
    # (the endpoint would have sent a 200 by then).
    server = EchoServer()
    context = make_context(await auser_factory())
    with pytest.raises(NotFoundError, match="thr_missing"):
        await server.process(body(add_message_req("thr_missing", "hi")), context)
    sdk_result = await ChatKitServer.process(
        server, body(add_message_req("thr_missing", "hi")), context
    )
    with pytest.raises(NotFoundError, match="thr_missing"):
        await drain(sdk_result)
