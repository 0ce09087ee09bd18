"""Many open streams on one worker: the ChatKit endpoint against the FastAPI baseline.

Both apps (``benchmarks/endpoint_throughput.py`` describes them) run under uvicorn, one worker
each, one at a time, on the same database, store and responder. Each round, for each app:

1. **cost**: ``--cost-streams`` streams with no deltas, then ``--event-streams`` with
   ``--cost-deltas`` deltas each (no delay), ``--concurrency`` at a time. The server
   process's CPU time (``utime + stime`` in ``/proc/<pid>/stat``) over the first phase,
   divided by the streams, is the CPU per stream (its start and its end); the second
   phase's, less its streams' starts and ends, divided by its deltas, is the CPU per event.
2. **open**: ``--open`` streams arriving evenly over ``--arrival`` seconds, each answered
   with ``--deltas`` deltas, one every ``--delay`` seconds, so that they are all open at
   once. Sampled every 0.25 s: the server's RSS and OS threads (``/proc/<pid>/status``).
   Counted: errors (any status but 200, a broken stream, an ``error`` event), time to first
   event, and the answers saved in the database in full.

It prints one table with the median of the rounds and their spread (min-max), and, for each
app beside the FastAPI app, its CPU costs divided by the FastAPI app's of the same round (the
apps take turns in every round, so the machine's drift hits them alike; the ratios' median is
the comparison to read on a noisy machine). No thresholds are asserted: read the numbers.

    BENCH_DB=postgres .venv/bin/python benchmarks/open_streams.py

More apps for comparison (``--apps``): ``django-stock``, the endpoint under Django's own
``get_asgi_application()`` (a thread per request for as long as it streams);
``django-1-thread``, under ``chatkit_django.asgi`` with ``REQUEST_THREADS = 1``;
``django-bare``, the FastAPI app's few lines as a plain Django view (Django's own cost).
``--open 0`` measures the CPU costs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.endpoint_throughput import pct, serve_process, setup_database

APPS = {  # name: (ASGI application, environment)
    "django": ("benchmarks.endpoint_asgi:application", {}),
    "django-stock": ("benchmarks.endpoint_asgi:application", {"BENCH_ASGI": "django"}),
    "fastapi": ("benchmarks.endpoint_fastapi:app", {}),
    # The FastAPI app's few lines as a plain async Django view (benchmarks/endpoint_bare_urls.py)
    # under chatkit_django.asgi: Django's own cost, without the endpoint's.
    "django-bare": (
        "benchmarks.endpoint_asgi:application",
        {"BENCH_URLCONF": "benchmarks.endpoint_bare_urls"},
    ),
    # chatkit_django.asgi with one request thread: no two threads contend for the GIL.
    "django-1-thread": ("benchmarks.endpoint_asgi:application", {"BENCH_REQUEST_THREADS": "1"}),
}
TICK = os.sysconf("SC_CLK_TCK")


def create_body(deltas: int, delay: float) -> bytes:
    text = f"bench {deltas} {delay}"
    return json.dumps(
        {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": text}],
                    "attachments": [],
                    "inference_options": {},
                }
            },
        }
    ).encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM", "Threads"}:
            values[key] = int(value.split()[0])
    return values


def dechunk(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response."""
    out, pos = [], 0
    while True:
        end = raw.index(b"\r\n", pos)
        size = int(raw[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


async def one_stream(port: int, cookie: str, body: bytes) -> dict[str, Any]:
    """One streamed request over a raw connection (a light client: 1,000 run in this process)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /chatkit/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nX-CSRFToken: " + b"x" * 32 + b"\r\n"
            b"Cookie: sessionid=" + cookie.encode() + b"; csrftoken=" + b"x" * 32 + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        raw, first = b"", None
        while chunk := await reader.read(65536):
            raw += chunk
            if first is None and b"data:" in raw:
                first = time.perf_counter() - start
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1]) if head else 0
    result: dict[str, Any] = {"status": code, "ttfe": first, "thread": None, "ok": False}
    if code != 200:
        result["body"] = payload[:200]
        return result
    if b"transfer-encoding: chunked" in head.lower():
        payload = dechunk(payload)
    events = [json.loads(line[6:]) for line in payload.split(b"\n") if line.startswith(b"data: ")]
    types = [e["type"] for e in events]
    result["thread"] = events[0]["thread"]["id"] if types and types[0] == "thread.created" else None
    result["ok"] = "error" not in types and bool(types) and types[-1] == "thread.item.done"
    return result


async def cost_phase(port: int, cookie: str, pid: int, args: argparse.Namespace) -> dict:
    gate = asyncio.Semaphore(args.concurrency)

    async def gated(body: bytes) -> dict[str, Any]:
        async with gate:
            return await one_stream(port, cookie, body)

    async def run(deltas: int, streams: int) -> float:
        body = create_body(deltas, 0)
        before = cpu_seconds(pid)
        results = await asyncio.gather(*(gated(body) for _ in range(streams)))
        assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
        return cpu_seconds(pid) - before

    await run(0, args.cost_streams)  # warm-up: imports, the pool at its working size
    plain = await run(0, args.cost_streams) / args.cost_streams
    # Long answers, so that their events, not their starts, are most of the CPU time.
    long = await run(args.cost_deltas, args.event_streams)
    events = args.event_streams * args.cost_deltas
    return {
        "CPU/stream ms": plain * 1000,
        "CPU/event us": (long - plain * args.event_streams) / events * 1e6,
    }


async def open_phase(port: int, cookie: str, pid: int, args: argparse.Namespace) -> dict:
    body = create_body(args.deltas, args.delay)
    samples: list[dict[str, int]] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(status(pid))
            await asyncio.sleep(0.25)

    async def arrive(i: int) -> dict[str, Any]:
        await asyncio.sleep(i * args.arrival / args.open)
        try:
            return await one_stream(port, cookie, body)
        except OSError as e:
            return {"status": 0, "ttfe": None, "thread": None, "ok": False, "body": repr(e)}

    sampler = asyncio.create_task(sample())
    before = cpu_seconds(pid)
    start = time.perf_counter()
    results = await asyncio.gather(*(arrive(i) for i in range(args.open)))
    elapsed = time.perf_counter() - start
    done.set()
    await sampler
    cpu = cpu_seconds(pid) - before
    errors = [r for r in results if not r["ok"]]
    for r in errors[:3]:
        print("  error:", r.get("status"), r.get("body", b"")[:200], file=sys.stderr)
    ttfe = [r["ttfe"] for r in results if r["ttfe"] is not None] or [float("nan")]
    return {
        "errors": len(errors),
        "saved": await asyncio.to_thread(saved_answers, [r["thread"] for r in results], args),
        "TTFE p50 ms": pct(ttfe, 50) * 1000,
        "TTFE p99 ms": pct(ttfe, 99) * 1000,
        "peak threads": max(s["Threads"] for s in samples),
        "peak RSS MB": max(s["VmHWM"] for s in samples) / 1024,
        "CPU s": cpu,
        "phase s": elapsed,
    }


def saved_answers(thread_ids: list[str | None], args: argparse.Namespace) -> int:
    """Threads of this phase whose full answer is in the database."""
    from django.db import connection

    from chatkit_django.models import ThreadItem

    text = "tok " * args.deltas
    rows = ThreadItem.objects.filter(
        thread_id__in=[t for t in thread_ids if t], type="assistant_message"
    ).values_list("data", flat=True)
    count = sum(1 for data in rows if data["content"] and data["content"][0]["text"] == text)
    connection.close()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default="django,fastapi")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--open", type=int, default=1000)
    parser.add_argument("--arrival", type=float, default=10.0)
    parser.add_argument("--deltas", type=int, default=60)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--cost-streams", type=int, default=200)
    parser.add_argument("--cost-deltas", type=int, default=1000)
    parser.add_argument("--event-streams", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    apps = args.apps.split(",")

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.endpoint_settings",
        "BENCH_DIR": tempfile.mkdtemp(prefix="chatkit-bench-"),
        "PYTHONDEVMODE": "0",
    }
    cookie = setup_database(env)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name in apps:  # in turn, so drift hits all alike
            app, app_env = APPS[name]
            with serve_process(app, {**env, **app_env}) as (base, proc):
                port, pid = int(base.rsplit(":", 1)[1]), proc.pid
                row = asyncio.run(cost_phase(port, cookie, pid, args))
                if args.open:  # --open 0: the CPU costs only
                    row.update(asyncio.run(open_phase(port, cookie, pid, args)))
            results[name].append(row)
            print(f"  {name}: {row}", file=sys.stderr)

    print(table(results, apps, args))


def number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(results: dict[str, list[dict[str, float]]], apps: list[str], args: Any) -> str:
    """Median of the rounds and their spread (min-max), one column per app."""
    db = os.environ.get("BENCH_DB", "sqlite")
    lines = [
        (
            (
                f"{args.open} streams arriving over {args.arrival:g} s, {args.deltas} deltas "
                f"every {args.delay:g} s; "
                if args.open
                else ""
            )
            + f"cost: {args.cost_streams} streams x 0 and {args.event_streams} x "
            f"{args.cost_deltas} deltas; {args.rounds} rounds, {db}, uvicorn 1 worker each; "
            "median (min-max)"
        ),
        f"{'':15}" + "".join(f"{name:>24}" for name in apps),
    ]
    for key in results[apps[0]][0]:
        cells = []
        for name in apps:
            values = [r[key] for r in results[name]]
            median, low, high = statistics.median(values), min(values), max(values)
            cells.append(f"{number(median)} ({number(low)}-{number(high)})")
        lines.append(f"{key:15}" + "".join(f"{c:>24}" for c in cells))
    if "fastapi" in apps:
        for key in ("CPU/stream ms", "CPU/event us"):
            cells = []
            for name in apps:
                ratios = [
                    r[key] / b[key] for r, b in zip(results[name], results["fastapi"], strict=True)
                ]
                median, low, high = statistics.median(ratios), min(ratios), max(ratios)
                cells.append(f"{median:.2f}x ({low:.2f}-{high:.2f})")
            label = key.split()[0] + " /FastAPI"
            lines.append(f"{label:15}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
