"""Uploads and downloads are streamed: the server's memory does not grow with the file size.

Starts a real ASGI server (uvicorn, one process) on loopback for each measurement, warms it
up with two small requests, then sends (or fetches) one file and reads the server's peak
resident memory (``VmHWM`` in ``/proc/<pid>/status``) before and after. Three paths:

- ``direct``: multipart POST to ``chatkit:upload`` (Django's upload handlers, temporary file);
- ``put``: raw PUT body to ``chatkit:upload-target`` (two-phase; copied chunk by chunk);
- ``get``: the same file back from ``chatkit:attachment-content`` (streamed response).

Each at ``--sizes`` megabytes (default 1, 50 and 200). The 1 MB file is the baseline: the
ratio column is a file's peak growth over the baseline's on the same path, and stays near 1 when memory is
flat. Throughput is compared with a plain ``shutil.copyfile`` of the same file on the same
disk, measured in this run. No thresholds: read the numbers (the issue's target is under
32 MB of growth for a 200 MB upload).

    .venv/bin/python benchmarks/upload_memory.py
    .venv/bin/python benchmarks/upload_memory.py --sizes 1 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1024 * 1024

SETTINGS = """
from tests.settings import *  # noqa: F403

DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
STORAGES = {{
    **STORAGES,  # noqa: F405
    "chatkit": {{
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {{"location": {media!r}}},
    }},
}}
CHATKIT = {{**CHATKIT, "MAX_UPLOAD_BYTES": 1 << 40}}  # noqa: F405
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def make_file(path: Path, megabytes: float) -> None:
    block = (b"chatkit-django upload benchmark line\n" * 30000)[:CHUNK]
    with path.open("wb") as f:
        for _ in range(int(megabytes)):
            f.write(block)
        f.write(block[: int((megabytes % 1) * CHUNK)])


def read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(64 * 1024):
            yield chunk


