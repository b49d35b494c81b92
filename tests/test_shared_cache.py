"""The cache that holds throttle counters is shared by processes and counts exactly under contention."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.cache import cache

from config.ratelimit import FixedWindow
from config.rates import Rate

PROCESSES = 4
HITS = 100


def _hit_many(scope: str, start: Any) -> None:
    django.setup()  # a fresh interpreter, like a gunicorn worker: it shares nothing but the cache
    start.wait()
    window = FixedWindow(scope, Rate(10_000, 3600))
    for _ in range(HITS):
        window.hit()


def test_counters_from_several_processes_lose_no_count() -> None:
    # Spawned, not forked: forking a test process that has threads (a live server, a broker pool) can
    # copy a held lock into the child.
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_hit_many, args=("contended", start)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    assert FixedWindow("contended", Rate(10_000, 3600)).count() == PROCESSES * HITS


@pytest.mark.skipif(
    settings.CACHES["default"]["BACKEND"] != "config.filecache.LockingFileBasedCache", reason="the file cache only"
)
def test_the_file_cache_keeps_a_counters_expiry_when_counting() -> None:
    # Django's FileBasedCache.incr would re-set the entry with the default timeout (300 s).
    cache.add("short-lived", 1, timeout=1)
    assert cache.incr("short-lived") == 2
    assert cache.get("short-lived") == 2

    deadline = time.monotonic() + 5
    while cache.get("short-lived") is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    assert cache.get("short-lived") is None
    with pytest.raises(ValueError):
        cache.incr("short-lived")
