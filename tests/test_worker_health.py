"""Workers that say how they are and heal: queues and task outcomes per worker, a worker that fails
every task reported unhealthy, and a worker whose database connection was killed reconnecting on
its next task. Real worker processes on the configured broker and database."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from adaptive import health
from tasks.celery import app
from tasks.system import ping
from tests.worker import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _worker(name: str, queues: list[str]) -> dict[str, Any]:
    state = health.check_workers(app, timeout=1.0, queues=queues)
    return {**state, "me": state["workers"].get(name)}


def _ping(queue: str, payload: Any, timeout: float = 30) -> dict[str, Any]:
    return ping.apply_async((payload,), queue=queue).get(timeout=timeout)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_worker_reports_its_queues_and_task_outcomes(pool: str) -> None:
    with celery_worker(pool=pool) as (name, queue):
        assert _ping(queue, 1, timeout=60)["pong"] == 1
        assert _ping(queue, 2)["pong"] == 2
        # Counted in the worker's main process, whatever pool ran the task.
        state = wait_for(lambda: (s := _worker(name, [queue]))["me"] and s["me"]["succeeded"] >= 2 and s)
        assert state["me"]["queues"] == [queue]
        assert state["me"]["failed"] == 0
        assert state["me"]["healthy"] is True
        assert state["queues"][queue] == {"consumers": [name]}
        assert name not in state["unhealthy"]


def test_a_worker_that_fails_every_task_is_unhealthy_and_its_queue_has_no_consumer() -> None:
    # A database the worker cannot reach: it answers control commands but every task fails.
    dead = (
        "sqlite:////nonexistent-dir/for-this-test/db.sqlite3"
        if connection.vendor == "sqlite"
        else "postgresql://root@127.0.0.1:1/unreachable"
    )
    with celery_worker(env={"DATABASE_URL": dead}) as (name, queue):
        for n in range(3):
            with pytest.raises(Exception):  # noqa: B017 - the worker's database error, re-raised here
                _ping(queue, n, timeout=60)
        state = wait_for(lambda: (s := _worker(name, [queue]))["me"] and s["me"]["failed"] >= 3 and s)
        assert state["me"]["healthy"] is False
        assert state["me"]["consecutive_failures"] >= 3
        assert "OperationalError" in state["me"]["last_error"]
        assert name in state["unhealthy"]
        assert state["queues_without_consumer"] == [queue]
        assert state["ok"] is False


def test_a_worker_reconnects_after_the_server_kills_its_connection() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's; SQLite connections are files")
    with celery_worker() as (name, queue):
        assert _ping(queue, "before", timeout=60)["database"] is True

        def kill_worker_connections() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                return int(cursor.fetchone()[0])

        assert kill_worker_connections() >= 1
        # Every later task succeeds: the dead connection is replaced before the task's first query.
        for n in range(5):
            assert _ping(queue, n)["pong"] == n
        assert kill_worker_connections() >= 1
        assert _ping(queue, "after")["database"] is True
        state = wait_for(lambda: (s := _worker(name, [queue]))["me"] and s["me"]["succeeded"] >= 7 and s)
        assert state["me"]["failed"] == 0
        assert state["me"]["healthy"] is True
