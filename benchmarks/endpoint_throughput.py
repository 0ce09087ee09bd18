"""The ChatKit endpoint against a bare FastAPI app running the same SDK server.

The apps run under uvicorn (one worker each) on 127.0.0.1, share the database, the
``DjangoStore``, the responder (``BENCH_DELTAS`` deltas per answer) and the way the user is
found (the session cookie):

- ``django``: the endpoint, ``chatkit_django.urls`` in a Django project;
- ``django-bare``: the FastAPI app's few lines as a plain async Django view in the same
  project, the floor for any Django view (``benchmarks/endpoint_bare_urls.py``);
- ``fastapi``: the baseline (``benchmarks/endpoint_fastapi.py``).

The same load goes to each, in turn, ``--rounds`` times:

- ``--streams`` ``threads.create`` streams, ``--concurrency`` at a time; time to first event
  (first ``data:`` line) and the time to read the whole stream;
- ``--lists`` ``threads.list`` requests, ``--concurrency`` at a time.

It prints requests/s, time-to-first-event p50/p99 and phase times for each, and two ratios:
endpoint / FastAPI (the targets: throughput >= 0.9x, TTFE p99 <= 1.1x) and endpoint / bare
Django view (what the endpoint adds to Django's own cost). No thresholds are asserted: read
the numbers.

    .venv/bin/python benchmarks/endpoint_throughput.py                  # SQLite
    BENCH_DB=postgres .venv/bin/python benchmarks/endpoint_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
APPS = {  # name: (ASGI application, environment)
    "django": ("benchmarks.endpoint_asgi:application", {}),
    "django-bare": (
        "benchmarks.endpoint_asgi:application",
        {"BENCH_URLCONF": "benchmarks.endpoint_bare_urls"},
    ),
    "fastapi": ("benchmarks.endpoint_fastapi:app", {}),
}
CREATE = (
    b'{"type":"threads.create","params":{"input":{"content":[{"type":"input_text",'
    b'"text":"bench"}],"attachments":[],"inference_options":{}}}}'
)
LIST = b'{"type":"threads.list","params":{"limit":20}}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app: str, env: dict[str, str]):
    with serve_process(app, env) as (base, _):
        yield base


@contextmanager
def serve_process(app: str, env: dict[str, str]):
    """uvicorn serving ``app``; yields its base URL and its process."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{app} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def setup_database(env: dict[str, str]) -> str:
    """Migrate, create the user and a session; return the session key."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    if connection.vendor == "postgresql":
        import psycopg

        name = connection.settings_dict["NAME"]
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench")
    client = Client()
    client.force_login(user)
    key = client.cookies["sessionid"].value
    connection.close()
    return key


async def one_stream(http: httpx.AsyncClient) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    async with http.stream("POST", "/chatkit/", content=CREATE) as response:
        assert response.status_code == 200, response.status_code
        async for chunk in response.aiter_raw():
            if first is None and b"data:" in chunk:
                first = time.perf_counter() - start
    assert first is not None
    return first, time.perf_counter() - start


async def one_list(http: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    response = await http.post("/chatkit/", content=LIST)
    assert response.status_code == 200, response.status_code
    return time.perf_counter() - start


async def run_load(base: str, session: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    gate = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(
        base_url=base,
        cookies={"sessionid": session, "csrftoken": "x" * 32},
        headers={"X-CSRFToken": "x" * 32, "Content-Type": "application/json"},
        limits=limits,
        timeout=120,
    ) as http:
        # Warm-up at full concurrency, so that the database pool has grown to its working size.
        await asyncio.gather(
            *(one_stream(http) for _ in range(min(args.concurrency, args.streams)))
        )

        async def gated(coro_factory):
            async with gate:
                return await coro_factory(http)

        start = time.perf_counter()
        streams = await asyncio.gather(*(gated(one_stream) for _ in range(args.streams)))
        stream_time = time.perf_counter() - start
        start = time.perf_counter()
        lists = await asyncio.gather(*(gated(one_list) for _ in range(args.lists)))
        list_time = time.perf_counter() - start
    return {
        "ttfe": [s[0] for s in streams],
        "stream_total": stream_time,
        "list_latency": lists,
        "list_total": list_time,
    }


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--lists", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="chatkit-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.endpoint_settings",
        "BENCH_DIR": workdir,
        "BENCH_DELTAS": str(args.deltas),
        "PYTHONDEVMODE": "0",
    }
    session = setup_database(env)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}
    for _ in range(args.rounds):
        for name, (app, app_env) in APPS.items():  # in turn, so drift hits all alike
            # One app up at a time: each Django app holds a connection per open stream.
            with serve(app, {**env, **app_env}) as base:
                results[name].append(asyncio.run(run_load(base, session, args)))

    def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
        ttfe = [t for r in runs for t in r["ttfe"]]
        stream_total = sum(r["stream_total"] for r in runs)
        list_total = sum(r["list_total"] for r in runs)
        return {
            "streams/s": args.streams * len(runs) / stream_total,
            "lists/s": args.lists * len(runs) / list_total,
            "TTFE p50 ms": pct(ttfe, 50) * 1000,
            "TTFE p99 ms": pct(ttfe, 99) * 1000,
            "stream phase s": stream_total / len(runs),
            "list phase s": list_total / len(runs),
        }

    table = {name: summary(runs) for name, runs in results.items()}
    db = os.environ.get("BENCH_DB", "sqlite")
    print(
        f"{args.streams} streams x {args.deltas} deltas + {args.lists} threads.list, "
        f"concurrency {args.concurrency}, {args.rounds} rounds, {db}, uvicorn 1 worker each"
    )
    print(
        f"{'':16}" + "".join(f"{name:>13}" for name in APPS) + f"{'vs fastapi':>12}{'vs bare':>9}"
    )
    for key in table["django"]:
        values = "".join(f"{table[name][key]:13.2f}" for name in APPS)
        vs_fastapi = table["django"][key] / table["fastapi"][key]
        vs_bare = table["django"][key] / table["django-bare"][key]
        print(f"{key:16}{values}{vs_fastapi:11.2f}x{vs_bare:8.2f}x")


if __name__ == "__main__":
    main()
