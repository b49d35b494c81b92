"""Health answers without authentication and says which part is down."""

from __future__ import annotations

import pytest
from celery import Celery

from api.views import health as health_view


@pytest.mark.django_db
def test_health_is_public_and_reports_database_and_broker(anon_client):
    response = anon_client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    # No worker runs in this test: the service is degraded, not down.
    assert body["status"] == "degraded"
    assert body["workers"]["count"] == 0


@pytest.mark.django_db
def test_health_is_503_when_the_broker_is_unreachable(anon_client, monkeypatch):
    # A real Celery app pointed at a closed port: the connection genuinely fails. Celery prefers
    # the CELERY_BROKER_URL environment variable over the constructor's broker, so drop it here.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    monkeypatch.setattr(health_view, "celery_app", dead)
    response = anon_client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["broker"]["ok"] is False
    assert "error" in body["broker"]
