"""A real ASGI server process (uvicorn) on loopback, sharing the test database.

Use the ``live_server_url`` fixture (it needs ``transactional_db``, since the server process
must see committed rows). Pass settings to the process through ``live_server_factory(env=...)``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests import ROOT

#: The process behind each base URL ``serving`` yields, while it runs (for its pid).
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    args: list[str],
    env: dict[str, str],
    port: int,
    name: str,
    python: str = sys.executable,
    cwd: Path = ROOT,
) -> Iterator[str]:
    """Run ``python *args`` until the block ends; yield its base URL once ``port`` answers."""
    proc = subprocess.Popen([python, *args], cwd=cwd, env=env)
    try:
        # Generous: a loaded CI machine can take a while to import Django and the SDK.
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start within 60 s") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        PROCESSES[url] = proc
        yield url
    finally:
        PROCESSES.pop(f"http://127.0.0.1:{port}", None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_live_server(
    app: str = "tests.asgi:application", env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start uvicorn serving ``app`` on a free loopback port; yield its base URL."""
    port = free_port()
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "CHATKIT_LIVE_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONDEVMODE": "0",
        **(env or {}),
    }
    args = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    args += ["--lifespan", "off", "--log-level", "warning"]
    with serving(args, child_env, port, "uvicorn") as url:
        yield url


@pytest.fixture
def live_server_factory(transactional_db: None) -> Iterator[Callable[..., str]]:
    """Returns ``start(app=..., env=...) -> base_url``; servers stop at the end of the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(app: str = "tests.asgi:application", env: dict[str, str] | None = None) -> str:
            return stack.enter_context(run_live_server(app, env))

        yield start


@pytest.fixture
def live_server_url(live_server_factory: Callable[..., str]) -> str:
    return live_server_factory()


@pytest.fixture
def session(user_factory: Any) -> tuple[Any, dict[str, str], dict[str, str]]:
    """A logged-in browser session for live requests: the user, its cookies and headers
    (CSRF token included)."""
    from django.test import Client

    client = Client()
    user = user_factory()
    client.force_login(user)
    token = "b" * 32
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": token}
    return user, cookies, {"X-CSRFToken": token, "Content-Type": "application/json"}


#: The endpoint under Django's ASGI handler, the Channels consumer, and chatkit_django.asgi's
#: handler (shared request threads; the stream writes its events itself).
APPS = {
    "view": "tests.asgi:application",
    "consumer": "tests.channels_asgi:application",
    "shared threads": "tests.shared_asgi:application",
}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def read_until(chunks, marker: bytes) -> bytes:
    seen = b""
    for chunk in chunks:
        seen += chunk
        if marker in seen:
            return seen
    raise AssertionError(f"stream ended before {marker!r}: {seen!r}")
