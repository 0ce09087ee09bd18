"""The admin's thread list and thread deletion against their naive baselines (SQLite).

Fills ``--threads`` threads of ``--items`` items each (plus one attachment and one feedback
row per thread), then prints medians of ``--repeat`` runs and their ratios, all measured
in this run:

- one list page (``--page`` rows) with ``ThreadAdmin``'s subquery annotations, against the
  baseline of per-row ``COUNT`` and "first message" queries (what ``list_display`` methods
  doing their own queries cost);
- deleting one thread of ``--long-items`` items with ``chatkit_django.deletion.delete_threads``
  against the ORM's cascade ``Thread.objects.filter(pk=...).delete()``.

    .venv/bin/python benchmarks/admin.py
    .venv/bin/python benchmarks/admin.py --threads 2000 --long-items 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(workdir: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "chatkit_django",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(workdir, "b.db"),
            }
        },
        STORAGES={"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}},
        CHATKIT={"SERVER_CLASS": "chatkit_django.server.DjangoChatKitServer"},
    )
    django.setup()


def make_thread(user: Any, thread_id: str, n_items: int, t0: datetime) -> None:
    from chatkit.types import AssistantMessageContent, AssistantMessageItem, ThreadMetadata

    from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
    from chatkit_django.store import dump

    meta = ThreadMetadata(id=thread_id, created_at=t0)
    Thread.objects.create(id=thread_id, owner=user, created_at=t0, seq=0, data=dump(meta))
    rows = []
    for i in range(n_items):
        item = AssistantMessageItem(
            id=f"{thread_id}_m{i}",
            thread_id=thread_id,
            created_at=t0 + timedelta(seconds=i),
            content=[AssistantMessageContent(text=f"Answer {i}. " * 8)],
        )
        rows.append(
            ThreadItem(
                id=item.id,
                thread_id=thread_id,
                type="user_message" if i % 2 == 0 else item.type,
                created_at=item.created_at,
                seq=i,
                preview=item.content[0].text,
                data=dump(item),
            )
        )
    ThreadItem.objects.bulk_create(rows, batch_size=2000)
    Attachment.objects.create(
        id=f"{thread_id}_a",
        owner=user,
        thread_id=thread_id,
        name="a.png",
        mime_type="image/png",
        type="image",
        data={},
    )
    Feedback.objects.create(thread_id=thread_id, item=rows[-1], user=user, kind="negative")


def median(call: Callable[[], Any], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=500)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--long-items", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        configure(workdir)
        from django.contrib.admin.sites import site
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection
        from django.test import RequestFactory
        from django.test.utils import CaptureQueriesContext

        from chatkit_django.deletion import delete_threads
        from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem

        call_command("migrate", verbosity=0)
        user = User.objects.create_superuser("bench", "b@example.com", "pw")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(args.threads):
            make_thread(user, f"thr_{n:06d}", args.items, t0 + timedelta(minutes=n))

        admin = site._registry[Thread]
        request = RequestFactory().get("/admin/chatkit_django/thread/")
        request.user = user

        def ours() -> list[tuple[Any, ...]]:
            rows = admin.get_queryset(request).order_by("-updated_at")[: args.page]
            return [
                (admin.display_title(t), t.item_count, t.attachment_count, t.latest_feedback)
                for t in rows
            ]

        def naive() -> list[tuple[Any, ...]]:
            rows = Thread.objects.select_related("owner").order_by("-updated_at")[: args.page]
            out = []
            for t in rows:
                first = (
                    ThreadItem.objects.filter(thread=t, type="user_message")
                    .order_by("created_at", "seq", "id")
                    .values_list("preview", flat=True)
                    .first()
                )
                latest = (
                    Feedback.objects.filter(thread=t)
                    .order_by("-created_at", "-pk")
                    .values_list("kind", flat=True)
                    .first()
                )
                out.append(
                    (
                        t.title or first,
                        ThreadItem.objects.filter(thread=t).count(),
                        Attachment.objects.filter(thread=t).count(),
                        latest,
                    )
                )
            return out

        assert [r[1:] for r in ours()] == [r[1:] for r in naive()]
        with CaptureQueriesContext(connection) as ours_q:
            ours()
        with CaptureQueriesContext(connection) as naive_q:
            naive()
        t_ours, t_naive = median(ours, args.repeat), median(naive, args.repeat)
        print(f"List page of {args.page} of {args.threads} threads ({args.items} items each):")
        print(f"  subqueries  {t_ours * 1000:8.1f} ms  {len(ours_q.captured_queries)} queries")
        print(
            f"  per-row     {t_naive * 1000:8.1f} ms  {len(naive_q.captured_queries)} queries"
            f"   ratio per-row/subqueries = {t_naive / t_ours:.1f}x"
        )

        results = {}
        for name, delete in {
            "delete_threads": lambda tid: delete_threads([tid]),
            "ORM cascade": lambda tid: Thread.objects.filter(pk=tid).delete(),
        }.items():
            times, queries = [], 0
            for r in range(max(2, args.repeat // 2)):
                tid = f"long_{name[:3]}_{r}"
                make_thread(user, tid, args.long_items, t0)
                with CaptureQueriesContext(connection) as q:
                    start = time.perf_counter()
                    delete(tid)
                    times.append(time.perf_counter() - start)
                queries = len(q.captured_queries)
                assert not ThreadItem.objects.filter(thread_id=tid).exists()
            results[name] = (statistics.median(times), queries)
        (t_ours, q_ours), (t_orm, q_orm) = results["delete_threads"], results["ORM cascade"]
        print(f"Deleting a thread of {args.long_items} items:")
        print(f"  delete_threads {t_ours * 1000:8.1f} ms  {q_ours} queries")
        print(
            f"  ORM cascade    {t_orm * 1000:8.1f} ms  {q_orm} queries"
            f"   ratio cascade/delete_threads = {t_orm / t_ours:.1f}x"
        )


if __name__ == "__main__":
    main()
