"""Browser-test parts: Debian's Chromium, and the example project served by a real process.

``example_server`` runs ``manage.py runserver`` (daphne, with static files) on a free loopback
port, on a temporary SQLite database seeded by ``tests/browser_seed.py`` and ``demo_setup``
(the demo user ``demo``/``demo`` and its articles).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The example project on a fresh SQLite database, served by a real process."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "CHATKIT_DEMO_DATA": str(tmp_path),
        "PYTHONDEVMODE": "0",
    }
    env.pop("CHATKIT_TEST_DB", None)
    env.pop("OPENAI_API_KEY", None)  # the offline demo responder

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    run("manage.py", "migrate", "--noinput")
    seeded = json.loads(run("-m", "tests.browser_seed"))
    run("manage.py", "demo_setup")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"runserver exited with {proc.returncode}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "runserver did not start within 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", seeded
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
