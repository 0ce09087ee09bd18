"""``_internal.ordering``: the created_at column value and the insertion sequence."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from django.test import override_settings

from chatkit_django._internal.ordering import next_seq, ordering_datetime

PARIS = ZoneInfo("Europe/Paris")  # tests/settings.py TIME_ZONE


def test_naive_is_local_time_in_time_zone() -> None:
    value = ordering_datetime(datetime(2026, 7, 1, 12, 0))
    assert value.tzinfo is not None
    assert value == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # CEST is UTC+2


def test_naive_in_a_dst_gap_does_not_raise() -> None:
    value = ordering_datetime(datetime(2026, 3, 29, 2, 30))
    assert value.utcoffset() is not None


def test_aware_is_kept() -> None:
    aware = datetime(2026, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert ordering_datetime(aware) is aware


@override_settings(USE_TZ=False)
def test_without_use_tz_aware_becomes_naive_local_time() -> None:
    value = ordering_datetime(datetime(2026, 1, 1, 11, 0, tzinfo=UTC))
    assert value == datetime(2026, 1, 1, 12, 0)  # CET is UTC+1
    naive = datetime(2026, 1, 1, 12, 0)
    assert ordering_datetime(naive) is naive


def test_next_seq_is_strictly_increasing_across_threads() -> None:
    drawn: list[list[int]] = [[] for _ in range(4)]

    def draw(bucket: list[int]) -> None:
        bucket.extend(next_seq() for _ in range(2000))

    threads = [threading.Thread(target=draw, args=(b,)) for b in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [s for bucket in drawn for s in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in drawn:
        assert bucket == sorted(bucket)
