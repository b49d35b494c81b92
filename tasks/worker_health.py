"""What a worker knows about its own health, and the database connection checked before every task.

Two failures that a plain ``ping`` cannot see:

* A worker that answers pings but fails every task (its database connection was closed under it,
  a dependency broke). The worker's main process counts the outcome of each task it ran (the
  ``Request`` callbacks run there, for the prefork pool as for solo) and answers the ``loop_health``
  control command with the counts, the queues it consumes and the last error. ``adaptive.health``
  asks every worker and calls one that failed its last ``UNHEALTHY_AFTER`` tasks unhealthy.
* A reused database connection that the server dropped (a restart, ``pg_terminate_backend``, a
  network blip). Connections are reused across tasks (``CELERY_DB_REUSE_MAX`` in tasks.celery: a
  reconnect costs about 6 ms per task), and Celery's Django fixup checks them only every
  2 x ``CELERY_DB_REUSE_MAX`` tasks. Before every task, :func:`_check_connections` closes a
  connection that had an error or is past its age and re-arms Django's health check
  (``CONN_HEALTH_CHECKS``), so the next query reconnects instead of failing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Task
from celery.signals import task_prerun
from celery.worker.control import inspect_command
from celery.worker.request import Request
from django.db import connections


class _TaskOutcomes:
    """Counts of task outcomes in this worker process; thread-safe (the threads pool shares it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.consecutive_failures = 0
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error = ""

    def success(self) -> None:
        with self._lock:
            self.succeeded += 1
            self.consecutive_failures = 0
            self.last_success_at = time.time()

    def failure(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self.consecutive_failures += 1
            self.last_failure_at = time.time()
            self.last_error = error[:300]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "succeeded": self.succeeded,
                "failed": self.failed,
                "consecutive_failures": self.consecutive_failures,
                "last_success_at": self.last_success_at,
                "last_failure_at": self.last_failure_at,
                "last_error": self.last_error,
            }


OUTCOMES = _TaskOutcomes()


def _counting(on_success: Any) -> Any:
    def on_success_counted(self: Request, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        if not failed__retval__runtime[0]:
            OUTCOMES.success()
        # A failed run comes through here too, and on_success hands it to on_failure.
        return on_success(self, failed__retval__runtime, **kwargs)

    return on_success_counted


class TrackedRequest(Request):
    """A task request that records its outcome in :data:`OUTCOMES` (runs in the worker's main process).

    The worker does not use this class as it is: ``celery.worker.request.create_request_cls``
    subclasses it per task with an ``on_success`` of its own that never calls ``super()``, so the
    subclass's ``on_success`` is wrapped as it is created.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "on_success" in cls.__dict__:
            cls.on_success = _counting(cls.__dict__["on_success"])

    on_success = _counting(Request.on_success)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # unwrap celery's ExceptionWithTraceback
        OUTCOMES.failure(f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error")
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class TrackedTask(Task):  # celery's Task is untyped
    """The base class of every task of the app (``Celery(task_cls=...)``)."""

    Request = TrackedRequest


@inspect_command()
def loop_health(state: Any) -> dict[str, Any]:
    """``celery inspect loop_health``: the queues this worker consumes and its task outcomes."""
    consumer = state.consumer.task_consumer
    queues = sorted(q.name for q in consumer.queues) if consumer else []
    return {"queues": queues, **OUTCOMES.snapshot()}


@task_prerun.connect
def _check_connections(**_: Any) -> None:
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
