"""The scale harness (benchmarks/scale.py): its short form, and its checks on their own.

The short form runs the harness as ``make scale`` does, small: two uvicorn workers on
PostgreSQL, S3 on a moto server, throttles in Redis, a few users for ~10 s of every request
type, with hang-ups and a fast responder. The harness has its own database on the test server, so the test needs
PostgreSQL (``make test-postgres`` runs it; the SQLite run deselects it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from django.utils.timezone import now

from benchmarks.scale import AttachmentState, ThreadState, UserState, verify
from chatkit_django.models import Attachment, Thread, ThreadItem
from tests import ROOT
from tests.factories import make_assistant_message, make_thread, make_user_message

ROWS = [
    "requests",
    "5xx",
    "lost writes",
    "orphan threads (no items)",
    "attachment rows without bytes",
    "files without rows",
    "peak RSS per worker (MB)",
    "peak OS threads per worker",
    "peak DB connections",
    "TTFE p50 / p99 (ms)",
]


@pytest.mark.postgres
@pytest.mark.live
def test_short_form(tmp_path):
    numbers = tmp_path / "numbers.json"
    name = os.environ.get("CHATKIT_PG_NAME", "chatkit") + "_scale"
    command = [sys.executable, "benchmarks/scale.py", "--workers", "2", "--users", "4"]
    command += ["--duration", "10", "--hangup", "0.3", "--pool-max", "4", "--seed", "0"]
    command += ["--deltas", "5", "--delta-interval", "0.05"]
    command += ["--db-name", name, "--json", str(numbers)]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    table = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in run.stdout.splitlines()
        if line.startswith("| ") and line.count("|") >= 3
    }
    assert set(ROWS) <= set(table), run.stdout
    result = json.loads(numbers.read_text())
    assert result["requests"] > 40, run.stdout
    assert {"threads.create", "threads.add_user_message", "threads.list"} <= set(
        result["by_type"]
    ), run.stdout
    assert result["status_5xx"] == 0, run.stdout
    assert result["stream_errors"] == result["transport_errors"] == 0, run.stdout
    assert result["lost_writes"] == 0, run.stdout
    assert result["stale_reads"] == 0, run.stdout
    assert result["wrong_bytes"] == 0, run.stdout
    assert result["orphan_threads"] == result["orphan_rows"] == result["orphan_files"] == 0, (
        run.stdout
    )
    assert len(result["rss"]) == len(result["threads"]) == 2
    assert all(rss > 0 for rss in result["rss"]), run.stdout
    assert result["db_connections"] > 0, run.stdout


@pytest.mark.django_db
def test_verify_reports_lost_writes_and_orphans(user_factory, s3_storage_settings):
    """What the table counts is what the database lacks, or holds without a reason."""
    user = user_factory()
    kept = make_thread()
    Thread.objects.create(id=kept.id, owner=user, created_at=now(), data={}, seq=1)
    question = make_user_message(kept.id)
    for n, item in enumerate([question, make_assistant_message(kept.id)]):
        ThreadItem.objects.create(
            id=item.id, thread_id=kept.id, type=item.type, created_at=now(),
            seq=n, data={},
        )  # fmt: skip
    empty = make_thread()  # deleted by the client, confirmed: still here, and empty
    Thread.objects.create(id=empty.id, owner=user, created_at=now(), data={}, seq=2)
    options = s3_storage_settings["OPTIONS"]
    s3 = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.put_object(Bucket=options["bucket_name"], Key="chatkit/stray.png", Body=b"x")
    Attachment.objects.create(
        id="atc_nobytes", owner=user, name="a.png", mime_type="image/png", type="image",
        file="chatkit/missing.png", data={},
    )  # fmt: skip

    state = UserState(pk=user.pk, session="")
    state.threads[kept.id] = ThreadState(
        kept.id, items=[(question.id, "user_message"), ("msg_gone", "assistant_message")]
    )
    state.threads["thr_gone"] = ThreadState("thr_gone")
    state.deleted_threads.add(empty.id)
    state.attachments["atc_nobytes"] = AttachmentState("atc_nobytes", None, uploaded=True)
    state.attachments["atc_norow"] = AttachmentState("atc_norow", None, uploaded=True)
    state.feedback["msg_gone"] = "positive"

    result = verify([state], s3_storage_settings)
    assert dict(result["lost"]) == {
        "assistant_message": 1,
        "thread": 1,
        "delete": 1,
        "feedback": 1,
        "attachment": 1,
        "attachment bytes": 1,
    }
    assert result["orphan_threads"] == 1
    assert result["orphan_rows"] == 1
    assert result["orphan_files"] == 1

    state.threads[kept.id].items.pop()
    del state.threads["thr_gone"]
    state.deleted_threads.clear()
    state.feedback.clear()
    state.attachments.clear()
    assert sum(verify([state], s3_storage_settings)["lost"].values()) == 0
