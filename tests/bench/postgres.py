"""The PostgreSQL server the benchmark smoke tests make their throw-away databases on.

It is the server of ``TEST_DATABASE_URL`` (bin/test's), by default the local one. Each smoke test
passes ``f"{SERVER}/{name}"`` with a fresh name to its script and checks the script dropped it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest


def database_url(name: str) -> str:
    """``name`` on the test database's server."""
    server = urlsplit(os.environ.get("TEST_DATABASE_URL") or "postgresql://root@127.0.0.1:5432/test")
    return urlunsplit(server._replace(path=f"/{name}", query=""))


SERVER = database_url("").rstrip("/")


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(database_url("postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def database_exists(name: str) -> bool:
    with psycopg.connect(database_url("postgres")) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


needs_postgres = pytest.mark.skipif(not postgres_reachable(), reason=f"PostgreSQL is not reachable at {SERVER}")
