"""Fixtures only: helpers live in tests/factories.py, tests/chatkit_client.py, tests/sdk_calls.py.

Database marks: a sync test uses plain ``django_db`` (its own transaction, rolled back). An async
test needs ``django_db(transaction=True)``: its ORM calls run on asgiref's worker thread, whose
connection is outside the test thread's transaction. So do tests whose effects wait for a real
commit (``on_commit``), tests with a server process or parallel connections, and migrations.
"""

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest

_counter = itertools.count()


@pytest.fixture
def user_factory(django_user_model: Any) -> Callable[..., Any]:
    """Returns a function that creates a user; keyword arguments override the defaults."""

    def make(**kwargs: Any) -> Any:
        n = next(_counter)
        kwargs.setdefault("username", f"user{n}")
        kwargs.setdefault("email", f"user{n}@example.com")
        password = kwargs.pop("password", "pw")
        return django_user_model.objects.create_user(password=password, **kwargs)

    return make


@pytest.fixture
async def auser_factory(user_factory: Callable[..., Any]) -> Callable[..., Any]:
    from asgiref.sync import sync_to_async

    return sync_to_async(user_factory)


@pytest.fixture
async def user_client(auser_factory: Callable[..., Any]) -> Any:
    """An ``AsyncClient`` logged in as a new user, who is ``user_client.user``."""
    from django.test import AsyncClient

    client = AsyncClient()
    client.user = await auser_factory()
    await client.aforce_login(client.user)
    return client


@pytest.fixture(autouse=True)
def _close_executor_connections(request: pytest.FixtureRequest) -> Any:
    """Close the DB connection that async ORM calls opened in asgiref's worker thread.

    Async tests reach the database from asgiref's single sync thread, not from the test's
    thread, so pytest-django cannot close that connection, and PostgreSQL then refuses to
    drop the test database.
    """
    yield
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        from asgiref.sync import sync_to_async
        from django.db import connections

        asyncio.run(sync_to_async(connections.close_all)())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` run only with CHATKIT_TEST_DB=postgres (make test-postgres);
    elsewhere they are deselected, not skipped."""
    if os.environ.get("CHATKIT_TEST_DB") == "postgres":
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


pytest_plugins = [
    "tests.live_server",
    "tests.no_boto3",
    "tests.storage_fixtures",
    "tests.fake_openai",
]
