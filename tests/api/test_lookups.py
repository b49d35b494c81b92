"""One deployment lookup (adaptive.selectors.deployments.get_deployment) behind every entry point.

Whatever the endpoint, an unknown slug is the same JSON 404 naming it (the dashboard's pages answer
Django's HTML 404 from the same lookup: tests/test_dashboard.py); an ingestion key still reaches
only its own deployment.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from adaptive.models import Deployment

READS = [
    "",
    "/versions",
    "/keys",
    "/curve",
    "/windows",
    "/windows/1",
    "/drift",
    "/detectors",
    "/detectors/signals",
    "/memory",
    "/samples",
    "/releases",
    "/live",
    "/flip-reports",
    "/flip-reports/1",
]
ACTIONS = ["/promote", "/rollback", "/pause", "/resume", "/reset-memory", "/retrain", "/compare"]


@pytest.mark.parametrize("path", READS)
def test_every_read_of_an_unknown_deployment_is_the_same_404(admin_client: APIClient, db: None, path: str) -> None:
    r = admin_client.get(f"/api/v1/deployments/nope{path}")

    assert r.status_code == 404, r.content
    body = r.json()
    assert (body["error"], body["detail"]) == ("not_found", "no deployment 'nope'")


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_on_an_unknown_deployment_is_the_same_404(operator_client: APIClient, db: None, path: str) -> None:
    r = operator_client.post(f"/api/v1/deployments/nope{path}", {"reason": "x"}, format="json")

    assert r.status_code == 404, r.content
    assert (r.json()["error"], r.json()["detail"]) == ("not_found", "no deployment 'nope'")


def test_an_ingestion_key_of_another_deployment_is_refused_after_the_lookup(
    ingest_client: APIClient, other_deployment: Deployment
) -> None:
    unknown = ingest_client.post("/api/v1/deployments/nope/feedback", {"labels": []}, format="json")
    other = ingest_client.post(
        f"/api/v1/deployments/{other_deployment.slug}/feedback", {"labels": [{"id": "a", "label": 1}]}, format="json"
    )

    assert unknown.status_code == 404
    assert other.status_code == 403, other.content
