"""Surviving a database restart: a write that meets a dead connection is retried once.

When PostgreSQL restarts (a failover, ``pg_ctl restart``), every open connection dies, and
each is found dead only when it is next used: the connection a pool hands out after the
restart, or the one a request took before it. The store's writes are upserts or inserts
that tolerate being run twice, so ``retry_on_dead_connection`` runs a write again, once, when
it failed on a dead connection: the connection is discarded (a pool also drops its other
idle connections that died with it) and the next query opens a fresh one. Without this, an
answer the client has seen streamed in full would be lost at its final save.

Nothing is retried inside a transaction (its earlier statements died with the connection),
when the database is down (connecting fails; the caller answers 503) or when a pool's wait
for a connection timed out (retrying would wait as long again).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections

from chatkit_django._internal.compat import session_loaded

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: The errors a database that went away raises: Django's wrappers of the driver's.
DATABASE_ERRORS = (OperationalError, InterfaceError)

# SQLSTATE classes of a connection that died or is being shut down: 08 (connection
# exception) and 57P (operator intervention: admin_shutdown, crash_shutdown, cannot_connect_now).
_DEAD_SQLSTATES = ("08", "57P")


def is_dead_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the connection died (rather than the query failing on it).

    ``InterfaceError`` is a closed connection. A driver ``OperationalError`` without a
    SQLSTATE is the client noticing a lost connection ("server closed the connection
    unexpectedly"); with one, the server answered, so only shutdown and connection codes
    count. A pool's timeout is not a dead connection: the pool already waited.
    """
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__
    if cause is None or type(cause).__name__ == "PoolTimeout":
        return False
    if not hasattr(cause, "sqlstate") and not hasattr(cause, "pgcode"):
        return False  # not PostgreSQL (SQLite's "database is locked"...)
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code is None or code.startswith(_DEAD_SQLSTATES)


def discard_dead_connections() -> bool:
    """Close this thread's connections that no longer work; whether a retry may follow.

    Synchronous: connections belong to the thread that runs the ORM's queries, so call it
    there (``sync_to_async``, as the async ORM does). A pooled connection goes back to its
    pool, which drops it as broken; ``pool.check()`` then drops the idle ones that died with
    it, so that the retry (and the next requests) get a live one. No retry inside a
    transaction: its earlier statements were lost with the connection.
    """
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            return False
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.is_usable():
            continue
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the connection is gone either way
            conn.connection = None
        pool = getattr(conn, "pool", None)
        if pool is not None:
            try:
                pool.check()
            except Exception:
                logger.debug("Checking the connection pool of %r failed", conn.alias, exc_info=True)
    return True


def forget_half_read_session(request: HttpRequest) -> None:
    """Put a fresh copy of a session whose load failed on ``request``, never read.

    A ``SessionStore`` whose load raised is marked accessed but holds no data (its
    ``_session_cache`` is missing: the ``AttributeError`` chained to every such traceback).
    Whatever reads it later in the request (a receiver, a middleware's response phase) would
    run the failed load again, or work from a session that was never read. The fresh copy has
    the same key and has not been accessed: nothing is taken from the half-read one.
    """
    from django.contrib.sessions.backends.base import SessionBase

    session = getattr(request, "session", None)
    if not isinstance(session, SessionBase) or session_loaded(session):
        return
    if session.accessed:
        request.session = type(session)(session.session_key)


def _retrying(error: BaseException, name: str) -> None:
    logger.warning("%s failed on a dead database connection; retrying once: %s", name, error)


def retry_on_dead_connection(func: F) -> F:
    """Decorate a write (sync or async) so that a dead connection gets one retry.

    The write must be safe to run twice (an upsert, or an insert whose second run finds the
    row), since the first run may have committed before its connection died.
    """
    name = func.__qualname__
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except DATABASE_ERRORS as error:
                if (
                    not is_dead_connection_error(error)
                    or not await sync_to_async(discard_dead_connections)()
                ):
                    raise
                _retrying(error, name)
            return await func(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DATABASE_ERRORS as error:
            if not is_dead_connection_error(error) or not discard_dead_connections():
                raise
            _retrying(error, name)
        return func(*args, **kwargs)

    return cast(F, wrapper)
