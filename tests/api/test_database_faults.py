"""A database restart in the middle of a batch: the client gets a retryable 503, nothing half-written.

A PostgreSQL restart terminates every server connection; ``pg_terminate_backend`` does the same to
one connection, at a chosen moment, without disturbing anything else. The batch is held in the
middle of its write by a row lock another connection holds, then its connection is killed. The
retry (what a client does on 503 + Retry-After) goes through on a fresh connection.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection

from adaptive.models import Event
from tests.api.conftest import CommittedDeployment
from tests.factories import make_rows

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a PostgreSQL server to lose")


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def _kill_the_blocked_backend(admin: psycopg.Connection[Any], timeout: float = 20.0) -> int:
    """Terminate the backend that waits on a lock in this database (the request's connection)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row:
            admin.execute("SELECT pg_terminate_backend(%s)", [row[0]])
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("the request never blocked on the held lock")


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("response", call()))
    thread.start()
    return thread, out


def test_predict_batch_cut_off_mid_write_answers_503_and_stores_nothing(
    live_server: Any, committed_deployment: CommittedDeployment
) -> None:
    dep = committed_deployment.deployment
    rows = [{"id": f"ev-{i:03d}", "features": f} for i, f in enumerate(make_rows(40))]
    url = f"{live_server.url}/api/v1/deployments/{dep.slug}/predict"
    with psycopg.connect(_dsn(), autocommit=False) as holder, psycopg.connect(_dsn(), autocommit=True) as admin:
        # An uncommitted event with one of the batch's ids: the batch's INSERT waits on it.
        holder.execute(
            f"INSERT INTO {Event._meta.db_table} (deployment_id, external_id, event_time, received_at, features, "
            "version_id, base_score, score) VALUES (%s, 'ev-020', now(), now(), '{}', %s, 0.5, 0.5)",
            [dep.pk, dep.live_version_id],
        )
        thread, out = _in_thread(
            lambda: httpx.post(url, json={"rows": rows}, headers=committed_deployment.headers, timeout=60)
        )
        _kill_the_blocked_backend(admin)
        thread.join(60)
        holder.rollback()

    response = out["response"]
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "unavailable"
    assert not Event.objects.filter(deployment=dep).exists()

    retried = httpx.post(url, json={"rows": rows}, headers=committed_deployment.headers, timeout=60)
    assert retried.status_code == 200, retried.text
    assert Event.objects.filter(deployment=dep).count() == 40


def test_feedback_batch_cut_off_mid_write_answers_503_and_labels_nothing(
    live_server: Any, committed_deployment: CommittedDeployment
) -> None:
    dep = committed_deployment.deployment
    headers = committed_deployment.headers
    rows = [{"id": f"ev-{i:03d}", "features": f} for i, f in enumerate(make_rows(40))]
    base = f"{live_server.url}/api/v1/deployments/{dep.slug}"
    assert httpx.post(f"{base}/predict", json={"rows": rows}, headers=headers, timeout=60).status_code == 200
    labels = [{"id": r["id"], "label": 1} for r in rows]
    with psycopg.connect(_dsn(), autocommit=False) as holder, psycopg.connect(_dsn(), autocommit=True) as admin:
        # Lock one event row the batch updates (ids are written in order, so some rows are done).
        holder.execute(
            f"SELECT 1 FROM {Event._meta.db_table} WHERE deployment_id = %s AND external_id = 'ev-030' FOR UPDATE",
            [dep.pk],
        )
        thread, out = _in_thread(
            lambda: httpx.post(f"{base}/feedback", json={"labels": labels}, headers=headers, timeout=60)
        )
        _kill_the_blocked_backend(admin)
        thread.join(60)
        holder.rollback()

    assert out["response"].status_code == 503, out["response"].text
    assert not Event.objects.filter(deployment=dep, label__isnull=False).exists()

    retried = httpx.post(f"{base}/feedback", json={"labels": labels}, headers=headers, timeout=60)
    assert retried.status_code == 200 and retried.json()["accepted"] == 40
    assert Event.objects.filter(deployment=dep, label=1).count() == 40
