"""Throttles: how fast one user may spend the model, upload, dictate and make other requests.

Rates are DRF's strings (``"30/min"``), one per scope, in ``CHATKIT['THROTTLE_RATES']``. The
counters live in the Django cache ``CHATKIT['THROTTLE_CACHE']``, so with a shared cache
(Redis) a limit holds across workers and machines. A request is counted per user, or per
client address (DRF's ``get_ident``, which honours ``NUM_PROXIES``) when anonymous.

Each counter is a fixed window that opens with the first request: at most N requests until
it closes, and ``Retry-After`` says when that is. DRF's ``SimpleRateThrottle`` keeps a list
of timestamps instead, read and written back on every request (two cache round trips, and
two workers can both read the same list and both let a request through). Here one request
costs one round trip on Django's ``RedisCache``, atomic on the server, and none at all for
a scope without a rate.

The ChatKit endpoint asks ``ThrottledEndpointMixin.check_throttles()`` once the request is
authenticated and parsed, before any stream opens; the DRF views of the app list
``ChatKitThrottle`` in ``throttle_classes``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from chatkit.types import ChatKitReq
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from chatkit_django.conf import chatkit_settings, on_reload
from chatkit_django.exceptions import error_response

logger = logging.getLogger(__name__)

#: The scopes chatkit-django counts, each with its own rate in ``THROTTLE_RATES``.
SCOPES = ("respond", "upload", "transcribe", "other")

#: The scope of each ChatKit request type; every type not listed is ``"other"``.
#: ``threads.sync_custom_action`` runs the server's action like its streaming twin.
#: ``attachments.create`` starts a two-phase upload: it is counted there, once, and the
#: bytes sent to its single-use URL are not counted again as an upload.
REQUEST_SCOPES: dict[str, str] = {
    "threads.create": "respond",
    "threads.add_user_message": "respond",
    "threads.add_client_tool_output": "respond",
    "threads.add_structured_input": "respond",
    "threads.retry_after_item": "respond",
    "threads.custom_action": "respond",
    "threads.sync_custom_action": "respond",
    "attachments.create": "upload",
    "input.transcribe": "transcribe",
}

#: DRF's rate syntax, read strictly: DRF's parser only looks at the period's first letter,
#: so it would take "30/mango" as thirty a minute.
RATE_RE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)s?")

# Longer keys are hashed: memcached refuses keys over 250 bytes, and an anonymous client's
# ident is its X-Forwarded-For header, whose length the client chooses.
MAX_KEY_LENGTH = 200


class ChatKitThrottle(SimpleRateThrottle):
    """One scope's rate from ``CHATKIT['THROTTLE_RATES']``, counted in ``THROTTLE_CACHE``.

    ``ChatKitThrottle("respond")`` for the endpoint; in a DRF view's ``throttle_classes`` it
    takes the view's ``throttle_scope`` (``"other"`` when the view names none), as DRF's
    ``ScopedRateThrottle`` does. Override ``get_cache_key()`` to count by something else
    (a tenant, an API key...); returning ``None`` leaves a request uncounted.
    """

    cache_format = "chatkit_throttle_%(scope)s_%(ident)s"
    default_scope = "other"

    def __init__(self, scope: str | None = None) -> None:
        # Not DRF's __init__: it reads the rate now, and ours may depend on the view.
        self.scope = scope
        self.remaining = 0.0

    def get_rate(self) -> str | None:
        """The scope's rate, or ``None`` (not throttled) when ``THROTTLE_RATES`` sets none."""
        rates = chatkit_settings.THROTTLE_RATES or {}
        return rates.get(self.scope) if self.scope is not None else None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        key = self.cache_format % {"scope": self.scope, "ident": ident}
        if len(key) > MAX_KEY_LENGTH:
            digest = hashlib.sha256(str(ident).encode()).hexdigest()
            key = self.cache_format % {"scope": self.scope, "ident": digest}
        return key

    def is_counted(self, request: Any, view: Any) -> bool:
        """Set up the rate and key of this request; ``False`` when it is not throttled."""
        if self.scope is None:
            self.scope = getattr(view, "throttle_scope", None) or self.default_scope
        self.rate = self.get_rate()
        if self.rate is None:
            return False
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        return self.key is not None

    def allow_request(self, request: Any, view: Any) -> bool:
        """DRF's entry point (sync views)."""
        if not self.is_counted(request, view):
            return True
        # is_counted() set these (it returned True)
        assert self.key is not None and self.duration is not None
        assert self.num_requests is not None
        count, self.remaining = hit(self.key, self.duration, self.timer())
        return count <= self.num_requests

    async def aallow_request(self, request: Any, view: Any) -> bool:
        """The endpoint's entry point: the same count, without blocking the event loop."""
        if not self.is_counted(request, view):
            return True
        # is_counted() set these (it returned True)
        assert self.key is not None and self.duration is not None
        assert self.num_requests is not None
        count, self.remaining = await ahit(self.key, self.duration, self.timer())
        return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until this user's window for the scope closes."""
        return self.remaining


