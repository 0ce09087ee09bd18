"""Throttles across workers: two uvicorn processes share one Redis, and one limit."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from django.test import Client

from tests.chatkit_client import ENDPOINT, body, create_req, parse_sse
from tests.factories import PNG
from tests.settings import REDIS_URL

pytestmark = pytest.mark.live


@pytest.fixture
def two_workers(live_server_factory: Any) -> Any:
    """Two server processes counting in one Redis database, under a key prefix of ours.

    The first serves the endpoint as ``ChatKitView``, the second as Channels'
    ``ChatKitConsumer``: both ways count in the same place.
    """
    prefix = f"throttles-live-{uuid.uuid4().hex}"
    throttle = {
        "cache": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
        "rates": {"respond": "4/min", "upload": "1/min"},
    }
    env = {"CHATKIT_TEST_THROTTLE": json.dumps(throttle)}
    yield (
        live_server_factory(env=env),
        live_server_factory("tests.channels_asgi:application", env=env),
    )
    server = redis.Redis.from_url(REDIS_URL)
    for key in server.scan_iter(match=f"{prefix}:*"):
        server.delete(key)
    server.close()


def login(user: Any) -> dict[str, Any]:
    """Cookies and headers of a logged-in browser session, CSRF token included."""
    client = Client()
    client.force_login(user)
    token = "c" * 32
    return {
        "cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": token},
        "headers": {"X-CSRFToken": token},
    }


def create(base: str, session: dict[str, Any], text: str = "hi") -> httpx.Response:
    headers = {**session["headers"], "Content-Type": "application/json"}
    return httpx.post(
        base + ENDPOINT,
        content=body(create_req(text)),
        cookies=session["cookies"],
        headers=headers,
        timeout=60,
    )


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.json()["code"] == "throttled"


def test_the_limit_holds_across_workers(two_workers: Any, user_factory: Any) -> None:
    first, second = two_workers
    session = login(user_factory())
    for n in range(4):
        response = create(first if n % 2 == 0 else second, session, f"turn {n}")
        assert response.status_code == 200
        assert parse_sse(response.content)[-1]["item"]["content"][0]["text"] == f"echo: turn {n}"
    assert_throttled(create(first, session))
    assert_throttled(create(second, session))
    # Another user has a count of their own, on either worker.
    other = login(user_factory())
    assert create(second, other).status_code == 200

    # The upload views (sync DRF views) count in the same place.
    files = {"file": ("cat.png", PNG, "image/png")}
    upload = {**session, "files": files, "timeout": 60}
    assert httpx.post(first + "/chatkit/upload/", **upload).status_code == 201
    assert_throttled(httpx.post(second + "/chatkit/upload/", **upload))


def test_concurrent_requests_on_both_workers_get_exactly_the_rate(
    two_workers: Any, user_factory: Any
) -> None:
    first, second = two_workers
    session = login(user_factory())
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda n: create(first if n % 2 else second, session, f"{n}"), range(12))
        )
    statuses = sorted(r.status_code for r in responses)
    # Counted atomically in Redis: never a fifth request let through by a race.
    assert statuses == [200] * 4 + [429] * 8
