"""Smoke test: the responsiveness benchmark runs a few trials with a real worker on Redis and
PostgreSQL, quiet and under load, and prints its figures; skipped when either is unreachable."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from tests.bench.postgres import SERVER, database_exists, needs_postgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "responsiveness.py"
REDIS = "redis://127.0.0.1:6379"


def free_redis_database() -> int | None:
    """An empty Redis database other than 0 (bin/test's) and 13 (the script's default), or None.

    The benchmark purges its broker's queues and its worker takes every message there: sharing a
    database with another run would mix their jobs.
    """
    try:
        candidates = [n for n in range(1, 16) if n != 13]
        random.shuffle(candidates)
        for n in candidates:
            client = redis.Redis.from_url(f"{REDIS}/{n}", socket_connect_timeout=3)
            try:
                if client.dbsize() == 0:
                    return n
            finally:
                client.close()
    except redis.RedisError:
        return None
    return None


@pytest.fixture
def redis_database() -> int:
    n = free_redis_database()
    if n is None:
        pytest.skip(f"Redis is not reachable at {REDIS} (or has no empty database)")
    return n


@needs_postgres
def test_quiet_and_loaded_trials_print_percentiles_jobs_and_verdicts(redis_database: int) -> None:
    name = f"bench_responsiveness_smoke_{uuid.uuid4().hex[:8]}"
    args = ["--trials", "5", "--warmup", "1", "--load", "--database-url", f"{SERVER}/{name}"]
    args += ["--broker", f"{REDIS}/{redis_database}"]

    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )

    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert re.search(
        r"^responsiveness benchmark: 5 trials per phase, feedback of 32 labels, probe of 1 row polled every 5 ms; "
        r"2 gunicorn workers \(sync\), celery workers \(prefork\) default x2, monitoring,gpu x1 on redis, PostgreSQL",
        out,
        re.MULTILINE,
    ), out
    for phase in ("quiet", "load"):
        # Every trial's probe reads the labeled row's key: its compensated score must have moved.
        assert re.search(rf"^{phase} +(\d+ +){{4}}\d+   5/5$", out, re.MULTILINE), out
        assert re.search(rf"^  {phase} +claim -?\d+ / -?\d+; run \d+ / \d+  \(\d of 5 trials", out, re.MULTILINE), out
        jobs = re.search(rf"^{phase} +compensation jobs: (\d+) for (\d+) feedback calls .* 0 failed", out, re.MULTILINE)
        assert jobs is not None, out
        assert 1 <= int(jobs.group(1)) <= int(jobs.group(2))
        # Far under the target, loaded or not, with the smoke run's few trials: a MISS is a regression.
        assert re.search(rf"^{phase} +p95 = \d+ ms   target < 1000 ms   PASS$", out, re.MULTILINE), out
    assert "background load: " in out
    assert not database_exists(name)