class ThrottledEndpointMixin:
    """The ChatKit endpoint's throttling: one scope per request type, checked before it runs."""

    def get_throttle_scope(self, request: ChatKitReq) -> str:
        """The scope ``request`` is counted in (see ``REQUEST_SCOPES``)."""
        return REQUEST_SCOPES.get(request.type, ChatKitThrottle.default_scope)

    def get_throttles(self, request: ChatKitReq) -> list[ChatKitThrottle]:
        """The throttles ``request`` must pass; override to add a global or per-tenant one."""
        return [ChatKitThrottle(self.get_throttle_scope(request))]

    async def check_throttles(
        self, http_request: HttpRequest, request: ChatKitReq
    ) -> JsonResponse | None:
        """A 429 when a throttle refuses the request, else ``None``.

        Runs after authentication (the count is per user) and parsing (the scope is the
        request's type), and before the server sees the request, so a refused stream never
        opens.
        """
        return await throttle_request(self.get_throttles(request), http_request, self)


async def throttle_request(
    throttles: list[ChatKitThrottle], request: HttpRequest, view: Any
) -> JsonResponse | None:
    """A 429 when one of ``throttles`` refuses ``request`` (the longest wait), else ``None``."""
    waits = [
        throttle.wait()
        for throttle in throttles
        if not await throttle.aallow_request(request, view)
    ]
    return throttled_response(max(waits)) if waits else None


def throttled_response(wait: float | None) -> JsonResponse:
    """429 in the app's error shape, with ``Retry-After`` in whole seconds (DRF's words)."""
    exc = Throttled(wait)
    response = error_response(str(exc.detail), exc.default_code, exc.status_code)
    exc_wait: int | None = exc.wait  # type: ignore[attr-defined]  # set in __init__, not in the stubs
    if exc_wait is not None:
        response["Retry-After"] = str(max(exc_wait, 1))
    return response


# -- the counters ------------------------------------------------------------------------


def hit(key: str, duration: int, now: float) -> tuple[int, float]:
    """Count one request against ``key``: its number in the window, and the seconds left."""
    alias = chatkit_settings.THROTTLE_CACHE
    cache = caches[alias]
    try:
        if isinstance(cache, RedisCache):
            return _redis_hit(_sync_redis(alias), cache.make_and_validate_key(key), duration)
        return _cache_hit(cache, key, duration, now)
    except Exception as e:  # noqa: BLE001 - any cache's errors; logged by _unavailable()
        return _unavailable(alias, e)


async def ahit(key: str, duration: int, now: float) -> tuple[int, float]:
    """``hit()`` for async code: Redis through ``redis.asyncio``, no thread involved.

    Django's own async cache methods run the sync ones in the request's thread, which an
    endpoint that holds no thread per request cannot afford. Local memory is counted inline
    (no I/O); other backends (Memcached, database) in a worker thread.
    """
    alias = chatkit_settings.THROTTLE_CACHE
    cache = caches[alias]
    try:
        if isinstance(cache, RedisCache):
            client = _async_redis(alias)
            return await _aredis_hit(client, cache.make_and_validate_key(key), duration)
        if isinstance(cache, LocMemCache):
            return _cache_hit(cache, key, duration, now)
        return await sync_to_async(_alias_hit, thread_sensitive=False)(alias, key, duration, now)
    except Exception as e:  # noqa: BLE001 - any cache's errors; logged by _unavailable()
        return _unavailable(alias, e)


