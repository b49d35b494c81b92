"""Every error on an /api/ path answers JSON with a request id, and never database or exception text.

The dashboard keeps Django's HTML pages; the request id in the answer (body and X-Request-ID
header) is the one the log line carries, so an operator finds the traceback a client reports.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import DataError
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment, Event
from adaptive.services import releases, summary
from tests.factories import make_rows


def _is_json_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["request_id"] == response["X-Request-ID"]
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/deployments/no-such/thing",  # no route at all
        "/api/v1/deployments/not a slug!",  # a path the slug converter refuses
        "/api/v2/deployments",
        "/api/",
    ],
)
def test_an_unmatched_api_path_is_a_json_404(viewer_client: APIClient, path: str) -> None:
    body = _is_json_error(viewer_client.get(path), 404, "not_found")
    assert "no API endpoint" in body["detail"]


def test_an_unmatched_dashboard_path_keeps_the_html_404(viewer_client: APIClient) -> None:
    r = viewer_client.get("/no-such-page/")

    assert r.status_code == 404
    assert r["Content-Type"].startswith("text/html")


def test_a_method_the_endpoint_lacks_is_a_json_405(admin_client: APIClient, deployment: Deployment) -> None:
    r = admin_client.delete(f"/api/v1/deployments/{deployment.slug}")

    _is_json_error(r, 405, "method_not_allowed")
    assert "GET" in r["Allow"]
    assert Deployment.objects.filter(pk=deployment.pk).exists()


def test_an_oversize_predict_body_is_a_json_413_and_stores_nothing(
    ingest_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    rows = [{"id": f"ev-{i}", "features": f} for i, f in enumerate(make_rows(200))]

    r = ingest_client.post(f"/api/v1/deployments/{deployment.slug}/predict", {"rows": rows}, format="json")

    body = _is_json_error(r, 413, "too_large")
    assert "4096" in body["detail"]
    assert not Event.objects.exists()


def test_an_oversize_body_without_a_declared_length_is_a_json_413(
    ingest_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    # Django itself refuses it when the view reads request.body (RequestDataTooBig): still JSON.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = b'{"rows": [' + b" " * 8000 + b"]}"

    r = ingest_client.generic(
        "POST",
        f"/api/v1/deployments/{deployment.slug}/predict",
        body,
        content_type="application/json",
        CONTENT_LENGTH="",
    )

    assert r.status_code in (400, 413), r.content  # an empty length reads as 0: nothing to read
    assert r["Content-Type"].startswith("application/json")
    assert not Event.objects.exists()


def test_an_oversize_action_body_is_refused_before_it_is_read(
    operator_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    # DRF's JSON parser reads the stream itself, past Django's limit: the middleware checks the length.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096

    r = operator_client.post(f"/api/v1/deployments/{deployment.slug}/pause", {"reason": "x" * 10_000}, format="json")

    _is_json_error(r, 413, "too_large")
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.ACTIVE
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.PAUSE).exists()


def test_a_server_error_is_json_with_a_request_id_and_no_exception_text(
    viewer_client: APIClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("secret: SELECT * FROM auth_user")

    monkeypatch.setattr(summary, "overview", broken)

    with caplog.at_level(logging.ERROR, logger="api.middleware_errors"):
        r = viewer_client.get("/api/v1/overview")

    body = _is_json_error(r, 500, "server_error")
    assert "secret" not in r.content.decode() and "auth_user" not in r.content.decode()
    assert body["request_id"] in body["detail"]
    (record,) = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert record.exc_info is not None and "auth_user" in str(record.exc_info[1])


def test_a_database_refusal_is_a_400_without_sql_and_logged_under_the_request_id(
    operator_client: APIClient,
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise DataError('value too long for type character varying(16)\nLINE 1: UPDATE "adaptive_deployment" SET')

    monkeypatch.setattr(releases, "set_paused", refuse)

    with caplog.at_level(logging.WARNING, logger="api.errors"):
        r = operator_client.post(f"/api/v1/deployments/{deployment.slug}/pause", {"reason": "x"}, format="json")

    body = _is_json_error(r, 400, "invalid")
    text = r.content.decode()
    assert "adaptive_deployment" not in text and "UPDATE" not in text and "varying" not in text
    assert body["request_id"] in body["detail"]
    assert any(
        body["request_id"] in rec.getMessage() and "adaptive_deployment" in rec.getMessage() for rec in caplog.records
    )


def test_a_sane_client_request_id_is_echoed(viewer_client: APIClient) -> None:
    r = viewer_client.get("/api/v1/deployments/nope/windows", HTTP_X_REQUEST_ID="trace-4bf92f3577b34da6")

    assert r["X-Request-ID"] == "trace-4bf92f3577b34da6"
    assert r.json()["request_id"] == "trace-4bf92f3577b34da6"


@pytest.mark.parametrize("sent", ["x" * 200, "<script>alert(1)</script>", "a b", ""])
def test_an_odd_client_request_id_is_replaced(viewer_client: APIClient, sent: str) -> None:
    r = viewer_client.get("/api/v1/deployments", HTTP_X_REQUEST_ID=sent)

    assert r.status_code == 200
    assert r["X-Request-ID"] != sent
    assert len(r["X-Request-ID"]) == 32  # a fresh uuid4, hex


def test_every_answer_has_a_request_id_also_the_dashboards(viewer_client: APIClient) -> None:
    assert viewer_client.get("/api/v1/deployments")["X-Request-ID"]
    assert APIClient().get("/")["X-Request-ID"]  # a redirect to the log-in page
