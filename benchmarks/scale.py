"""Many workers, one harness: N uvicorn workers on PostgreSQL, S3 (moto) and Redis, under a
mixed load of every request type, with random hang-ups and an optional database restart.

The workers are separate uvicorn processes, each on its own loopback port, serving the
benchmark app (``benchmarks/scale_settings.py``: the endpoint, uploads and content views;
psycopg pool; attachments on a bucket of a moto server; throttles counted in a Redis
database of ours, rates never reached). Every request goes to a worker picked at random, so
a client's reads are served by other workers than its writes.

Load:

- ``--users`` virtual users, one request at a time each, for ``--duration`` seconds, picking
  among ``threads.create`` (some with attachments), ``threads.add_user_message``,
  ``threads.retry_after_item``, ``threads.custom_action`` (the streams, answered by a slow
  responder: ``--deltas`` deltas ``--delta-interval`` s apart), ``threads.list``,
  ``items.list``, ``threads.get_by_id``, ``threads.update``, ``threads.delete``,
  ``items.feedback``, direct uploads, two-phase uploads (``attachments.create`` + PUT),
  ``attachments.delete`` and content fetches (the signed preview URL, through S3's
  redirect);
- ``--hangup`` of the streams are cut by the client at a random point (before the first
  event, right after ``thread.created``, mid-answer);
- ``--streams`` extra ``threads.create`` streams arriving evenly over ``--arrival`` seconds
  (1,000 over 10 s: the open-streams test), round-robin over the workers;
- ``--restart-db``: the database runs on a private cluster (``tests/pgcluster.py``),
  restarted (``pg_ctl restart -m fast``) halfway through. Without it, the machine's
  PostgreSQL serves a database of our own, unless ``--private-db``.

Then the workers are stopped (gracefully: what they were saving is saved) and the database
is compared with what clients were told. One table is printed:

- requests, 5xx (and how many were not JSON), SSE ``error`` events, transport errors
  (other than the harness's own hang-ups);
- lost writes: a thread, item, title, feedback, attachment (row and bytes) or delete a
  client saw confirmed that the database does not hold; stale reads: an ``items.list``
  that missed an item the same client had seen confirmed (on another worker);
- orphans: threads without items, attachment rows claiming bytes that are not in the
  bucket, objects in the bucket that no row names;
- peak RSS and OS threads of each worker, peak database connections (``pg_stat_activity``);
- time to first event (first ``data:`` line) p50/p99 over every stream.

    make scale                     # 2 workers, 30 users, 60 s, on a private cluster
    make scale SCALE_ARGS="--workers 2 --users 30 --duration 60 --restart-db"
    .venv/bin/python benchmarks/scale.py --workers 2 --users 30 --duration 60 --restart-db
    .venv/bin/python benchmarks/scale.py --workers 1 --users 0 --streams 1000 --arrival 10 \\
        --deltas 60 --delta-interval 0.5 --private-db

No thresholds are asserted here (tests/live/test_scale_harness.py runs a short form and does):
read the table. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pgcluster import PgCluster

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 16
CSRF = "s" * 32
WEIGHTS = {
    "threads.create": 14,
    "threads.add_user_message": 14,
    "threads.retry_after_item": 5,
    "threads.custom_action": 5,
    "threads.list": 10,
    "items.list": 10,
    "threads.get_by_id": 8,
    "threads.update": 6,
    "threads.delete": 3,
    "items.feedback": 6,
    "upload.direct": 5,
    "upload.two_phase": 5,
    "attachments.delete": 2,
    "content.fetch": 6,
}
STREAMING = {
    "threads.create",
    "threads.add_user_message",
    "threads.retry_after_item",
    "threads.custom_action",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within 60 s") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- what the clients were told -------------------------------------------------------


@dataclass
class ThreadState:
    id: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (id, type), confirmed
    title: str | None = None  # the last title confirmed, if no rename was left unconfirmed
    attachments: set[str] = field(default_factory=set)


@dataclass
class AttachmentState:
    id: str
    preview_url: str | None
    uploaded: bool  # the client was told its bytes were stored
    thread: str | None = None


@dataclass
class UserState:
    pk: int
    session: str
    threads: dict[str, ThreadState] = field(default_factory=dict)
    attachments: dict[str, AttachmentState] = field(default_factory=dict)
    deleted_threads: set[str] = field(default_factory=set)  # confirmed deletes
    deleted_attachments: set[str] = field(default_factory=set)
    feedback: dict[str, str] = field(default_factory=dict)  # item id -> kind


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)
    status_5xx: int = 0
    status_5xx_not_json: int = 0
    status_4xx: Counter = field(default_factory=Counter)
    stream_errors: int = 0
    transport_errors: int = 0
    hangups: int = 0
    stale_reads: int = 0
    wrong_bytes: int = 0
    ttfe: list[float] = field(default_factory=list)
    failures_after_recovery: int = 0
    samples: list[str] = field(default_factory=list)  # a few failure descriptions

    def note(self, text: str) -> None:
        if len(self.samples) < 8:
            self.samples.append(text)


class HungUp(Exception):
    """The harness cut this request on purpose."""


class Harness:
    def __init__(self, args: argparse.Namespace, bases: list[str], users: list[UserState]):
        self.args = args
        self.bases = bases
        self.users = users
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.db_back_at: float | None = None
        self.stop_at = 0.0

    # -- HTTP --------------------------------------------------------------------------

    def client(self, user: UserState) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            cookies={"sessionid": user.session, "csrftoken": CSRF},
            headers={"X-CSRFToken": CSRF},
            timeout=httpx.Timeout(120, connect=10),
            limits=httpx.Limits(max_keepalive_connections=len(self.bases)),
        )

    def base(self) -> str:
        return self.rng.choice(self.bases)

    def record(self, kind: str, response: httpx.Response, sent: float) -> bool:
        """Count ``response``; True for a 2xx/3xx."""
        self.stats.requests[kind] += 1
        if response.status_code >= 500:
            self.stats.status_5xx += 1
            if not response.headers.get("content-type", "").startswith("application/json"):
                self.stats.status_5xx_not_json += 1
            self.stats.note(f"{kind}: {response.status_code} {response.text[:120]!r}")
            self.after_recovery(sent)
            return False
        if response.status_code >= 400:
            self.stats.status_4xx[response.status_code] += 1
            self.stats.note(f"{kind}: {response.status_code} {response.text[:120]!r}")
            return False
        return True

    def after_recovery(self, sent: float) -> None:
        if self.db_back_at is not None and sent > self.db_back_at + 1:
            self.stats.failures_after_recovery += 1

    def transport_error(self, kind: str, error: Exception, sent: float) -> None:
        self.stats.requests[kind] += 1
        self.stats.transport_errors += 1
        self.stats.note(f"{kind}: {type(error).__name__} {error}")
        self.after_recovery(sent)

    async def call(self, http: httpx.AsyncClient, kind: str, payload: dict) -> Any:
        """A non-streaming endpoint request; its JSON, or None if it failed."""
        sent = time.monotonic()
        try:
            response = await http.post(f"{self.base()}/chatkit/", json=payload)
        except httpx.HTTPError as e:
            self.transport_error(kind, e, sent)
            return None
        return response.json() if self.record(kind, response, sent) else None

    async def stream(
        self,
        http: httpx.AsyncClient,
        kind: str,
        payload: dict,
        thread: ThreadState | None,
        user: UserState,
        *,
        base: str | None = None,
        may_hang_up: bool = True,
    ) -> ThreadState | None:
        """A streaming request; confirmed threads and items go into the client's state as
        their events arrive (a hang-up keeps what was seen before it)."""
        cut = None
        if may_hang_up and self.rng.random() < self.args.hangup:
            # 0: as soon as the headers arrive; 1-2: around thread.created; later: mid-answer.
            cut = self.rng.choice([0, 1, 2, 3, self.rng.randint(4, self.args.deltas + 4)])
        sent = time.monotonic()
        seen = 0
        try:
            async with http.stream(
                "POST", f"{base or self.base()}/chatkit/", json=payload
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    self.record(kind, response, sent)
                    return thread
                self.stats.requests[kind] += 1
                if cut == 0:
                    raise HungUp
                buffer = b""
                async for chunk in response.aiter_raw():
                    buffer += chunk
                    *blocks, buffer = buffer.split(b"\n\n")
                    for block in blocks:
                        if not block.startswith(b"data: "):
                            continue  # a keep-alive comment
                        if seen == 0:
                            self.stats.ttfe.append(time.monotonic() - sent)
                        seen += 1
                        thread = self.on_event(block, thread, user)
                        if cut is not None and seen >= cut:
                            raise HungUp
        except HungUp:
            self.stats.hangups += 1
        except httpx.HTTPError as e:
            self.transport_error(kind, e, sent)
        return thread

    def on_event(
        self, block: bytes, thread: ThreadState | None, user: UserState
    ) -> ThreadState | None:
        if b'"thread.item.updated"' in block[:60]:
            return thread  # a delta: nothing confirmed
        event = json.loads(block[6:])
        kind = event["type"]
        if kind == "thread.created":
            thread = ThreadState(id=event["thread"]["id"], title=event["thread"].get("title"))
            user.threads[thread.id] = thread
        elif kind == "thread.item.done" and thread is not None:
            item = event["item"]
            if item.get("type") in ("user_message", "assistant_message"):
                thread.items.append((item["id"], item["type"]))
                for attachment in item.get("attachments") or []:
                    thread.attachments.add(attachment["id"])
                    state = user.attachments.get(attachment["id"])
                    if state is not None:
                        state.thread = thread.id
        elif kind == "error":
            self.stats.stream_errors += 1
            self.stats.note(f"stream error event: {event}")
        return thread

    # -- the mixed load -------------------------------------------------------------------

    def user_input(self, text: str, attachments: list[str] = ()) -> dict:
        return {
            "content": [{"type": "input_text", "text": text}],
            "attachments": list(attachments),
            "inference_options": {},
        }

    async def run_user(self, user: UserState) -> None:
        async with self.client(user) as http:
            while time.monotonic() < self.stop_at:
                kinds, weights = zip(*WEIGHTS.items(), strict=True)
                kind = self.rng.choices(kinds, weights)[0]
                await self.act(http, user, kind)

    async def act(self, http: httpx.AsyncClient, user: UserState, kind: str) -> None:
        # One request in flight per user: the state below is the client's own view.
        threads = [t for t in user.threads.values() if t.items]
        thread = self.rng.choice(threads) if threads else None
        if kind == "threads.create" or (thread is None and kind in STREAMING):
            free = [a.id for a in user.attachments.values() if a.uploaded and a.thread is None]
            attach = free[:1] if free and self.rng.random() < 0.5 else []
            for attachment_id in attach:
                # Bound by this request if its message is stored, seen by the client or not.
                user.attachments[attachment_id].thread = "?"
            payload = {"type": "threads.create", "params": {"input": self.user_input("hi", attach)}}
            await self.stream(http, "threads.create", payload, None, user)
        elif kind == "threads.add_user_message":
            payload = {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread.id, "input": self.user_input("more")},
            }
            await self.stream(http, kind, payload, thread, user)
        elif kind == "threads.retry_after_item":
            users_msgs = [i for i, (_, t) in enumerate(thread.items) if t == "user_message"]
            if not users_msgs:
                return
            at = users_msgs[-1]
            # Everything after the message goes, whether or not the retry is confirmed.
            for item_id, _ in thread.items[at + 1 :]:
                user.feedback.pop(item_id, None)
            del thread.items[at + 1 :]
            payload = {
                "type": "threads.retry_after_item",
                "params": {"thread_id": thread.id, "item_id": thread.items[at][0]},
            }
            await self.stream(http, kind, payload, thread, user)
        elif kind == "threads.custom_action":
            payload = {
                "type": "threads.custom_action",
                "params": {"thread_id": thread.id, "action": {"type": "scale.ping"}},
            }
            await self.stream(http, kind, payload, thread, user)
        elif kind == "threads.list":
            await self.call(http, kind, {"type": kind, "params": {"limit": 20}})
        elif kind == "items.list" and thread is not None:
            expected = {item_id for item_id, _ in thread.items}
            page = await self.call(
                http, kind, {"type": kind, "params": {"thread_id": thread.id, "limit": 100}}
            )
            if page is not None and page.get("has_more") is False:
                missing = expected - {item["id"] for item in page["data"]}
                if missing:
                    self.stats.stale_reads += 1
                    self.stats.note(f"items.list missed {sorted(missing)}")
        elif kind == "threads.get_by_id" and thread is not None:
            await self.call(http, kind, {"type": kind, "params": {"thread_id": thread.id}})
        elif kind == "threads.update" and thread is not None:
            title = f"title {uuid.uuid4().hex[:8]}"
            thread.title = None  # unknown until confirmed
            done = await self.call(
                http, kind, {"type": kind, "params": {"thread_id": thread.id, "title": title}}
            )
            if done is not None:
                thread.title = title
        elif kind == "threads.delete" and thread is not None and self.rng.random() < 0.5:
            del user.threads[thread.id]  # may be gone, confirmed or not
            # Its attachments go too, and those of a create whose message the client never
            # saw stored ("?"): they may be bound to this thread.
            for attachment_id in thread.attachments | {
                a.id for a in user.attachments.values() if a.thread == "?"
            }:
                user.attachments.pop(attachment_id, None)
            for item_id, _ in thread.items:
                user.feedback.pop(item_id, None)
            done = await self.call(http, kind, {"type": kind, "params": {"thread_id": thread.id}})
            if done is not None:
                user.deleted_threads.add(thread.id)
        elif kind == "items.feedback" and thread is not None:
            answers = [i for i, t in thread.items if t == "assistant_message"]
            if not answers:
                return
            item_id = self.rng.choice(answers)
            feedback = self.rng.choice(["positive", "negative"])
            user.feedback.pop(item_id, None)
            done = await self.call(
                http,
                kind,
                {
                    "type": kind,
                    "params": {"thread_id": thread.id, "item_ids": [item_id], "kind": feedback},
                },
            )
            if done is not None:
                user.feedback[item_id] = feedback
        elif kind == "upload.direct":
            await self.upload_direct(http, user)
        elif kind == "upload.two_phase":
            await self.upload_two_phase(http, user)
        elif kind == "attachments.delete":
            free = [a for a in user.attachments.values() if a.thread is None]
            if not free:
                return
            attachment = self.rng.choice(free)
            del user.attachments[attachment.id]
            done = await self.call(
                http, kind, {"type": kind, "params": {"attachment_id": attachment.id}}
            )
            if done is not None:
                user.deleted_attachments.add(attachment.id)
        elif kind == "content.fetch":
            await self.fetch_content(user)

    async def upload_direct(self, http: httpx.AsyncClient, user: UserState) -> None:
        kind = "upload.direct"
        sent = time.monotonic()
        try:
            response = await http.post(
                f"{self.base()}/chatkit/upload/", files={"file": ("a.png", PNG, "image/png")}
            )
        except httpx.HTTPError as e:
            self.transport_error(kind, e, sent)
            return
        if self.record(kind, response, sent):
            body = response.json()
            user.attachments[body["id"]] = AttachmentState(
                body["id"], body.get("preview_url"), uploaded=True
            )

    async def upload_two_phase(self, http: httpx.AsyncClient, user: UserState) -> None:
        created = await self.call(
            http,
            "attachments.create",
            {
                "type": "attachments.create",
                "params": {"name": "b.png", "size": len(PNG), "mime_type": "image/png"},
            },
        )
        if created is None:
            return
        state = AttachmentState(created["id"], created.get("preview_url"), uploaded=False)
        user.attachments[state.id] = state
        descriptor = created["upload_descriptor"]
        sent = time.monotonic()
        try:
            # The upload URL names one worker; ChatKit.js sends it without a session.
            async with httpx.AsyncClient(timeout=60) as anonymous:
                response = await anonymous.request(
                    descriptor.get("method", "PUT"),
                    descriptor["url"],
                    content=PNG,
                    headers=descriptor.get("headers") or {},
                )
        except httpx.HTTPError as e:
            self.transport_error("upload.two_phase", e, sent)
            return
        if self.record("upload.two_phase", response, sent):
            state.uploaded = True

    async def fetch_content(self, user: UserState) -> None:
        ready = [a for a in user.attachments.values() if a.uploaded and a.preview_url]
        if not ready:
            return
        attachment = self.rng.choice(ready)
        kind = "content.fetch"
        sent = time.monotonic()
        try:
            # An <img> has no session: the signed URL alone, redirected to S3.
            async with httpx.AsyncClient(timeout=60, follow_redirects=True) as anonymous:
                response = await anonymous.get(attachment.preview_url)
        except httpx.HTTPError as e:
            self.transport_error(kind, e, sent)
            return
        if self.record(kind, response, sent) and response.content != PNG:
            self.stats.wrong_bytes += 1
            self.stats.note(f"content of {attachment.id}: {len(response.content)} bytes")

    async def warm_up(self, user: UserState) -> None:
        """One stream, list and upload per worker, not counted: the first request of a
        worker imports half of the SDK and fills the pool."""
        async with self.client(user) as http:
            for base in self.bases:
                payload = {"type": "threads.create", "params": {"input": self.user_input("w")}}
                await self.stream(
                    http, "warm-up", payload, None, user, base=base, may_hang_up=False
                )
                await http.post(f"{base}/chatkit/", json={"type": "threads.list", "params": {}})
                await http.post(
                    f"{base}/chatkit/upload/", files={"file": ("w.png", PNG, "image/png")}
                )

    # -- open streams ----------------------------------------------------------------

    async def run_streams(self) -> None:
        """``--streams`` threads.create streams arriving evenly over ``--arrival`` s."""
        if not self.args.streams:
            return
        interval = self.args.arrival / self.args.streams
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        clients = [
            httpx.AsyncClient(
                cookies={"sessionid": u.session, "csrftoken": CSRF},
                headers={"X-CSRFToken": CSRF},
                timeout=httpx.Timeout(300, connect=60),
                limits=limits,
            )
            for u in self.users
        ]
        start = time.monotonic()

        async def one(n: int) -> None:
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            user = self.users[n % len(self.users)]
            payload = {"type": "threads.create", "params": {"input": self.user_input("open")}}
            await self.stream(
                clients[n % len(clients)],
                "threads.create",
                payload,
                None,
                user,
                base=self.bases[n % len(self.bases)],
                may_hang_up=False,
            )

        try:
            await asyncio.gather(*(one(n) for n in range(self.args.streams)))
        finally:
            for c in clients:
                await c.aclose()


# -- what the workers and the database hold -------------------------------------------


class Sampler:
    """Peak RSS and OS threads of each worker, peak database connections, every 0.5 s."""

    def __init__(self, pids: list[int], pg: dict[str, str], db_name: str) -> None:
        self.pids = pids
        self.pg = pg
        self.db_name = db_name
        self.rss = dict.fromkeys(pids, 0)
        self.threads = dict.fromkeys(pids, 0)
        self.connections = 0

    def read_proc(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key == "VmRSS":
                        self.rss[pid] = max(self.rss[pid], int(value.split()[0]) * 1024)
                    elif key == "Threads":
                        self.threads[pid] = max(self.threads[pid], int(value))

    async def run(self, done: asyncio.Event) -> None:
        import psycopg

        conn = None
        while not done.is_set():
            self.read_proc()
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        host=self.pg["HOST"],
                        port=self.pg["PORT"],
                        user=self.pg["USER"],
                        dbname=self.db_name,
                        autocommit=True,
                        connect_timeout=2,
                    )
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    (self.db_name,),
                )
                (count,) = await cursor.fetchone()
                self.connections = max(self.connections, count)
            except psycopg.Error:
                conn = None  # the database is restarting: ask again next time
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
        if conn is not None:
            await conn.close()


def bucket_keys(s3: dict[str, Any]) -> set[str]:
    import boto3

    options = s3["OPTIONS"]
    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        region_name=options["region_name"],
    )
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=options["bucket_name"]):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def verify(users: list[UserState], s3: dict[str, Any]) -> dict[str, Any]:
    """Compare the database and the bucket with what clients were told."""
    from django.db.models import Exists, OuterRef

    from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem

    keys = bucket_keys(s3)
    lost: Counter = Counter()
    notes: list[str] = []

    def lose(what: str, detail: str) -> None:
        lost[what] += 1
        if len(notes) < 8:
            notes.append(f"lost {what}: {detail}")

    for user in users:
        threads = set(Thread.objects.filter(pk__in=list(user.threads)).values_list("pk", "title"))
        titles = dict(threads)
        item_ids = [i for t in user.threads.values() for i, _ in t.items]
        items = set(ThreadItem.objects.filter(pk__in=item_ids).values_list("pk", "thread_id"))
        for thread in user.threads.values():
            if thread.id not in titles:
                lose("thread", thread.id)
                continue
            if (
                thread.title
                and thread.title.startswith("title ")
                and (titles[thread.id] != thread.title)
            ):
                lose("title", f"{thread.id}: {titles[thread.id]!r} != {thread.title!r}")
            for item_id, item_type in thread.items:
                if (item_id, thread.id) not in items:
                    lose(item_type, f"{thread.id}/{item_id}")
        for thread_id in Thread.objects.filter(pk__in=list(user.deleted_threads)).values_list(
            "pk", flat=True
        ):
            lose("delete", thread_id)
        for item_id, kind in user.feedback.items():
            if not Feedback.objects.filter(item_id=item_id, user_id=user.pk, kind=kind).exists():
                lose("feedback", item_id)
        rows = dict(
            Attachment.objects.filter(pk__in=list(user.attachments)).values_list("pk", "file")
        )
        for attachment in user.attachments.values():
            if not attachment.uploaded:
                continue
            if attachment.id not in rows:
                lose("attachment", attachment.id)
            elif not rows[attachment.id] or rows[attachment.id] not in keys:
                lose("attachment bytes", attachment.id)
        for attachment_id in Attachment.objects.filter(
            pk__in=list(user.deleted_attachments)
        ).values_list("pk", flat=True):
            lose("attachment delete", attachment_id)

    files = set(Attachment.objects.exclude(file="").values_list("file", flat=True))
    empty_threads = Thread.objects.filter(
        ~Exists(ThreadItem.objects.filter(thread=OuterRef("pk")))
    ).count()
    return {
        "lost": lost,
        "lost_notes": notes,
        "threads": Thread.objects.count(),
        "items": ThreadItem.objects.count(),
        "attachments": Attachment.objects.count(),
        "orphan_threads": empty_threads,
        "orphan_rows": len(files - keys)
        + Attachment.objects.filter(file="", uploaded_at__isnull=False).count(),
        "pending_rows": Attachment.objects.filter(file="", uploaded_at__isnull=True).count(),
        "orphan_files": len(keys - files),
    }


# -- setting up and running --------------------------------------------------------------


def logged_errors(logs: list[str]) -> Counter:
    """The exception line of each traceback in the workers' logs, counted."""
    errors: Counter = Counter()
    for log in logs:
        lines = log.splitlines()
        for n, line in enumerate(lines):
            if line.startswith("Traceback"):
                last = next((x for x in lines[n + 1 :] if x and not x[0].isspace()), "(no message)")
                errors[last] += 1
    return errors


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def create_database(pg: dict[str, str], name: str) -> None:
    import psycopg

    with psycopg.connect(
        host=pg["HOST"], port=pg["PORT"], user=pg["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(count: int) -> list[UserState]:
    """Migrate, create ``count`` users with a session each (in this process)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    call_command("migrate", verbosity=0)
    users = []
    for n in range(count):
        user = get_user_model().objects.create_user(f"scale{n}", password="scale")
        client = Client()
        client.force_login(user)
        users.append(UserState(pk=user.pk, session=client.cookies["sessionid"].value))
    close_django()
    del connections
    return users


def close_django() -> None:
    """Close this process's connections and pool, so that only the workers' are counted."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        if hasattr(conn, "close_pool"):
            conn.close_pool()


def start_moto(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(proc, port, "moto server")
    return proc, f"http://127.0.0.1:{port}"


def s3_storage(endpoint: str) -> dict[str, Any]:
    import boto3

    bucket = f"chatkit-scale-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "addressing_style": "path",
            "signature_version": "s3v4",
            "file_overwrite": False,
        },
    }


def start_workers(count: int, env: dict[str, str], workdir: Path) -> list[tuple]:
    workers = []
    for n in range(count):
        port = free_port()
        log = (workdir / f"worker{n}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.endpoint_asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "4096",
                # Longer than the clients' keep-alive (httpx: 5 s), so that the server never
                # closes a connection a client is sending its next request on (the guide's
                # uvicorn command line does the same for browsers behind a proxy).
                "--timeout-keep-alive",
                "75",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers.append((proc, port, f"http://127.0.0.1:{port}"))
    for proc, port, _ in workers:
        wait_for_port(proc, port, "uvicorn worker")
    return workers


async def drive(
    args: argparse.Namespace,
    bases: list[str],
    users: list[UserState],
    sampler: Sampler,
    cluster: PgCluster | None,
) -> Harness:
    harness = Harness(args, bases, users)
    await harness.warm_up(users[-1])
    harness.stats = Stats()
    harness.stop_at = time.monotonic() + args.duration
    done = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(done))

    async def restart() -> None:
        await asyncio.sleep(args.duration / 2)
        await asyncio.to_thread(cluster.restart)
        harness.db_back_at = time.monotonic()

    restarting = asyncio.create_task(restart()) if cluster and args.restart_db else None
    await asyncio.gather(harness.run_streams(), *(harness.run_user(u) for u in users[: args.users]))
    if restarting is not None:
        await restarting
    await asyncio.sleep(1)  # let the workers finish what hang-ups left them to save
    done.set()
    await sampling
    return harness


def table(
    args: argparse.Namespace,
    harness: Harness,
    sampler: Sampler,
    result: dict[str, Any],
    tracebacks: int,
) -> list[tuple[str, str]]:
    stats = harness.stats

    def counts(counter: Counter) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))

    def total(counter: Counter) -> str:
        return f"{sum(counter.values())} ({counts(counter)})" if counter else "0"

    mb = [f"{sampler.rss[p] / 2**20:.0f}" for p in sampler.pids]
    saved = f"{result['attachments']} attachments"
    ttfe = f"{pct(stats.ttfe, 50) * 1000:.0f} / {pct(stats.ttfe, 99) * 1000:.0f}"
    rows = [
        ("requests", f"{sum(stats.requests.values())} ({counts(stats.requests)})"),
        ("hang-ups (by the harness)", str(stats.hangups)),
        ("5xx", f"{stats.status_5xx} ({stats.status_5xx_not_json} not JSON)"),
        ("4xx", total(stats.status_4xx)),
        ("stream error events", str(stats.stream_errors)),
        ("transport errors", str(stats.transport_errors)),
        ("lost writes", total(result["lost"])),
        ("stale reads", str(stats.stale_reads)),
        ("wrong content bytes", str(stats.wrong_bytes)),
        ("orphan threads (no items)", str(result["orphan_threads"])),
        ("orphan items", "0 (a foreign key: an item cannot outlive its thread)"),
        ("attachment rows without bytes", str(result["orphan_rows"])),
        ("files without rows", str(result["orphan_files"])),
        ("never uploaded (two-phase rows)", str(result["pending_rows"])),
        ("saved", f"{result['threads']} threads, {result['items']} items, {saved}"),
        ("peak RSS per worker (MB)", " / ".join(mb)),
        ("peak OS threads per worker", " / ".join(str(sampler.threads[p]) for p in sampler.pids)),
        ("peak DB connections", str(sampler.connections)),
        ("TTFE p50 / p99 (ms)", f"{ttfe} ({len(stats.ttfe)} streams)"),
        ("tracebacks in worker logs", str(tracebacks)),
    ]
    if args.restart_db:
        rows.insert(
            6,
            ("failed > 1 s after DB restart", str(stats.failures_after_recovery)),
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--streams", type=int, default=0, help="extra open streams")
    parser.add_argument("--arrival", type=float, default=10, help="seconds the streams arrive in")
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--delta-interval", type=float, default=0.1)
    parser.add_argument("--hangup", type=float, default=0.1, help="share of streams cut")
    parser.add_argument("--restart-db", action="store_true")
    parser.add_argument("--private-db", action="store_true")
    parser.add_argument("--pool-max", type=int, default=64, help="psycopg pool size per worker")
    parser.add_argument("--db-name", default="chatkit_scale")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="chatkit-scale-"))
    cluster = None
    moto = None
    workers: list[tuple] = []
    prefix = f"chatkit-scale-{uuid.uuid4().hex[:8]}"
    try:
        if args.restart_db or args.private_db:
            connections = str(args.pool_max * args.workers + 50)
            cluster = PgCluster(settings={"max_connections": connections}).start()
            pg = cluster.dsn
        else:
            pg = {"HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres"}
        create_database(pg, args.db_name)
        moto, endpoint = start_moto(workdir)
        s3 = s3_storage(endpoint)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.scale_settings",
            "SCALE_PG": json.dumps(pg),
            "SCALE_PG_NAME": args.db_name,
            "SCALE_S3": json.dumps(s3),
            "SCALE_REDIS": args.redis,
            "SCALE_PREFIX": prefix,
            "SCALE_POOL_MAX": str(args.pool_max),
            "BENCH_DB": "postgres",
            "BENCH_DELTAS": str(args.deltas),
            "BENCH_DELAY": str(args.delta_interval),
            "PYTHONDEVMODE": "0",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }
        os.environ.update(env)
        users = setup_django(max(args.users, 1 if args.streams else 0, min(args.streams, 50)))
        workers = start_workers(args.workers, env, workdir)
        sampler = Sampler([w[0].pid for w in workers], pg, args.db_name)
        harness = asyncio.run(drive(args, [w[2] for w in workers], users, sampler, cluster))
        for proc, _, _ in workers:
            stop(proc)
        sampler.read_proc()
        result = verify(users, s3)
        close_django()
        logs = [
            (workdir / f"worker{n}.log").read_text(errors="replace") for n in range(len(workers))
        ]
        errors = logged_errors(logs)
        tracebacks = sum(errors.values())
        rows = table(args, harness, sampler, result, tracebacks)
        db = (
            "private cluster, restarted halfway"
            if args.restart_db
            else ("private cluster" if cluster else "PostgreSQL on 127.0.0.1:5432")
        )
        load = [f"{args.users} users for {args.duration:g} s"] if args.users else []
        if args.streams:
            load.append(f"{args.streams} streams arriving over {args.arrival:g} s")
        hangups = f"{args.hangup:.0%} of the users' streams hung up, " if args.users else ""
        print(
            f"\n{args.workers} uvicorn worker(s), {' + '.join(load)}, responder "
            f"{args.deltas} deltas x {args.delta_interval:g} s, {hangups}{db}, "
            f"pool max {args.pool_max}/worker, S3 (moto), Redis throttles\n"
        )
        width = max(len(k) for k, _ in rows)
        print(f"| {'':{width}} | value |")
        print(f"|{'-' * (width + 2)}|-------|")
        for key, value in rows:
            print(f"| {key:{width}} | {value} |")
        for note in harness.stats.samples + result["lost_notes"]:
            print(f"  - {note}")
        for error, count in errors.most_common(6):
            print(f"  - logged {count}x: {error[:160]}")
        numbers = {
            "requests": sum(harness.stats.requests.values()),
            "by_type": dict(harness.stats.requests),
            "status_5xx": harness.stats.status_5xx,
            "status_5xx_not_json": harness.stats.status_5xx_not_json,
            "status_4xx": sum(harness.stats.status_4xx.values()),
            "stream_errors": harness.stats.stream_errors,
            "transport_errors": harness.stats.transport_errors,
            "hangups": harness.stats.hangups,
            "lost_writes": sum(result["lost"].values()),
            "stale_reads": harness.stats.stale_reads,
            "wrong_bytes": harness.stats.wrong_bytes,
            "orphan_threads": result["orphan_threads"],
            "orphan_rows": result["orphan_rows"],
            "orphan_files": result["orphan_files"],
            "rss": list(sampler.rss.values()),
            "threads": list(sampler.threads.values()),
            "db_connections": sampler.connections,
            "ttfe_p50": pct(harness.stats.ttfe, 50),
            "ttfe_p99": pct(harness.stats.ttfe, 99),
            "failures_after_recovery": harness.stats.failures_after_recovery,
            "tracebacks": tracebacks,
        }
        if args.json:
            Path(args.json).write_text(json.dumps(numbers, indent=2))
        return numbers
    finally:
        for proc, _, _ in workers:
            if proc.poll() is None:
                stop(proc)
        if moto is not None:
            stop(moto)
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(args.redis)
            for key in client.scan_iter(f"{prefix}:*"):
                client.delete(key)
        with contextlib.suppress(Exception):
            close_django()
        if cluster is not None:
            cluster.remove()
        else:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(
                    host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
                ) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
