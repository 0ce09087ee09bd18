"""docs/quickstart.md, followed by a new user: it is the test.

A brand-new ``django-admin startproject mysite`` gets exactly the quickstart's code blocks
(each one that starts with a file name: ``# mysite/chat.py``, ``{# templates/chat.html #}``;
"(add at the end)" appends, anything else writes the whole file). chatkit-django is installed
from this checkout WITHOUT extras into a fresh virtualenv, so boto3 is absent, as on a plain
install. Then what the page says to run: migrate, createsuperuser, check, daphne's runserver;
sign in through the admin login, stream an answer, upload an image and fetch its preview.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests import ROOT
from tests.factories import PNG_1X1
from tests.live_server import free_port, serving

pytestmark = pytest.mark.quickstart

QUICKSTART = ROOT / "docs" / "quickstart.md"
# The opening line of a block that belongs in a file: "# mysite/chat.py", "{# templates/x #}".
FILE_MARKER = re.compile(r"^(?:#|\{#)\s*(?P<path>[\w./-]+\.\w+)(?P<note>[^#]*?)\s*(?:#\})?$")
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
PASSWORD = "quickstart-pw-1"


@dataclass
class Block:
    path: str
    append: bool
    text: str


def quickstart_blocks() -> tuple[list[Block], list[str]]:
    """The file blocks, in order, and the commands of the console blocks."""
    blocks, commands = [], []
    for fence in FENCE.finditer(QUICKSTART.read_text()):
        body = fence["body"]
        if fence["lang"] == "console":
            commands += [line.strip() for line in body.splitlines() if line.strip()]
            continue
        first = body.splitlines()[0]
        marker = FILE_MARKER.match(first)
        # Every code block goes in a file, so every one is tested.
        assert marker, f"a quickstart block without a file name: {first!r}"
        note = marker["note"].strip()
        assert note in ("", "(add at the end)"), first
        blocks.append(Block(marker["path"], note == "(add at the end)", body))
    return blocks, commands


def test_the_quickstart_blocks_are_complete_files() -> None:
    blocks, commands = quickstart_blocks()
    assert [(b.path, b.append) for b in blocks] == [
        ("mysite/settings.py", True),
        ("mysite/chat.py", False),
        ("mysite/views.py", False),
        ("templates/chat.html", False),
        ("mysite/urls.py", False),
    ]
    # No snippet includes: the page reads the same on GitHub and on the docs site.
    assert "--8<--" not in QUICKSTART.read_text()
    # Nothing but this project's files: no module from the test suite or the example project.
    assert not re.search(r"\b(tests|example_project)\.", QUICKSTART.read_text())
    for block in blocks:
        if block.path.endswith(".py"):
            compile(block.text, block.path, "exec")
    # The server class exists before anything runs (migrate would fail with E003).
    text = QUICKSTART.read_text()
    assert text.index("# mysite/chat.py") < text.index("python manage.py migrate")
    # The commands the test below runs, in the page's order.
    assert commands == [
        "git clone https://github.com/chatkit-django/chatkit-django",
        "python -m pip install ./chatkit-django",
        "django-admin startproject mysite",
        "cd mysite",
        "python manage.py migrate",
        "python manage.py createsuperuser",
        "python manage.py check",
        "python manage.py runserver",
    ]


@dataclass
class Project:
    root: Path
    python: str
    env: dict[str, str]

    def manage(
        self, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.python, "manage.py", *args],
            check=False,
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done


def plain_install(tmp: Path) -> str:
    """A fresh virtualenv with this checkout installed without extras; returns its python."""
    # A copy of what the package is built from, so the build leaves nothing in the checkout.
    source = tmp / "chatkit-django"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "chatkit_django",
        source / "chatkit_django",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = str(env_dir / "bin" / "python")
    # The test runner's pip, installing into the new environment.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return python


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    tmp = tmp_path_factory.mktemp("quickstart")
    python = plain_install(tmp)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CHATKIT_", "PYTHON", "VIRTUAL_ENV"))
    }
    subprocess.run(
        [str(Path(python).parent / "django-admin"), "startproject", "mysite"],
        cwd=tmp,
        env=env,
        check=True,
    )
    root = tmp / "mysite"
    blocks, _ = quickstart_blocks()
    for block in blocks:
        target = root / block.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if block.append:
            with target.open("a") as f:
                f.write("\n\n" + block.text)
        else:
            target.write_text(block.text)
    yield Project(root, python, env)


def test_the_environment_is_a_plain_install(project: Project) -> None:
    probe = (
        "import importlib.util, chatkit_django, django.core.exceptions as e\n"
        "print(chatkit_django.__file__)\n"
        "print(importlib.util.find_spec('boto3'))\n"
        "try:\n"
        "    import storages.backends.s3\n"
        "except e.ImproperlyConfigured as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run(
        [project.python, "-c", probe],
        check=False,
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith(str(Path(project.python).parent.parent))  # not the checkout
    assert lines[1] == "None"  # no boto3
    assert lines[2].startswith("Could not load Boto3's S3 bindings.")


def test_check_is_clean_and_names_the_common_mistakes(project: Project) -> None:
    assert project.manage("check").stdout == "System check identified no issues (0 silenced).\n"

    # The same project with one mistake each, in a settings module of its own.
    mistakes = {
        # runserver without daphne is WSGI: answers would arrive whole.
        "no_daphne": 'INSTALLED_APPS.remove("daphne")',
        # S3 for attachments on a plain install: no boto3.
        "s3": 'STORAGES["chatkit"] = {"BACKEND": "storages.backends.s3.S3Storage"}',
    }
    for name, line in mistakes.items():
        (project.root / "mysite" / f"settings_{name}.py").write_text(
            f"from mysite.settings import *  # noqa\n\n{line}\n"
        )
    done = project.manage("check", "--settings", "mysite.settings_no_daphne")
    assert (
        "(chatkit_django.W001) chatkit_django streams Server-Sent Events, but manage.py "
        "runserver (from 'django.contrib.staticfiles') is Django's WSGI server" in done.stderr
    )
    done = project.manage("check", "--settings", "mysite.settings_s3", check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "(chatkit_django.E010) The attachment storage cannot be loaded" in done.stderr
    assert "pip install 'chatkit-django[s3]'" in done.stderr


def sse_events(response: httpx.Response) -> Iterator[tuple[float, dict]]:
    """``(arrival time, event)`` for each ``data:`` event, as it arrives."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.monotonic(), json.loads(line[6:])


