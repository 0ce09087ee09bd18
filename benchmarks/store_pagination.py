"""Keyset pagination in ``DjangoStore.load_thread_items``: a deep page costs what the first does.

Fills one thread with ``--items`` items (100,000 by default), then times, as the median of
``--repeat`` runs:

- the first page and a page ``--depth`` items deep, through the store (keyset);
- the same two pages with ``OFFSET`` on the same ordering and index, as the baseline.

It prints times and ratios measured in this run, for SQLite and PostgreSQL. No thresholds:
read the ratios. ``deep/first`` near 1 for the store is the point; OFFSET's grows with depth.

    .venv/bin/python benchmarks/store_pagination.py                  # both databases
    .venv/bin/python benchmarks/store_pagination.py --db sqlite --items 20000

PostgreSQL: 127.0.0.1:5432, user postgres (PGHOST/PGPORT/PGUSER override); the script
creates and drops its own database, ``chatkit_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "chatkit_bench"


def database_settings(db: str, workdir: str) -> dict[str, Any]:
    if db == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(workdir, "b.db")}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": BENCH_DB,
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }


def configure(db: str, workdir: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "chatkit_django"],
        DATABASES={"default": database_settings(db, workdir)},
        STORAGES={"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}},
        CHATKIT={"SERVER_CLASS": "chatkit_django.server.DjangoChatKitServer"},
    )
    django.setup()


def recreate_postgres_database() -> None:
    import psycopg

    conninfo = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "dbname": "postgres",
        "autocommit": True,
    }
    try:
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
    except psycopg.OperationalError as e:
        sys.exit(f"PostgreSQL is not reachable on {conninfo['host']}:{conninfo['port']}: {e}")


def fill(n_items: int) -> tuple[Any, str]:
    """One user, one thread, ``n_items`` items in bulk; returns (user, thread id)."""
    from chatkit.types import (
        AssistantMessageContent,
        AssistantMessageItem,
        ThreadMetadata,
    )
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from chatkit_django.models import Thread, ThreadItem
    from chatkit_django.store import dump

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    thread = ThreadMetadata(id="thr_bench", created_at=t0)
    Thread.objects.create(
        id=thread.id, owner=user, created_at=t0, seq=0, data=dump(thread), title=""
    )
    batch: list[ThreadItem] = []
    for i in range(n_items):
        # Pairs of items share a created_at, so the tie-breaker is exercised too.
        created = t0 + timedelta(milliseconds=i // 2)
        item = AssistantMessageItem(
            id=f"msg_{i:08d}",
            thread_id=thread.id,
            created_at=created,
            content=[AssistantMessageContent(text=f"Answer number {i}. " * 8)],
        )
        batch.append(
            ThreadItem(
                id=item.id,
                thread_id=thread.id,
                type=item.type,
                created_at=created,
                seq=i,
                preview=item.content[0].text,
                data=dump(item),
            )
        )
        if len(batch) == 5000:
            ThreadItem.objects.bulk_create(batch)
            batch = []
    ThreadItem.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return user, thread.id


async def median_seconds(
    calls: dict[str, Callable[[], Awaitable[Any]]], repeat: int
) -> dict[str, float]:
    """Median time of each call. Rounds interleave the calls, so that load from elsewhere on
    the machine slows all of them alike instead of skewing one."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        await call()  # warm caches and the connection
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


async def measure(user: Any, thread_id: str, depth: int, page: int, repeat: int) -> dict:
    from chatkit_django.context import ChatKitContext
    from chatkit_django.models import ThreadItem
    from chatkit_django.store import DjangoStore, ThreadItemAdapter

    store = DjangoStore()
    ctx = ChatKitContext(user=user)
    cursor = f"msg_{depth - 1:08d}"  # the last item of the page before the deep one

    ordered = ThreadItem.objects.filter(thread_id=thread_id).order_by("created_at", "seq", "id")

    async def offset_page(offset: int) -> list[Any]:
        # The same access check as the store, so only the paging strategy differs.
        await store._accessible_thread(thread_id, ctx, "view")
        rows = ordered.values_list("id", "data")[offset : offset + page]
        return [ThreadItemAdapter.validate_python(data) async for _, data in rows]

    deep = await store.load_thread_items(thread_id, cursor, page, "asc", ctx)
    assert [i.id for i in deep.data] == [i.id for i in await offset_page(depth)]

    result = await median_seconds(
        {
            "keyset first": lambda: store.load_thread_items(thread_id, None, page, "asc", ctx),
            "keyset deep": lambda: store.load_thread_items(thread_id, cursor, page, "asc", ctx),
            "offset first": lambda: offset_page(0),
            "offset deep": lambda: offset_page(depth),
        },
        repeat,
    )
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()  # the ORM's worker thread's connection
    return result


def run_one(db: str, n_items: int, depth: int, page: int, repeat: int) -> None:
    """Runs in a child process: Django can be configured once per process."""
    with tempfile.TemporaryDirectory() as workdir:
        if db == "postgres":
            recreate_postgres_database()
        configure(db, workdir)
        start = time.perf_counter()
        user, thread_id = fill(n_items)
        filled = time.perf_counter() - start
        r = asyncio.run(measure(user, thread_id, depth, page, repeat))
        from django.db import connections

        connections.close_all()
    if db == "postgres":
        recreate_postgres_database()  # leaves an empty database behind, not 100k rows
    ms = {k: v * 1000 for k, v in r.items()}
    print(f"\n{db}: {n_items:,} items (filled in {filled:.1f}s), page of {page}, depth {depth:,}")
    for name, value in ms.items():
        print(f"  {name:<13} {value:8.3f} ms")
    print(f"  keyset deep / keyset first  = {r['keyset deep'] / r['keyset first']:6.2f}")
    print(
        f"  offset deep / offset first  = {r['offset deep'] / r['offset first']:6.2f}  (baseline)"
    )
    print(f"  offset deep / keyset deep   = {r['offset deep'] / r['keyset deep']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--depth", type=int, help="default: 90%% of --items")
    parser.add_argument("--page", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    depth = args.depth or args.items * 9 // 10
    if args.child:
        run_one(args.db, args.items, depth, args.page, args.repeat)
        return
    import subprocess

    for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        argv = [sys.executable, __file__, "--child", "--db", db, "--items", str(args.items)]
        argv += ["--depth", str(depth), "--page", str(args.page), "--repeat", str(args.repeat)]
        subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
