"""Database faults: a dead connection gets one retry; an unreachable database is a JSON 503.

The database is made unreachable for real: the connection settings are pointed at a
database that cannot be opened (SQLite: a file in a missing directory; PostgreSQL: a closed
port) and the open connections are closed, so the next query fails in the driver. A dead
connection is made by terminating its backend from another connection
(``pg_terminate_backend``), as a restart does (PostgreSQL only).
The whole restart, under load, is ``tests/live/test_db_restart.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from chatkit.server import StreamingResult
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.test import AsyncClient, Client, override_settings
from django.urls import reverse
from psycopg_pool import PoolTimeout

from chatkit_django.attachments import insert_attachment
from chatkit_django.consumers import ChatKitConsumer
from chatkit_django.models import Attachment, ThreadItem
from chatkit_django.reconnect import is_dead_connection_error
from chatkit_django.store import DjangoStore
from chatkit_django.streaming import EventStream
from tests.chatkit_client import ENDPOINT, parse_sse, post
from tests.factories import make_assistant_message, make_context, make_thread
from tests.live_server import free_port

LIST = json.dumps({"type": "threads.list", "params": {}})
SESSION_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def read_stream(*args, **kwargs):
    """An ``EventStream``'s events, read (``async for``): what Django's handler does."""
    return EventStream(*args, **kwargs).chunks()


@pytest.fixture
def take_database_down(transactional_db: None) -> Iterator[Callable[[], None]]:
    """Returns ``down()``: from then on no connection to the database can be opened."""
    settings = connections.settings["default"]
    saved = dict(settings)

    def down() -> None:
        if connection.vendor == "sqlite":
            settings["NAME"] = "/nonexistent-chatkit-dir/db.sqlite3"
        else:
            settings["PORT"] = str(free_port())
        connections.close_all()

    yield down
    settings.clear()
    settings.update(saved)
    connections.close_all()


def half_read(session: Any) -> bool:
    """A session whose load failed: accessed, but its data never arrived."""
    return session.accessed and not hasattr(session, "_session_cache")


def assert_database_unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["code"] == "database_unavailable"
    assert response["Retry-After"] == "1"


# -- 503 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("middleware", [[], SESSION_MIDDLEWARE], ids=["no-middleware", "session"])
async def test_endpoint_answers_503_while_the_database_is_down(
    middleware, take_database_down, auser_factory
):
    user = await auser_factory()
    client = AsyncClient()
    await client.aforce_login(user)
    await sync_to_async(take_database_down)()
    with override_settings(MIDDLEWARE=middleware):
        response = await post(client, LIST)
    assert_database_unavailable(response)
    assert not half_read(response.asgi_request.session)
    assert "sessionid" not in response.cookies  # still logged in


def test_channels_consumer_answers_503_while_the_database_is_down(take_database_down, user_factory):
    client = Client()
    client.force_login(user_factory())
    session = client.cookies["sessionid"].value
    take_database_down()
    communicator = HttpCommunicator(
        ChatKitConsumer.as_asgi(),
        "POST",
        ENDPOINT,
        body=LIST.encode(),
        headers=[
            (b"cookie", f"sessionid={session}; csrftoken={'c' * 32}".encode()),
            (b"x-csrftoken", b"c" * 32),
            (b"content-type", b"application/json"),
        ],
    )
    from asgiref.sync import async_to_sync

    response = async_to_sync(communicator.get_response)(timeout=10)
    assert response["status"] == 503
    headers = dict(response["headers"])
    assert headers[b"Retry-After"] == b"1"
    assert json.loads(response["body"])["code"] == "database_unavailable"


def test_entity_views_answer_503_while_the_database_is_down(
    take_database_down, user_factory, settings
):
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"]}
    client = Client()
    client.force_login(user_factory())
    take_database_down()
    assert_database_unavailable(client.get(reverse("chatkit:entity-search"), {"q": "x"}))
    assert_database_unavailable(client.get(reverse("chatkit:entity-preview"), {"id": "note_1"}))


def test_upload_and_content_views_answer_503_while_the_database_is_down(
    take_database_down, user_factory
):
    client = Client()
    client.force_login(user_factory())
    take_database_down()
    upload = SimpleUploadedFile("a.txt", b"hello", content_type="text/plain")
    assert_database_unavailable(client.post(reverse("chatkit:upload"), {"file": upload}))
    content = reverse("chatkit:attachment-content", kwargs={"attachment_id": "atc_1"})
    response = client.get(content)
    assert_database_unavailable(response)
    assert not half_read(response.wsgi_request.session)
    assert "sessionid" not in response.cookies


async def test_a_stream_ended_by_a_database_error_may_be_retried():
    async def failing(error: Exception):
        yield b'data: {"type":"stream_options"}\n\n'
        raise error

    async def last_event(error: Exception) -> dict:
        chunks = read_stream(StreamingResult(failing(error)), keepalive=60)
        return parse_sse(b"".join([c async for c in chunks]))[-1]

    assert await last_event(OperationalError("the database went away")) == {
        "type": "error",
        "code": "stream.error",
        "allow_retry": True,
    }
    # A bug is not worth retrying.
    assert (await last_event(RuntimeError("a bug")))["allow_retry"] is False


# -- which errors are a dead connection -----------------------------------------------------


def wrapped(cls: type[Exception], cause: BaseException) -> Exception:
    error = cls(str(cause))
    error.__cause__ = cause
    return error


def test_only_a_dead_connection_is_retried():
    dead = [
        wrapped(OperationalError, psycopg.OperationalError("server closed the connection")),
        wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(OperationalError, psycopg.errors.CannotConnectNow("the system is starting up")),
        wrapped(InterfaceError, psycopg.InterfaceError("the connection is closed")),
    ]
    alive = [
        # The server answered: the connection works.
        wrapped(OperationalError, psycopg.errors.QueryCanceled("statement timeout")),
        # The pool already waited for a connection; a retry would wait as long again.
        wrapped(OperationalError, PoolTimeout("couldn't get a connection after 5.00 sec")),
        wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
        OperationalError("no cause"),
        ValueError("not a database error"),
    ]
    assert [is_dead_connection_error(e) for e in dead] == [True] * len(dead)
    assert [is_dead_connection_error(e) for e in alive] == [False] * len(alive)


# -- one retry on a fresh connection (PostgreSQL) --------------------------------------------


def kill_connection() -> None:
    """Terminate the backend of this thread's connection, as a database restart does."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    s = connection.settings_dict
    other = f"host={s['HOST']} port={s['PORT']} user={s['USER']} dbname={s['NAME']}"
    with psycopg.connect(other, autocommit=True) as admin:
        # With a timeout, pg_terminate_backend waits until the backend is gone.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]


