"""PostgreSQL restarts while 50 answers stream and 10 clients keep asking; nothing is lost.

A real uvicorn process serves the endpoint from a private cluster (``tests/pgcluster.py``,
never the machine's shared server) through Django's psycopg pool, as a production site
would. The test opens 50 streams whose responder waits on a gate, starts 10 clients
sending reads and writes in a loop, restarts the cluster (``pg_ctl restart -m fast``), then
opens the gate, so that every answer's final save meets the restarted database. Then:

- 50/50 answers are saved, each as the client saw it;
- only requests in flight while the database was down failed, each with a JSON 503
  ``database_unavailable`` and ``Retry-After`` (never HTML, never a 500);
- no request sent 1 s after the database is back fails or takes more than 2 s.

Deterministic: the streams wait on a file, not on time; the restart's outage is measured
from outside, and only the requests that overlap it may fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import ROOT
from tests.chatkit_client import ENDPOINT, body, create_req, parse_sse
from tests.live_server import read_until, run_live_server
from tests.pgcluster import PgCluster

pytestmark = [pytest.mark.live, pytest.mark.postgres]

STREAMS = 50
CLIENTS = 10
DB_NAME = "chatkit_restart"
#: Django's psycopg pool as docs/guides/deploy-streaming.md recommends: a short wait for a
#: connection (a 503 rather than a hung request), no CONN_HEALTH_CHECKS.
POOL = {"min_size": 4, "max_size": 80, "timeout": 5}

SEED = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
client = Client()
client.force_login(get_user_model().objects.create_user("ada", password="pw"))
print(json.dumps({"sessionid": client.cookies["sessionid"].value}))
"""


@dataclass
class Sent:
    """One client request: when it went out and came back, and what came back."""

    kind: str
    sent: float
    done: float
    status: int
    content_type: str
    retry_after: str | None
    payload: Any


def server_env(cluster: PgCluster) -> dict[str, str]:
    return {
        **cluster.env(DB_NAME),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CHATKIT_TEST_DB": "postgres",
        "CHATKIT_LIVE_DB_NAME": DB_NAME,
        "CHATKIT_TEST_PG_POOL": json.dumps(POOL),
        "CHATKIT_TEST_SERVER_CLASS": "tests.testapp.server.ScriptedServer",
    }


def seed(cluster: PgCluster) -> dict[str, str]:
    """Migrate the private database and log a user in; the session cookie."""
    env = {**os.environ, **server_env(cluster), "PYTHONDEVMODE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", SEED], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def stream_answer(base: str, cookies: dict[str, str], text: str, opened: Any) -> list[dict]:
    """Open a stream, report it open once its first delta is in, read it to the end."""
    headers = {"X-CSRFToken": cookies["csrftoken"], "Content-Type": "application/json"}
    with (
        httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=120) as http,
        http.stream("POST", ENDPOINT, content=body(create_req(text))) as response,
    ):
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        seen = read_until(chunks, b'"delta":"partial "')
        opened.release()
        seen += b"".join(chunks)
    return parse_sse(seen)


def client_loop(base: str, cookies: dict[str, str], n: int, stop: threading.Event, log: list):
    """Reads and writes in a loop until ``stop``: list threads, list items, rename."""
    headers = {"X-CSRFToken": cookies["csrftoken"], "Content-Type": "application/json"}
    with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=60) as http:
        created = http.post(ENDPOINT, content=body(create_req(f"client {n}")))
        assert created.status_code == 200, created.text
        thread_id = parse_sse(created.content)[0]["thread"]["id"]
        requests = [
            ("threads.list", {"type": "threads.list", "params": {"limit": 5}}),
            ("items.list", {"type": "items.list", "params": {"thread_id": thread_id}}),
            ("threads.update", {"type": "threads.update", "params": {"thread_id": thread_id}}),
        ]
        i = 0
        while not stop.is_set():
            kind, request = requests[i % len(requests)]
            if kind == "threads.update":
                request["params"]["title"] = f"client {n} #{i}"
            i += 1
            sent = time.monotonic()
            response = http.post(ENDPOINT, content=json.dumps(request))
            done = time.monotonic()
            try:
                payload = response.json()
            except ValueError:
                payload = response.text[:300]
            log.append(
                Sent(
                    kind,
                    sent,
                    done,
                    response.status_code,
                    response.headers.get("content-type", ""),
                    response.headers.get("retry-after"),
                    payload,
                )
            )


#: Django's ASGI handler (a thread per request), and ``chatkit_django.asgi`` (shared threads).
APPS = ["tests.asgi:application", "tests.shared_asgi:application"]


@pytest.mark.parametrize("app", APPS, ids=["django-handler", "shared-threads"])
def test_a_database_restart_loses_no_answer_and_fails_only_requests_in_flight(
    app: str, tmp_path: Path
):
    with PgCluster() as cluster:
        cluster.create_database(DB_NAME)
        cookies = {**seed(cluster), "csrftoken": "c" * 32}
        gate = tmp_path / "gate"
        with run_live_server(app, env=server_env(cluster)) as base:
            # 50 streams, each waiting on the gate once its first delta is out.
            opened = threading.Semaphore(0)
            answers: dict[int, list[dict]] = {}

            def stream(i: int) -> None:
                answers[i] = stream_answer(base, cookies, f"gate {gate}", opened)

            streams = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
            for t in streams:
                t.start()
            for _ in range(STREAMS):
                assert opened.acquire(timeout=60), "a stream did not open"

            # 10 clients asking in a loop, before, during and after the restart.
            stop = threading.Event()
            log: list[Sent] = []
            clients = [
                threading.Thread(target=client_loop, args=(base, cookies, n, stop, log))
                for n in range(CLIENTS)
            ]
            for t in clients:
                t.start()
            time.sleep(1.0)

            down = time.monotonic()
            cluster.restart("fast")
            up = time.monotonic()

            # The answers end after the restart: their final saves meet it.
            time.sleep(0.5)
            gate.touch()
            for t in streams:
                t.join(timeout=60)
            time.sleep(max(0.0, up + 3.0 - time.monotonic()))
            stop.set()
            for t in clients:
                t.join(timeout=60)

        with cluster.connect(DB_NAME) as conn:
            saved = conn.execute(
                "SELECT count(*) FROM chatkit_django_threaditem "
                "WHERE type = 'assistant_message' AND preview = 'partial done'"
            ).fetchone()[0]

    # Every answer the clients saw in full is saved.
    assert len(answers) == STREAMS
    for events in answers.values():
        assert not [e for e in events if e["type"] == "error"], events[-3:]
        assert events[-1]["type"] == "thread.item.done"
        assert events[-1]["item"]["content"][0]["text"] == "partial done"
    assert saved == STREAMS

    # Only requests in flight during the outage failed, each with the JSON 503.
    failed = [s for s in log if s.status != 200]
    for s in failed:
        assert s.status == 503, s
        assert s.content_type == "application/json", s
        assert s.payload["code"] == "database_unavailable", s
        assert s.retry_after is not None, s
        assert s.sent < up and s.done > down, f"failed outside the outage: {s}"

    # A second after the database is back, every request succeeds, quickly.
    after = [s for s in log if s.sent >= up + 1.0]
    assert len(after) >= CLIENTS, "too few requests after the restart to tell"
    slow = [s for s in after if s.done - s.sent > 2.0]
    assert not slow, slow
    assert all(s.status == 200 for s in after)
    # The restart was seen: requests ran on both sides of it.
    assert [s for s in log if s.done < down] and [s for s in log if s.sent > up]
