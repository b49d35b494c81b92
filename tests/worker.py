"""Start a real Celery worker process against the test database and the configured broker.

Tests never touch the real ``default``, ``gpu`` and ``monitoring`` queues: a developer's own
worker (or another test run) on the same broker would take their messages, or they its.
``private_queues`` routes every task this process sends to queues named for the test, and
``celery_worker(["default", "gpu"])`` inside it consumes those instead, in a worker that routes
the tasks it sends itself (an evaluation after a retrain, a window close after an update) the
same way. ``routed_command`` starts any other process (a web server) with the same routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
from django.conf import settings
from django.db import connection

from tasks.celery import app

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# The queues of tasks/celery.py's task_queues.
REAL_QUEUES = ("default", "gpu", "monitoring")

# Run as `python -c _ROUTED '<routes json>' <module> <args...>`: set this process's task routes,
# then run <module> as `python -m` would (celery, gunicorn). The app is the one `-A tasks` loads.
_ROUTED = """
import json, runpy, sys
from tasks.celery import app
routes = json.loads(sys.argv[1])
app.conf.task_default_queue = routes["default"]
app.conf.task_routes = routes["routes"]
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""

# The private names in use in this process (real queue name -> private name), if any.
_private: dict[str, str] = {}


def test_database_url() -> str:
    """A DATABASE_URL for the database the tests run on (pytest-django renamed it)."""
    base = dj_database_url.parse(settings.DATABASE_URL)
    name = connection.settings_dict["NAME"]
    if base["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{name}"
    url = settings.DATABASE_URL.rsplit("/", 1)[0]
    return f"{url}/{name}"


def _private_routes(names: dict[str, str], routes: dict[str, Any]) -> dict[str, Any]:
    """The product's task routes with each real queue replaced by its private name."""
    private: dict[str, Any] = {}
    for pattern, route in routes.items():
        if isinstance(route, str):  # Celery's shorthand: the queue's name
            private[pattern] = names.get(route, route)
        else:
            private[pattern] = {**route, "queue": names.get(route["queue"], route["queue"])}
    return private


def _apply_routes(default_queue: str, routes: dict[str, Any]) -> None:
    app.conf.task_default_queue = default_queue
    app.conf.task_routes = routes
    # The router is built once per process and keeps the route table it was built with: rebuild it,
    # or a process that has sent a task before (an earlier test) keeps sending to "default".
    app.amqp.flush_routes()
    app.amqp.router = app.amqp.Router()


def _routes_argument() -> str:
    return json.dumps({"default": app.conf.task_default_queue, "routes": app.conf.task_routes})


@contextmanager
def private_queues() -> Iterator[dict[str, str]]:
    """Route every task this process sends to private queues; yields {real name: private name}.

    A worker started inside with ``celery_worker(["default"])`` consumes the private ``default``.
    Fresh names per call, so no message of an earlier test (or run) is ever waiting in them.
    """
    if _private:
        yield dict(_private)  # nested: keep the outer names
        return
    tag = uuid.uuid4().hex[:8]
    names = {queue: f"test-{tag}-{queue}" for queue in REAL_QUEUES}
    saved = (app.conf.task_default_queue, app.conf.task_routes)
    _apply_routes(names.get(saved[0], saved[0]), _private_routes(names, saved[1]))
    _private.update(names)
    try:
        yield dict(names)
    finally:
        _private.clear()
        _apply_routes(*saved)


def routed_command(module: str, *args: str) -> list[str]:
    """``python -m module args`` in a process whose tasks go where this process's go."""
    return [sys.executable, "-c", _ROUTED, _routes_argument(), module, *args]


@contextmanager
def celery_worker(
    queues: list[str] | None = None, *, env: dict[str, str] | None = None, pool: str = "solo"
) -> Iterator[tuple[str, str]]:
    """Run ``celery worker`` on private queues; yields (worker name, first queue). ``env`` overrides
    the worker's environment (its DATABASE_URL, say); ``pool`` is Celery's pool.

    Real queue names ("default", "gpu", "monitoring") stand for their private counterparts: those
    of the enclosing ``private_queues``, or fresh ones for the duration of this worker.
    """
    with private_queues() if any(q in REAL_QUEUES for q in queues or []) else _no_routes() as names:
        tag = uuid.uuid4().hex[:8]
        queues = [names.get(q, q) for q in queues] if queues else [f"test-{tag}"]
        name = f"test-{tag}@localhost"
        env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1", **(env or {})}
        log_path = Path(settings.VAR_DIR) / f"worker-{tag}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        worker_args = [
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
        ]
        command = (
            routed_command("celery", "-A", "tasks", *worker_args)
            if names
            else [sys.executable, "-m", "celery", "-A", "tasks", *worker_args]
        )
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                yield name, queues[0]
            finally:
                stop(proc)
        log_path.unlink(missing_ok=True)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Ask a child process to stop (SIGTERM), and kill it after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def _no_routes() -> Iterator[dict[str, str]]:
    """A worker on explicitly named queues only: the routes this process has, if any, are its own."""
    yield dict(_private)


def wait_for(condition: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = condition()
    assert value, f"condition not met within {timeout}s (last value: {value!r})"
    return value
