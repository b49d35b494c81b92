"""Health checks: database, broker and live Celery workers (their queues and whether their tasks
succeed), each with timing and error text."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.db import connection


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # report any failure: this is the health endpoint's whole job
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_broker(app: Any, timeout: float = 2.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            transport = conn.transport_cls
    except Exception as exc:  # any failure to connect means the broker is down for us
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "transport": str(transport), "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_workers(
    app: Any, timeout: float = 1.0, *, queues: Sequence[str] = (), unhealthy_after: int = 3
) -> dict[str, Any]:
    """Every worker's queues and task outcomes (the ``loop_health`` control command), and per queue
    in ``queues`` the workers consuming it.

    A worker whose last ``unhealthy_after`` tasks all failed is unhealthy: it answers pings but does
    no work (a closed database connection, a broken dependency). ``ok`` needs at least one worker,
    no unhealthy one and a healthy consumer on every queue in ``queues``.
    """
    try:
        replies = app.control.broadcast("loop_health", reply=True, timeout=timeout) or []
    except Exception as exc:  # no broker or no control channel: report, do not crash
        return {"ok": False, "count": 0, "names": [], "queues": {}, "error": f"{type(exc).__name__}: {exc}"}
    workers: dict[str, dict[str, Any]] = {}
    for reply in replies:
        for name, state in reply.items():
            if isinstance(state, dict) and "queues" in state:
                healthy = not (state.get("consecutive_failures", 0) >= unhealthy_after)
                workers[name] = {**state, "healthy": healthy}
    by_queue: dict[str, list[str]] = {queue: [] for queue in queues}
    for name, state in sorted(workers.items()):
        for queue in state["queues"]:
            if state["healthy"]:
                by_queue.setdefault(queue, []).append(name)
    unhealthy = sorted(name for name, state in workers.items() if not state["healthy"])
    missing = sorted(queue for queue in queues if not by_queue.get(queue))
    return {
        "ok": bool(workers) and not unhealthy and not missing,
        "count": len(workers),
        "names": sorted(workers),
        "unhealthy": unhealthy,
        "queues": {queue: {"consumers": names} for queue, names in sorted(by_queue.items())},
        "queues_without_consumer": missing,
        "workers": workers,
    }
