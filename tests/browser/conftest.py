"""Browser-test parts: Debian's Chromium, and the example project served by a real process.

``example_server`` runs ``manage.py runserver`` (daphne, with static files) on a free loopback
port, on a temporary SQLite database seeded by ``tests/browser/seed.py`` and ``demo_setup``
(the demo user ``demo``/``demo`` and its articles).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ROOT
from tests.live_server import free_port, serving


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
    seeded = json.loads(run("-m", "tests.browser.seed"))
    run("manage.py", "demo_setup")
    port = free_port()
    runserver = ["manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(runserver, env, port, "runserver") as url:
        yield url, seeded
