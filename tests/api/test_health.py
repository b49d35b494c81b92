"""Health answers without authentication and says which part is down."""

from __future__ import annotations

import pytest
from celery import Celery

from api.views import health as health_view


@pytest.mark.django_db
def test_health_is_public_and_tells_anonymous_callers_the_status_only(anon_client):
    response = anon_client.get("/api/v1/health")
    assert response.status_code == 200
    # No worker runs in this test: the service is degraded, not down. Host names, queues and error
    # text are for viewers.
    assert response.json() == {"status": "degraded"}


def test_health_reports_database_broker_and_workers_to_viewers(viewer_client):
    response = viewer_client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["status"] == "degraded"
    assert body["workers"]["count"] == 0


def _dead_broker(monkeypatch):
    # A real Celery app pointed at a closed port: the connection genuinely fails. Celery prefers
    # the CELERY_BROKER_URL environment variable over the constructor's broker, so drop it here.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setattr(health_view, "celery_app", Celery("dead", broker="redis://127.0.0.1:1/0"))


@pytest.mark.django_db
def test_health_is_503_without_exception_text_for_anonymous_callers(anon_client, monkeypatch):
    _dead_broker(monkeypatch)
    response = anon_client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json() == {"status": "down"}
    assert "127.0.0.1" not in response.content.decode() and "Error" not in response.content.decode()


def test_health_is_503_and_says_which_part_is_down_to_viewers(viewer_client, monkeypatch):
    _dead_broker(monkeypatch)
    response = viewer_client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["broker"]["ok"] is False
    assert "error" in body["broker"]
