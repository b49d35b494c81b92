"""PostgreSQL through psycopg 3, with a connection health check that costs no round trip when busy.

Django's ``CONN_HEALTH_CHECKS`` runs ``SELECT 1`` before the first query of every request that
reuses a connection: a round trip, and a tenth of a single-row predict. Here a connection passes
without it when psycopg holds it open, idle and healthy, it passed a check less than
``IDLE_CHECK_SECONDS`` ago, and the server has sent nothing since: a server that restarts or ends
the session (``pg_terminate_backend``, an idle timeout, a fail-over) sends an error and closes the
socket, which makes it readable. Anything else gets Django's ``SELECT 1``, and a connection idle for
longer always does: a peer that vanished without closing (a network cut) shows nothing on a socket.

``DATABASES`` names this backend (``ENGINE = "config.postgresql"``) for every PostgreSQL URL.
"""

from __future__ import annotations

import select
import time
from typing import Any

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from psycopg import pq

IDLE_CHECK_SECONDS = 10.0


def clock() -> float:
    return time.monotonic()


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checked_at: float | None = None

    def is_usable(self) -> bool:
        now = clock()
        if self.checked_at is not None and now - self.checked_at < IDLE_CHECK_SECONDS and self._quiet():
            self.checked_at = now
            return True
        usable = bool(super().is_usable())
        self.checked_at = now if usable else None
        return usable

    def _quiet(self) -> bool:
        """Open, idle, in a good state, and nothing unread from the server on its socket."""
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        info = connection.pgconn
        if info.status != pq.ConnStatus.OK or info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        self.checked_at = clock()
        return connection