def test_sign_in_stream_an_answer_upload_an_image(project: Project) -> None:
    project.manage("migrate", "--noinput")
    project.manage(
        *("createsuperuser", "--noinput", "--username", "ada", "--email", "ada@example.com"),
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,  # what the prompt would ask for
    )
    port = free_port()
    args = ["manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with (
        serving(
            args, project.env, port, "runserver", python=project.python, cwd=project.root
        ) as url,
        httpx.Client(base_url=url, timeout=30) as browser,
    ):
        # The page requires a login.
        page = browser.get("/")
        assert page.status_code == 302
        assert page.headers["location"] == "/admin/login/?next=/"

        login = browser.get("/admin/login/?next=/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)[1]
        signed_in = browser.post(
            "/admin/login/?next=/",
            data={"csrfmiddlewaretoken": token, "username": "ada", "password": PASSWORD},
        )
        assert (signed_in.status_code, signed_in.headers["location"]) == (302, "/")

        page = browser.get("/")
        assert page.status_code == 200
        assert '<openai-chatkit id="chatkit"' in page.text
        assert "Hello ada!" in page.text
        csrf = {"X-CSRFToken": browser.cookies["csrftoken"]}

        # Stream an answer: deltas arrive while the responder is still writing.
        request = {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "hello from the quickstart"}],
                    "attachments": [],
                    "inference_options": {},
                }
            },
        }
        with browser.stream("POST", "/chatkit/", json=request, headers=csrf) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
        deltas = [
            (at, e["update"]["delta"])
            for at, e in events
            if e["type"] == "thread.item.updated"
            and e["update"]["type"] == "assistant_message.content_part.text_delta"
        ]
        done = [
            (at, e["item"])
            for at, e in events
            if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
        ]
        text = "You said: hello from the quickstart"
        assert "".join(delta for _, delta in deltas) == text
        assert done[0][1]["content"][0]["text"] == text
        # The responder sleeps 0.05 s after each of its 6 words: a buffered response (WSGI)
        # would deliver the first delta and the done item together.
        assert done[0][0] - deltas[0][0] > 0.15

        # Upload an image, as ChatKit.js' direct strategy does, and fetch its preview.
        upload = browser.post(
            "/chatkit/upload/", files={"file": ("dot.png", PNG_1X1, "image/png")}, headers=csrf
        )
        assert upload.status_code == 201, upload.text
        attachment = upload.json()
        assert (attachment["type"], attachment["name"]) == ("image", "dot.png")
        preview_url = attachment["preview_url"]
        assert urlsplit(preview_url).netloc == urlsplit(url).netloc
        with httpx.Client(timeout=30) as stranger:  # no session: the signed URL suffices
            preview = stranger.get(preview_url)
        assert preview.status_code == 200
        assert preview.headers["content-type"] == "image/png"
        assert preview.content == PNG_1X1
        content = browser.get(f"/chatkit/attachments/{attachment['id']}/content/")
        assert (content.status_code, content.content) == (200, PNG_1X1)

    # Where the quickstart says files go.
    stored = project.root / "chatkit-files" / "chatkit" / f"{attachment['id']}.png"
    assert stored.read_bytes() == PNG_1X1
