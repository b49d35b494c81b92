"""Health checks: database, broker and live Celery workers, each with timing and error text."""

from __future__ import annotations

import time
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


def check_workers(app: Any, timeout: float = 1.0) -> dict[str, Any]:
    try:
        replies = app.control.inspect(timeout=timeout).ping() or {}
    except Exception as exc:  # no broker or no control channel: report, do not crash
        return {"ok": False, "count": 0, "names": [], "error": f"{type(exc).__name__}: {exc}"}
    names = sorted(replies)
    return {"ok": bool(names), "count": len(names), "names": names}
