"""Database helpers for tests: queries captured on the async ORM's thread, jobs run on
parallel connections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


class Captured:
    """Statements that touch data; transaction control differs by backend and is left out
    (SQLite logs ``BEGIN``/``COMMIT``, PostgreSQL's driver does not)."""

    queries: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.queries)

    def __str__(self) -> str:
        return "\n".join(q["sql"] for q in self.queries)


@asynccontextmanager
async def capture_queries() -> AsyncIterator[Captured]:
    """Queries run by the async ORM inside the block (on asgiref's worker thread)."""
    result = Captured()
    context = CaptureQueriesContext(connection)
    await sync_to_async(context.__enter__)()
    try:
        yield result
    finally:

        def leave() -> None:
            context.__exit__(None, None, None)
            result.queries = [
                q for q in context.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)
            ]

        await sync_to_async(leave)()


@asynccontextmanager
async def assert_queries(n: int) -> AsyncIterator[None]:
    async with capture_queries() as captured:
        yield
    assert len(captured) == n, f"{len(captured)} queries, expected {n}:\n{captured}"


WORKERS = 6


def run_in_parallel(job: Callable[[int], Coroutine[Any, Any, Any]], n: int = WORKERS) -> list[Any]:
    """Run ``job(i)`` for i in range(n) on n threads at once; re-raise the first failure."""

    def work(i: int) -> Any:
        try:
            return async_to_sync(job)(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result() for f in [pool.submit(work, i) for i in range(n)]]


def assert_index_walk(text: str, index: str) -> None:
    assert index in text, text
    if connection.vendor == "sqlite":
        assert "TEMP B-TREE" not in text, text  # SQLite's sort step
    else:
        assert "Sort" not in text, text
        assert "Seq Scan" not in text, text
