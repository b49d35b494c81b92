"""Start a real Celery worker process against the test database and the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dj_database_url
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database the tests run on (pytest-django renamed it)."""
    base = dj_database_url.parse(settings.DATABASE_URL)
    name = connection.settings_dict["NAME"]
    if base["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{name}"
    url = settings.DATABASE_URL.rsplit("/", 1)[0]
    return f"{url}/{name}"


@contextmanager
def celery_worker(
    queues: list[str] | None = None, *, env: dict[str, str] | None = None, pool: str = "solo"
) -> Iterator[tuple[str, str]]:
    """Run ``celery worker`` on private queues; yields (worker name, first queue). ``env`` overrides
    the worker's environment (its DATABASE_URL, say); ``pool`` is Celery's pool."""
    tag = uuid.uuid4().hex[:8]
    queues = queues or [f"test-{tag}"]
    name = f"test-{tag}@localhost"
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path = Path(settings.VAR_DIR) / f"worker-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-n",
                name,
                "-Q",
                ",".join(queues),
                "--pool",
                pool,
                *(["--concurrency", "1"] if pool == "prefork" else []),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield name, queues[0]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    log_path.unlink(missing_ok=True)


def wait_for(condition, timeout: float = 60.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = condition()
    assert value, f"condition not met within {timeout}s (last value: {value!r})"
    return value
