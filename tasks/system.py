"""Tasks that check the machinery itself: a round trip through broker, worker and result backend."""

from __future__ import annotations

from typing import Any

from django.db import connection

from tasks.celery import app


@app.task(name="tasks.system.ping")
def ping(payload: Any = None) -> dict[str, Any]:
    """Echo the payload and prove the worker reaches the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return {"pong": payload, "database": one == 1, "vendor": connection.vendor}
