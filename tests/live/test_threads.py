"""Open streams over a real uvicorn process: OS threads, and a database pool that runs dry.

``chatkit_django.asgi`` runs every request's sync code on ``REQUEST_THREADS`` shared threads,
so open streams do not hold a thread each; when no pooled connection frees up within the
pool's ``timeout``, the endpoint answers a JSON 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from chatkit_django.models import ThreadItem
from tests import ROOT
from tests.chatkit_client import ENDPOINT, body, create_req, parse_sse
from tests.live_server import PROCESSES, run_live_server

pytestmark = pytest.mark.live

SHARED = "tests.shared_asgi:application"
SCRIPTED = {"CHATKIT_TEST_SERVER_CLASS": "tests.testapp.server.ScriptedServer"}
FIRST_DELTA = b'"delta":"partial "'


def os_threads(base_url: str) -> int:
    return len(os.listdir(f"/proc/{PROCESSES[base_url].pid}/task"))


async def open_streams(
    base_url: str, cookies: dict[str, str], headers: dict[str, str], gate: Path, count: int
) -> tuple[int, list[bytes]]:
    """``count`` streams waiting on ``gate``; the server's OS threads while all are open, and
    the streams' bytes once the gate opened."""
    request = body(create_req(f"gate {gate}"))
    opened = 0
    all_open = asyncio.Event()

    async with httpx.AsyncClient(
        base_url=base_url,
        cookies=cookies,
        headers=headers,
        timeout=60,
        limits=httpx.Limits(max_connections=count, max_keepalive_connections=count),
    ) as http:

        async def one() -> bytes:
            nonlocal opened
            seen = b""
            async with http.stream("POST", ENDPOINT, content=request) as response:
                assert response.status_code == 200, await response.aread()
                async for chunk in response.aiter_raw():
                    if FIRST_DELTA not in seen and FIRST_DELTA in seen + chunk:
                        opened += 1
                        if opened == count:
                            all_open.set()
                    seen += chunk
            return seen

        streams = [asyncio.create_task(one()) for _ in range(count)]
        waiting = asyncio.create_task(all_open.wait())
        # Until all are open, or one ends first (it failed: gather() raises its error).
        await asyncio.wait([waiting, *streams], return_when=asyncio.FIRST_COMPLETED, timeout=60)
        if not all_open.is_set():
            waiting.cancel()
            await asyncio.gather(*streams)
        threads = os_threads(base_url)
        gate.touch()  # noqa: ASYNC240 - one syscall, the test process's own loop
        return threads, await asyncio.gather(*streams)


def test_sixty_open_streams_share_a_few_threads(live_server_factory, session, tmp_path):
    base = live_server_factory(SHARED, env=SCRIPTED)
    _, cookies, headers = session
    threads, streams = asyncio.run(open_streams(base, cookies, headers, tmp_path / "gate", 60))
    # REQUEST_THREADS (8), the event loop's thread and a few helpers; Django's own handler
    # holds one thread per open stream, over 60.
    assert threads < 30
    thread_ids = set()
    for raw in streams:
        events = parse_sse(raw)
        assert events[-1]["item"]["content"][0]["text"] == "partial done"
        thread_ids.add(events[0]["thread"]["id"])
    saved = ThreadItem.objects.filter(thread_id__in=thread_ids, type="assistant_message")
    assert len(thread_ids) == 60
    assert sorted(row.data["content"][0]["text"] for row in saved) == ["partial done"] * 60


MIGRATE_AND_LOG_IN = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
client = Client()
client.force_login(get_user_model().objects.create_user("pooled", password="pw"))
print(client.cookies["sessionid"].value)
"""


@pytest.fixture(scope="module")
def pooled_database() -> Iterator[tuple[dict[str, str], str]]:
    """A PostgreSQL database of its own (whichever database the suite runs on), migrated,
    with a logged-in user: the environment for a live server on it, and the session key."""
    name = f"chatkit_pool_{os.getpid()}"
    admin = "host=127.0.0.1 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {"CHATKIT_TEST_DB": "postgres", "CHATKIT_LIVE_DB_NAME": name}
    try:
        session_key = subprocess.run(
            [sys.executable, "-c", MIGRATE_AND_LOG_IN],
            cwd=ROOT,
            env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield env, session_key
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("app", [SHARED, "tests.asgi:application"])
def test_a_pool_that_runs_dry_answers_503_with_retry_after(pooled_database, app, tmp_path):
    env, session_key = pooled_database
    token = "b" * 32
    cookies = {"sessionid": session_key, "csrftoken": token}
    headers = {"X-CSRFToken": token, "Content-Type": "application/json"}
    pool = {"min_size": 1, "max_size": 2, "timeout": 0.5}
    env = {
        **env,
        **SCRIPTED,
        "CHATKIT_TEST_POOL": json.dumps(pool),
        # Django's handler: each open stream keeps its connection; the shared threads: each
        # of the two threads the streams run on keeps its own.
        "CHATKIT_TEST_RELEASE": "off",
        "CHATKIT_TEST_REQUEST_THREADS": "4",
    }
    gate = tmp_path / "gate"

    async def scenario(base: str) -> tuple[httpx.Response, list[bytes], httpx.Response]:
        async with httpx.AsyncClient(
            base_url=base, cookies=cookies, headers=headers, timeout=10
        ) as http:

            async def stream(opened: asyncio.Event) -> bytes:
                seen = b""
                request = body(create_req(f"gate {gate}"))
                async with http.stream("POST", ENDPOINT, content=request) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        seen += chunk
                        if FIRST_DELTA in seen:
                            opened.set()
                return seen

            events = [asyncio.Event(), asyncio.Event()]
            streams = []
            for opened in events:  # one after the other: each takes one of the 2 connections
                streams.append(asyncio.create_task(stream(opened)))
                await asyncio.wait_for(opened.wait(), 10)
            # A third request finds no free connection. The client's 10 s timeout would
            # fail the test on a wait as long as psycopg's default (30 s).
            busy = await http.post(ENDPOINT, content=body(create_req("hello")))
            gate.touch()
            finished = await asyncio.gather(*streams)
            # The streams gave their connections back at their end: served again.
            again = await http.post(ENDPOINT, content=body(create_req("hello")))
            return busy, finished, again

    with run_live_server(app, env) as base:
        busy, finished, again = asyncio.run(scenario(base))
    assert busy.status_code == 503
    assert busy.headers["content-type"] == "application/json"
    assert busy.headers["retry-after"] == "1"
    assert busy.json() == {
        "detail": "The server is busy. Try again in a moment.",
        "code": "server_busy",
    }
    for raw in finished:
        assert parse_sse(raw)[-1]["item"]["content"][0]["text"] == "partial done"
    assert again.status_code == 200