@pytest.mark.postgres
async def test_the_final_save_survives_a_dead_connection(transactional_db, auser_factory):
    user = await auser_factory()
    store, context = DjangoStore(), make_context(user)
    thread = make_thread()
    await store.save_thread(thread, context)
    await sync_to_async(kill_connection)()
    answer = make_assistant_message(thread.id, "the whole answer")
    await store.add_thread_item(thread.id, answer, context)
    saved = await ThreadItem.objects.aget(pk=answer.id)
    assert saved.preview == "the whole answer"


@pytest.mark.postgres
def test_an_attachment_write_survives_a_dead_connection(transactional_db, user_factory):
    user = user_factory()
    kill_connection()
    insert_attachment(id="atc_dead", owner=user, name="a.txt", mime_type="text/plain", data={})
    assert Attachment.objects.filter(pk="atc_dead").exists()


@pytest.mark.postgres
def test_no_retry_inside_a_transaction(transactional_db, user_factory):
    # Earlier statements of the transaction died with the connection: retrying the last
    # one alone would commit half of it.
    user = user_factory()
    with pytest.raises(OperationalError), transaction.atomic():
        kill_connection()
        insert_attachment(id="atc_tx", owner=user, name="a.txt", mime_type="text/plain", data={})
    connections.close_all()
    assert not Attachment.objects.filter(pk="atc_tx").exists()