def _unavailable(alias: str, error: Exception) -> tuple[int, float]:
    # A throttle that cannot count lets the request through: an outage of the cache must
    # not refuse every user. Logged, so that it does not go unnoticed.
    logger.warning("Throttle cache %r is unavailable; request not counted", alias, exc_info=error)
    return 0, 0.0


def _cache_hit(cache: BaseCache, key: str, duration: int, now: float) -> tuple[int, float]:
    """Any Django cache: read the window, write it back (not atomic across processes)."""
    window = cache.get(key)
    if not (isinstance(window, tuple) and len(window) == 2 and window[0] > now):
        window = (now + duration, 0)
    ends, count = window
    count += 1
    cache.set(key, (ends, count), math.ceil(ends - now))
    return count, ends - now


def _alias_hit(alias: str, key: str, duration: int, now: float) -> tuple[int, float]:
    # In the worker thread, with that thread's cache connection.
    return _cache_hit(caches[alias], key, duration, now)


# The window in one atomic transaction (MULTI/EXEC) and one round trip: create the counter
# with its expiry unless it exists, count, and read what is left of the window. Django's
# RedisCache stores integers as they are, so cache.get(key) reads the count too.
def _redis_hit(client: Any, key: str, duration: int) -> tuple[int, float]:
    pipe = client.pipeline(transaction=True)
    pipe.set(key, 0, ex=duration, nx=True).incr(key).pttl(key)
    _, count, ttl = pipe.execute()
    return count, _seconds_left(ttl, duration)


async def _aredis_hit(client: Any, key: str, duration: int) -> tuple[int, float]:
    pipe = client.pipeline(transaction=True)
    pipe.set(key, 0, ex=duration, nx=True).incr(key).pttl(key)
    _, count, ttl = await pipe.execute()
    return count, _seconds_left(ttl, duration)


def _seconds_left(ttl_ms: int, duration: int) -> float:
    return ttl_ms / 1000 if ttl_ms > 0 else float(duration)


def _redis_connection(alias: str) -> tuple[str, dict[str, Any]]:
    """The write server's URL and the pool options of ``CACHES[alias]``.

    Read from the settings as Django's ``RedisCacheClient`` reads them: the first server
    takes the writes, and ``OPTIONS`` go to the connection pool, except the three that name
    Django's own (sync) classes.
    """
    from django.conf import settings

    config = settings.CACHES[alias]
    location = config["LOCATION"]
    servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
    options = {
        name: value
        for name, value in config.get("OPTIONS", {}).items()
        if name not in ("pool_class", "parser_class", "serializer")
    }
    return servers[0], options


_sync_clients: dict[str, Any] = {}
_sync_clients_lock = threading.Lock()


def _client_key(url: str, options: dict[str, Any]) -> str:
    # Keyed by the connection, not the alias: CACHES may change (override_settings).
    return f"{url} {sorted(options.items())!r}"


def _sync_redis(alias: str) -> Any:
    url, options = _redis_connection(alias)
    key = _client_key(url, options)
    with _sync_clients_lock:
        client = _sync_clients.get(key)
        if client is None:
            import redis

            client = _sync_clients[key] = redis.Redis.from_url(url, **options)
    return client


# redis.asyncio connections belong to the event loop that opened them: one client per loop.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def _async_redis(alias: str) -> Any:
    url, options = _redis_connection(alias)
    key = _client_key(url, options)
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(key)
    if client is None:
        import redis.asyncio

        client = clients[key] = redis.asyncio.Redis.from_url(url, **options)
    return client


async def aclose_clients() -> None:
    """Close this event loop's Redis clients (tests, or an ASGI lifespan shutdown)."""
    clients = _async_clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()


@on_reload
def close_clients() -> None:
    """Close the Redis clients of sync code; a new one opens on the next request.

    Clients are keyed by their connection, so one for a changed ``CACHES`` entry is new
    anyway; this closes those of the old settings when ``CHATKIT`` changes, and in tests.
    """
    with _sync_clients_lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()
