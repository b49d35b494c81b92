"""The PostgreSQL backend's health check (config.postgresql): no round trip on a busy connection,
and a connection the server ended is replaced before a request uses it."""

from __future__ import annotations

import copy
import io
import select
import time
from typing import Any

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper

from tests.api.conftest import CommittedDeployment
from tests.factories import make_rows

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend's own check")


def _wrapper(alias: str) -> Any:
    """A connection of its own to the test database, as a web process holds one."""
    wrapper = type(connections["default"])(copy.deepcopy(connections["default"].settings_dict), alias=alias)
    wrapper.ensure_connection()
    return wrapper


def _end_backend(pid: int) -> None:
    """What a server restart or an idle timeout does to one connection."""
    admin = _wrapper("admin")
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        admin.close()


def _wait_readable(wrapper: Any, timeout: float = 5.0) -> None:
    poller = select.poll()
    poller.register(wrapper.connection.fileno(), select.POLLIN)
    assert poller.poll(int(timeout * 1000)), "the server never closed the connection"


def test_a_busy_connection_passes_without_a_round_trip_and_an_idle_one_with_it(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.postgresql import base

    wrapper = _wrapper("busy")
    round_trips: list[int] = []
    select_one = PostgreSQLDatabaseWrapper.is_usable

    def counted(self: Any) -> bool:
        round_trips.append(1)
        return bool(select_one(self))

    monkeypatch.setattr(PostgreSQLDatabaseWrapper, "is_usable", counted)
    try:
        assert wrapper.is_usable() and round_trips == []
        later = time.monotonic() + base.IDLE_CHECK_SECONDS
        monkeypatch.setattr(base, "clock", lambda: later)
        assert wrapper.is_usable() and round_trips == [1]
    finally:
        wrapper.close()


def test_a_connection_the_server_ended_fails_the_check_and_is_replaced(db: None) -> None:
    wrapper = _wrapper("ended")
    try:
        _end_backend(wrapper.connection.info.backend_pid)
        _wait_readable(wrapper)

        assert not wrapper.is_usable()
        wrapper.health_check_done = False
        wrapper.close_if_health_check_failed()
        assert wrapper.connection is None
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        wrapper.close()


def test_a_predict_after_the_server_ended_the_web_process_connection_is_answered(
    committed_deployment: CommittedDeployment,
) -> None:
    """Through Django's request cycle, on one persistent connection, as gunicorn runs it."""
    handler = WSGIHandler()
    slug = committed_deployment.deployment.slug

    def predict(event_id: str) -> str:
        body = orjson.dumps({"rows": [{"id": event_id, "features": make_rows(1)[0]}]})
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"/api/v1/deployments/{slug}/predict",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "HTTP_HOST": "testserver",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Key {committed_deployment.key}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return lambda data: None

        response = handler(environ, start_response)
        b"".join(response)
        response.close()  # request_finished: the connection is kept (CONN_MAX_AGE)
        return statuses[0]

    assert predict("before") == "200 OK"
    assert connection.connection is not None
    _end_backend(connection.connection.info.backend_pid)
    _wait_readable(connection)

    assert predict("after") == "200 OK"
