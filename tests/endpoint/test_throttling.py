"""Throttles: each scope answers 429 with Retry-After once its rate is spent, per user, in
Django's cache (local memory here; Redis below and in tests/live/test_throttling.py)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio.connection
from chatkit.types import (
    Action,
    ThreadCustomActionParams,
    ThreadListParams,
    ThreadRetryAfterItemParams,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
)
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import AsyncClient
from django.urls import reverse

from chatkit_django import throttling
from chatkit_django.models import Attachment, Thread
from chatkit_django.throttling import ChatKitThrottle
from tests.chatkit_client import (
    add_message_req,
    body,
    create_req,
    parse_sse,
    post,
    read_stream,
    transcribe_request,
    upload,
)
from tests.factories import PNG, make_upload
from tests.live_server import free_port
from tests.settings import REDIS_URL

pytestmark = pytest.mark.django_db(transaction=True)

DETAIL = re.compile(r"Request was throttled\. Expected available in (\d+) seconds?\.")


class CountingCache(LocMemCache):
    """Local memory that counts the calls the throttles make (each would be a round trip)."""

    calls = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        return super().get(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        return super().set(*args, **kwargs)


@pytest.fixture
def rates(settings: Any) -> Any:
    """``rates(respond="2/min", ...)`` sets THROTTLE_RATES; counters start from zero."""
    settings.CACHES = {
        **settings.CACHES,
        "throttles": {
            "BACKEND": "tests.endpoint.test_throttling.CountingCache",
            "LOCATION": "throttles",
        },
    }
    CountingCache.calls = 0

    def set_rates(cache: str = "throttles", **scopes: str | None) -> None:
        settings.CHATKIT = {**settings.CHATKIT, "THROTTLE_RATES": scopes, "THROTTLE_CACHE": cache}

    yield set_rates
    caches["throttles"].clear()


def assert_throttled(response: Any, window: int) -> int:
    """A JSON 429 in the app's shape whose Retry-After fits the window; returns it."""
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert not response.streaming
    retry_after = response["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= window
    body = response.json()
    assert body["code"] == "throttled"
    match = DETAIL.fullmatch(body["detail"])
    assert match is not None, body
    assert int(match.group(1)) == int(retry_after)
    return int(retry_after)


async def create_thread(user_client: AsyncClient, text: str = "hello") -> list[dict[str, Any]]:
    response = await post(user_client, create_req(text))
    assert response.status_code == 200
    return parse_sse(await read_stream(response))


# -- the endpoint ------------------------------------------------------------------------


async def test_streaming_requests_share_respond_and_are_refused_before_the_stream(
    user_client: AsyncClient, rates: Any
) -> None:
    rates(respond="3/min")
    events = await create_thread(user_client)
    thread_id = events[0]["thread"]["id"]
    response = await post(user_client, add_message_req(thread_id, "again"))
    assert response.status_code == 200
    user_item = parse_sse(await read_stream(response))[0]["item"]["id"]
    retry = ThreadsRetryAfterItemReq(
        params=ThreadRetryAfterItemParams(thread_id=thread_id, item_id=user_item)
    )
    response = await post(user_client, retry)
    assert response.status_code == 200
    await read_stream(response)

    for refused in (create_req("fourth"), add_message_req(thread_id, "fifth"), retry):
        assert_throttled(await post(user_client, refused), 60)

    assert await Thread.objects.acount() == 1
    # The thread holds the answered turns (the retry replaced one) and nothing refused.
    items = await post(
        user_client, json.dumps({"type": "items.list", "params": {"thread_id": thread_id}})
    )
    assert items.status_code == 200
    assert len(items.json()["data"]) == 4  # 2 user messages and their answers


async def test_non_streaming_action_counts_as_respond(user_client: AsyncClient, rates: Any) -> None:
    rates(respond="1/min")
    thread_id = (await create_thread(user_client))[0]["thread"]["id"]
    action = ThreadsSyncCustomActionReq(
        params=ThreadCustomActionParams(thread_id=thread_id, action=Action(type="ping"))
    )
    assert_throttled(await post(user_client, action), 60)


async def test_other_requests_have_their_own_rate(user_client: AsyncClient, rates: Any) -> None:
    rates(other="2/min")
    listing = ThreadsListReq(params=ThreadListParams())
    assert (await post(user_client, listing)).status_code == 200
    assert (await post(user_client, listing)).status_code == 200
    assert_throttled(await post(user_client, listing), 60)
    # respond has no rate: not throttled, not even counted.
    await create_thread(user_client)
    await create_thread(user_client)


async def test_scopes_without_a_rate_cost_no_cache_call(
    user_client: AsyncClient, rates: Any
) -> None:
    rates(respond="1/min")
    listing = ThreadsListReq(params=ThreadListParams())
    for _ in range(5):
        assert (await post(user_client, listing)).status_code == 200
    assert CountingCache.calls == 0
    await create_thread(user_client)
    assert CountingCache.calls == 2  # one read and one write of the window


async def test_another_user_keeps_their_own_count(
    user_client: AsyncClient, rates: Any, auser_factory: Any
) -> None:
    rates(respond="1/min")
    await create_thread(user_client)
    assert_throttled(await post(user_client, create_req()), 60)

    other = AsyncClient()
    await other.aforce_login(await auser_factory())
    await create_thread(other)
    assert_throttled(await post(other, create_req()), 60)


async def test_the_window_reopens_when_retry_after_has_passed(
    user_client: AsyncClient, rates: Any, monkeypatch: Any
) -> None:
    rates(respond="1/min")
    now = 1_000_000.0
    monkeypatch.setattr(ChatKitThrottle, "timer", lambda self: now)
    await create_thread(user_client)
    now += 20
    assert assert_throttled(await post(user_client, create_req()), 60) == 40
    now += 39.5
    assert assert_throttled(await post(user_client, create_req()), 60) == 1
    now += 0.5
    await create_thread(user_client)


class AddressedClient(AsyncClient):
    """A client at another address (the ASGI scope's ``client``, Django's REMOTE_ADDR)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        return {**super()._base_scope(**request), "client": [self.address, 0]}


async def test_anonymous_clients_are_counted_by_address(settings: Any, rates: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ALLOW_ANONYMOUS": True}
    rates(other="1/min")
    listing = ThreadsListReq(params=ThreadListParams())
    first, second = AddressedClient("10.0.0.1"), AddressedClient("10.0.0.2")
    assert (await post(first, listing)).status_code == 200
    assert_throttled(await post(first, listing), 60)
    assert (await post(second, listing)).status_code == 200

    # Behind one proxy (DRF's NUM_PROXIES), the address the proxy saw is the aclient's, and
    # what the user_client itself put in X-Forwarded-For does not give it a new count.
    settings.REST_FRAMEWORK = {"NUM_PROXIES": 1}
    proxy = AddressedClient("10.0.0.254")
    assert (
        await post(proxy, listing, headers={"X-Forwarded-For": "1.1.1.1, 10.0.0.3"})
    ).status_code == 200
    assert_throttled(
        await post(proxy, listing, headers={"X-Forwarded-For": "2.2.2.2, 10.0.0.3"}), 60
    )
    assert (
        await post(proxy, listing, headers={"X-Forwarded-For": "1.1.1.1, 10.0.0.4"})
    ).status_code == 200


async def test_dictation_is_refused_before_reaching_openai(
    fake_openai: Any, user_client: AsyncClient, rates: Any
) -> None:
    rates(transcribe="1/min")
    request = json.dumps(transcribe_request(b"audio", "audio/webm"))
    assert (await post(user_client, request)).json() == {"text": "dictated text"}
    assert_throttled(await post(user_client, request), 60)
    assert len(fake_openai.requests) == 1


# -- uploads (DRF views) -----------------------------------------------------------------


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_direct_upload_is_refused_and_stores_nothing(
    client: Any, user_factory: Any, rates: Any
) -> None:
    rates(upload="1/min")
    client.force_login(user_factory())
    assert upload(client).status_code == 201
    assert_throttled(upload(client), 60)
    assert Attachment.objects.count() == 1


def create_attachment_req() -> str:
    params = {"name": "cat.png", "size": len(PNG), "mime_type": "image/png"}
    return json.dumps({"type": "attachments.create", "params": params})


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_two_phase_upload_is_counted_once_with_direct_ones(
    client: Any, user_factory: Any, rates: Any
) -> None:
    rates(upload="2/min")
    client.force_login(user_factory())
    assert upload(client).status_code == 201
    created = client.post("/chatkit/", create_attachment_req(), content_type="application/json")
    assert created.status_code == 200
    assert_throttled(
        client.post("/chatkit/", create_attachment_req(), content_type="application/json"), 60
    )
    assert_throttled(upload(client), 60)
    assert Attachment.objects.count() == 2

    # The bytes of the upload that was let in are not counted a second time.
    url = created.json()["upload_descriptor"]["url"].removeprefix("http://testserver")
    client.logout()
    assert client.put(url, PNG, content_type="image/png").status_code == 200


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_attachment_content_counts_as_other(client: Any, user_factory: Any, rates: Any) -> None:
    rates(other="1/min")
    client.force_login(user_factory())
    attachment_id = upload(client).json()["id"]
    url = reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    assert client.get(url).status_code == 200
    assert_throttled(client.get(url), 60)


async def test_entity_views_count_as_other(
    user_client: AsyncClient, rates: Any, settings: Any
) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"],
    }
    rates(other="2/min")
    search = reverse("chatkit:entity-search")
    assert (await user_client.get(search, {"q": "a"})).status_code == 200
    preview = await user_client.get(reverse("chatkit:entity-preview"), {"id": "note:1"})
    assert preview.status_code == 404  # counted all the same
    assert_throttled(await user_client.get(search, {"q": "ab"}), 60)


# -- Redis, and a cache that is down -----------------------------------------------------


@pytest.fixture
def redis_cache(settings: Any) -> Any:
    """A RedisCache alias on our own database and key prefix; only our keys are removed."""
    prefix = f"throttles-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
    }
    yield prefix
    throttling.close_clients()
    server = redis.Redis.from_url(REDIS_URL)
    for key in server.scan_iter(match=f"{prefix}:*"):
        server.delete(key)
    server.close()


@pytest.fixture
async def round_trips(monkeypatch: Any) -> Any:
    """Counts the commands (pipelines count once) redis.asyncio sends; closes its clients."""
    sent: list[Any] = []
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(command)
        return await original(self, command, *args, **kwargs)

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "send_packed_command", counting
    )
    yield sent
    await throttling.aclose_clients()
    throttling.close_clients()


async def test_redis_counts_in_one_round_trip_shared_with_sync_views(
    user_client: AsyncClient, rates: Any, redis_cache: str, round_trips: list[Any]
) -> None:
    rates(cache="redis", upload="2/min", respond="5/min")
    await create_thread(user_client)  # opens the connection (a few commands of its own)
    round_trips.clear()
    response = await post(user_client, create_attachment_req())
    assert response.status_code == 200
    assert len(round_trips) == 1
    # The counter is the cache's own integer, readable through Django's API (the sync path
    # of the upload views reads and writes the same key).
    key = f"chatkit_throttle_upload_{user_client.user.pk}"
    assert await caches["redis"].aget(key) == 1
    server = redis.Redis.from_url(REDIS_URL)
    assert 0 < server.pttl(f"{redis_cache}:1:{key}") <= 60_000
    server.close()

    multipart = await user_client.post(reverse("chatkit:upload"), {"file": _png_file()})
    assert multipart.status_code == 201
    assert await caches["redis"].aget(key) == 2
    assert_throttled(await post(user_client, create_attachment_req()), 60)


def _png_file() -> Any:

    return make_upload()


async def test_an_unreachable_cache_lets_requests_through_and_logs(
    user_client: AsyncClient, rates: Any, settings: Any, caplog: Any, round_trips: list[Any]
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        },
    }
    rates(cache="down", respond="1/min", upload="1/min")
    caplog.set_level(logging.WARNING, logger="chatkit_django.throttling")
    await create_thread(user_client)
    await create_thread(user_client)
    response = await user_client.post(reverse("chatkit:upload"), {"file": _png_file()})
    assert response.status_code == 201
    messages = [r.getMessage() for r in caplog.records if r.name == "chatkit_django.throttling"]
    assert messages == ["Throttle cache 'down' is unavailable; request not counted"] * 3


async def test_the_demo_rates_are_valid_and_throttle(
    user_client: AsyncClient, rates: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    import importlib

    from chatkit_django.checks import check_settings

    monkeypatch.setenv("CHATKIT_DEMO_DATA", str(tmp_path))
    demo = importlib.import_module("example_project.settings").CHATKIT["THROTTLE_RATES"]
    rates(**demo)
    assert check_settings() == []
    for _ in range(20):
        await create_thread(user_client)
    assert_throttled(await post(user_client, create_req()), 60)


async def test_a_project_throttle_from_get_throttles(
    user_client: AsyncClient, rates: Any, auser_factory: Any, monkeypatch: Any
) -> None:
    from tests.testapp.throttles import SiteWideThrottle

    rates(respond="3/min")
    monkeypatch.setattr(SiteWideThrottle, "get_rate", lambda self: "2/min")
    capped = "/chatkit-capped/"
    other = AsyncClient()
    await other.aforce_login(await auser_factory())
    first = await user_client.post(capped, body(create_req()), content_type="application/json")
    assert first.status_code == 200
    await read_stream(first)
    second = await other.post(capped, body(create_req()), content_type="application/json")
    assert second.status_code == 200
    await read_stream(second)
    # The site's count is spent, though each user has sent one of their three.
    assert_throttled(
        await user_client.post(capped, body(create_req()), content_type="application/json"), 60
    )
    # The default endpoint keeps the per-user throttle only.
    await create_thread(user_client)