class Server:
    """One uvicorn process serving tests.asgi with the benchmark settings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 50, 200])
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chatkit-upload-bench-"))
    try:
        run(workdir, args.sizes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, sizes: list[float]) -> None:
    (workdir / "chatkit_bench_settings.py").write_text(
        SETTINGS.format(db=str(workdir / "db.sqlite3"), media=str(workdir / "media"))
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatkit_bench_settings",
        "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
        "PYTHONDEVMODE": "0",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE",)})
    sys.path[:0] = [str(workdir), str(ROOT)]

    import warnings

    import django

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    django.setup()
    import httpx
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.utils.crypto import get_random_string

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    csrf = get_random_string(32)
    cookies = {"sessionid": session.session_key, "csrftoken": csrf}
    headers = {"X-CSRFToken": csrf}

    def direct(client: httpx.Client, base: str, path: Path) -> None:
        with path.open("rb") as f:
            response = client.post(
                f"{base}/chatkit/upload/",
                files={"file": (path.name, f, "text/plain")},
                headers=headers,
            )
        assert response.status_code == 201, response.text

    def put(client: httpx.Client, base: str, path: Path) -> None:
        url = pending_upload_url(user, base)
        response = client.put(
            url,
            content=read_chunks(path),
            headers={"Content-Type": "text/plain", "Content-Length": str(path.stat().st_size)},
        )
        assert response.status_code == 200, response.text

    def get(client: httpx.Client, base: str, path: Path) -> None:
        attachment_id = stored_attachment(user, path)
        with client.stream("GET", f"{base}/chatkit/attachments/{attachment_id}/content/") as r:
            assert r.status_code == 200, r.read()
            received = sum(len(chunk) for chunk in r.iter_bytes())
        assert received == path.stat().st_size

    small = workdir / "small.txt"
    make_file(small, 0.01)
    results: list[tuple[str, float, float, float, float]] = []
    copy_rates: dict[float, float] = {}
    for megabytes in sizes:
        path = workdir / f"upload-{megabytes:g}.txt"
        make_file(path, megabytes)
        start = time.perf_counter()
        shutil.copyfile(path, workdir / "copy.txt")
        copy_rates[megabytes] = megabytes / (time.perf_counter() - start)
        (workdir / "copy.txt").unlink()
        for name, send in (("direct", direct), ("put", put), ("get", get)):
            server = Server(env)
            try:
                with httpx.Client(cookies=cookies, timeout=None) as client:
                    send(client, server.url, small)
                    send(client, server.url, small)
                    before = peak_rss_mb(server.proc.pid)
                    start = time.perf_counter()
                    send(client, server.url, path)
                    elapsed = time.perf_counter() - start
                    after = peak_rss_mb(server.proc.pid)
            finally:
                server.stop()
            results.append((name, megabytes, after - before, after, megabytes / elapsed))
        path.unlink()
        shutil.rmtree(workdir / "media", ignore_errors=True)

    baseline = {name: growth for name, mb, growth, _, _ in results if mb == sizes[0]}
    print(f"Through uvicorn, {len(sizes)} sizes; baseline = the {sizes[0]:g} MB file.")
    print(
        f"{'path':<8}{'size MB':>9}{'peak growth MB':>16}{'vs baseline':>13}"
        f"{'peak RSS MB':>13}{'MB/s':>9}{'vs copyfile':>13}"
    )
    for name, megabytes, growth, peak, rate in results:
        ratio = growth / baseline[name] if baseline[name] > 0.05 else float("nan")
        print(
            f"{name:<8}{megabytes:>9g}{growth:>16.1f}{ratio:>13.2f}{peak:>13.1f}"
            f"{rate:>9.1f}{rate / copy_rates[megabytes]:>13.3f}"
        )
    print(
        "peak growth: VmHWM after minus before the request; vs baseline: growth / growth of the "
        f"{sizes[0]:g} MB file (nan when the baseline grew < 0.05 MB); vs copyfile: "
        "throughput / shutil.copyfile's on the same disk."
    )


def stored_attachment(user: Any, path: Path) -> str:
    """An uploaded attachment holding the bytes of ``path``, stored by this process."""
    from chatkit.types import FileAttachment
    from django.core.files import File
    from django.utils import timezone

    from chatkit_django.attachments import get_attachment_storage
    from chatkit_django.ids import generate_id
    from chatkit_django.models import Attachment

    attachment_id = generate_id("attachment")
    with path.open("rb") as f:
        name = get_attachment_storage().save(f"chatkit/{attachment_id}.txt", File(f))
    attachment = FileAttachment(id=attachment_id, name=path.name, mime_type="text/plain")
    Attachment.objects.create(
        id=attachment_id,
        owner=user,
        name=path.name,
        mime_type="text/plain",
        type="file",
        size=path.stat().st_size,
        file=name,
        uploaded_at=timezone.now(),
        data=attachment.model_dump(mode="json"),
    )
    return attachment_id


def pending_upload_url(user: Any, base: str) -> str:
    """A two-phase upload waiting for its bytes, as ``attachments.create`` leaves it."""
    import secrets

    from chatkit.types import FileAttachment
    from django.urls import reverse

    from chatkit_django.attachments import make_upload_token
    from chatkit_django.ids import generate_id
    from chatkit_django.models import Attachment

    attachment_id = generate_id("attachment")
    nonce = secrets.token_urlsafe(24)
    attachment = FileAttachment(id=attachment_id, name="bench.txt", mime_type="text/plain")
    Attachment.objects.create(
        id=attachment_id,
        owner=user,
        name="bench.txt",
        mime_type="text/plain",
        type="file",
        upload_nonce=nonce,
        data=attachment.model_dump(mode="json"),
    )
    path = reverse("chatkit:upload-target", kwargs={"attachment_id": attachment_id})
    return f"{base}{path}?token={make_upload_token(attachment_id, user.pk, nonce)}"


if __name__ == "__main__":
    main()
