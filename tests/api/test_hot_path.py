"""The lean hot path: what a single-row predict reads, and how fast a change elsewhere reaches it.

Predict reads the deployment's small columns once per request and keeps what never changes
(adaptive.selectors.serving); credentials found valid are remembered for AUTH_CACHE_SECONDS
(adaptive.credential_cache). These tests pin both: no query a request does not need, and every
change (settings, a promotion, a revoked key, a deactivated user) reaching the next request, or
the documented seconds later when another process made it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from adaptive.models import ApiToken, Deployment, IngestionKey
from adaptive.services import tokens
from adaptive.services.keys import create_key
from adaptive.services.registry import upload_version
from tests.clock import Clock
from tests.factories import make_rows, model_artifacts

# Columns predict never needs: the version's training profile, metrics, importance and calibration.
HEAVY_COLUMNS = ('"profile"', '"metrics"', '"importance"', '"calibration"', '"description"')


def _key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client


def _predict(client: APIClient, slug: str, event_id: str, features: dict[str, Any] | None = None) -> Any:
    body = {"rows": [{"id": event_id, "features": features or make_rows(1)[0]}]}
    return client.post(f"/api/v1/deployments/{slug}/predict", body, format="json")


@pytest.mark.django_db(transaction=True)  # no test transaction around the request: as a web process runs
def test_a_single_row_predict_reads_the_deployment_once_and_writes_one_insert(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    assert _predict(ingest_client, deployment.slug, "warm").status_code == 200  # loads the model once

    with CaptureQueriesContext(connection) as queries:
        response = _predict(ingest_client, deployment.slug, "lean")

    assert response.status_code == 200, response.content
    statements = [q["sql"] for q in queries.captured_queries]
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    # An executemany is captured as "<n> times: INSERT ...".
    inserts = [sql for sql in statements if "INSERT INTO" in sql[:20]]
    # The deployment's small columns; on SQLite also the ids already stored (PostgreSQL's INSERT
    # reports them itself). No key, version, token or JSON blob is read again.
    assert len([sql for sql in reads if '"adaptive_deployment"' in sql]) == 1
    assert len(reads) == (1 if connection.vendor == "postgresql" else 2)
    assert len(inserts) == 1 and "adaptive_event" in inserts[0]
    others = [sql for sql in reads if '"adaptive_deployment"' not in sql]
    for table in ("adaptive_ingestionkey", "adaptive_modelversion", "adaptive_apitoken"):
        assert not any(table in sql for sql in others)
    assert not any(column in sql for sql in reads for column in HEAVY_COLUMNS)
    if connection.vendor == "postgresql":
        # One statement in autocommit: no BEGIN/COMMIT (or savepoint) round trips around it.
        assert len(statements) == 2


def test_feedback_reads_the_deployment_once_and_no_credential(ingest_client: APIClient, deployment: Deployment) -> None:
    for event_id in ("a", "b"):
        assert _predict(ingest_client, deployment.slug, event_id).status_code == 200
    url = f"/api/v1/deployments/{deployment.slug}/feedback"
    assert ingest_client.post(url, {"labels": [{"id": "a", "label": 1}]}, format="json").status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = ingest_client.post(url, {"labels": [{"id": "b", "label": 0}]}, format="json")

    assert response.status_code == 200 and response.json()["accepted"] == 1
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len([sql for sql in reads if 'FROM "adaptive_deployment"' in sql]) == 1
    assert not any(table in sql for sql in reads for table in ("adaptive_ingestionkey", "adaptive_apitoken"))


def test_settings_and_promotions_made_elsewhere_reach_the_next_request(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    first = _predict(ingest_client, deployment.slug, "v1").json()["predictions"][0]
    assert first["version"] == 1

    # Another process promotes a second version (a row update, nothing this process was told).
    weights, spec = model_artifacts(seed=7)
    second, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    Deployment.objects.filter(pk=deployment.pk).update(live_version=second)
    promoted = _predict(ingest_client, deployment.slug, "v2").json()["predictions"][0]
    assert promoted["version"] == second.number
    assert promoted["base_score"] != first["base_score"]

    # ... and switches compensation off and bumps the memory revision.
    Deployment.objects.filter(pk=deployment.pk).update(compensation_enabled=False, memory_revision=0)
    off = _predict(ingest_client, deployment.slug, "off").json()["predictions"][0]
    assert off["score"] == off["base_score"]


# --- credentials remembered for AUTH_CACHE_SECONDS ---------------------------------------------------


def test_a_key_revoked_by_another_process_stops_working_within_auth_cache_seconds(
    deployment: Deployment, credential_clock: Clock, settings: Any
) -> None:
    key, raw = create_key(deployment=deployment, name="edge", actor=None)
    client = _key_client(raw)
    assert _predict(client, deployment.slug, "before").status_code == 200

    # Another process revokes it: a row update this process hears nothing about.
    IngestionKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    credential_clock.now += settings.AUTH_CACHE_SECONDS - 1
    assert _predict(client, deployment.slug, "within").status_code == 200
    credential_clock.now += 1

    assert _predict(client, deployment.slug, "after").status_code == 401


def test_without_the_cache_a_revocation_elsewhere_holds_at_once(deployment: Deployment, settings: Any) -> None:
    settings.AUTH_CACHE_SECONDS = 0
    key, raw = create_key(deployment=deployment, name="edge", actor=None)
    client = _key_client(raw)
    assert _predict(client, deployment.slug, "before").status_code == 200

    IngestionKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    assert _predict(client, deployment.slug, "after").status_code == 401


def test_a_token_revoked_elsewhere_stops_within_auth_cache_seconds_and_one_revoked_here_at_once(
    operator_client: APIClient, credential_clock: Clock, settings: Any
) -> None:
    user = operator_client.user
    elsewhere, raw_elsewhere = tokens.create_token(user=user, name="elsewhere", actor=user)
    here, raw_here = tokens.create_token(user=user, name="here", actor=user)
    clients = {}
    for name, raw in (("elsewhere", raw_elsewhere), ("here", raw_here)):
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        assert clients[name].get("/api/v1/deployments").status_code == 200

    ApiToken.objects.filter(pk=elsewhere.pk).update(revoked_at=timezone.now())
    tokens.revoke_token(token=here, actor=user)

    assert clients["here"].get("/api/v1/deployments").status_code == 401
    assert clients["elsewhere"].get("/api/v1/deployments").status_code == 200
    credential_clock.now += settings.AUTH_CACHE_SECONDS
    assert clients["elsewhere"].get("/api/v1/deployments").status_code == 401


def test_a_user_deactivated_or_demoted_here_loses_access_at_once(operator_client: APIClient) -> None:
    assert operator_client.get("/api/v1/deployments").status_code == 200
    user = operator_client.user
    user.groups.clear()  # demoted: no role left
    assert operator_client.get("/api/v1/deployments").status_code == 403

    user.is_active = False
    user.save(update_fields=["is_active"])
    assert operator_client.get("/api/v1/deployments").status_code == 401


def test_an_expiry_is_checked_on_every_request_even_for_a_remembered_token(
    viewer_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = viewer_client.user
    _, raw = tokens.create_token(user=user, name="hour", actor=user, expires_at=timezone.now() + timedelta(hours=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.get("/api/v1/deployments").status_code == 200

    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)

    response = client.get("/api/v1/deployments")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
