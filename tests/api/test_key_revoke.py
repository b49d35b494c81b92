"""Ingestion keys revoked over the API by admins: refused at once, audited, idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment, Event, IngestionKey
from adaptive.services.keys import create_key, find_active_key
from tests.factories import make_rows


def _key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client


def _revoke_url(deployment: Deployment, key: IngestionKey) -> str:
    return f"/api/v1/deployments/{deployment.slug}/keys/{key.pk}/revoke"


def _predict(client: APIClient, deployment: Deployment, event_id: str) -> Any:
    body = {"rows": [{"id": event_id, "features": make_rows(1)[0]}]}
    return client.post(f"/api/v1/deployments/{deployment.slug}/predict", body, format="json")


def test_a_revoked_key_gets_401_on_predict_and_feedback_at_once(
    admin_client: APIClient, deployment: Deployment
) -> None:
    key, raw = create_key(deployment=deployment, name="edge", actor=None)
    sender = _key_client(raw)
    assert _predict(sender, deployment, "before").status_code == 200

    response = admin_client.post(_revoke_url(deployment, key), {"reason": "leaked in a log"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == key.pk and response.json()["revoked_at"] is not None
    refused = _predict(sender, deployment, "after")
    assert refused.status_code == 401
    feedback = {"labels": [{"id": "before", "label": 1}]}
    assert sender.post(f"/api/v1/deployments/{deployment.slug}/feedback", feedback, format="json").status_code == 401
    assert not Event.objects.filter(deployment=deployment, external_id="after").exists()
    assert Event.objects.get(deployment=deployment, external_id="before").label is None
    entry = AuditEntry.objects.get(action=AuditEntry.Action.REVOKE_KEY, deployment=deployment)
    assert (entry.actor, entry.reason, entry.details["key"]) == (admin_client.user, "leaked in a log", "edge")

    listed = {row["id"]: row for row in admin_client.get(f"/api/v1/deployments/{deployment.slug}/keys").json()}
    assert listed[key.pk]["revoked_at"] == response.json()["revoked_at"]


def test_revoking_twice_answers_the_same_revocation(admin_client: APIClient, deployment: Deployment) -> None:
    key, _ = create_key(deployment=deployment, name="edge", actor=None)

    first = admin_client.post(_revoke_url(deployment, key), {"reason": "first"}, format="json")
    second = admin_client.post(_revoke_url(deployment, key))

    assert first.status_code == second.status_code == 200
    assert first.json()["revoked_at"] == second.json()["revoked_at"]
    assert AuditEntry.objects.filter(action=AuditEntry.Action.REVOKE_KEY).count() == 1


@pytest.mark.parametrize(("who", "status"), [("anon", 401), ("norole", 403), ("viewer", 403), ("operator", 403)])
def test_only_admins_revoke_keys(request: pytest.FixtureRequest, deployment: Deployment, who: str, status: int) -> None:
    key, raw = create_key(deployment=deployment, name="edge", actor=None)
    client = request.getfixturevalue(f"{who}_client")

    assert client.post(_revoke_url(deployment, key), {"reason": "mine"}, format="json").status_code == status
    assert find_active_key(raw) is not None
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.REVOKE_KEY).exists()


def test_a_key_may_not_revoke_itself_or_another(deployment: Deployment) -> None:
    key, raw = create_key(deployment=deployment, name="edge", actor=None)
    other, other_raw = create_key(deployment=deployment, name="other", actor=None)
    client = _key_client(raw)

    assert client.post(_revoke_url(deployment, other)).status_code == 403
    assert client.post(_revoke_url(deployment, key)).status_code == 403
    assert find_active_key(raw) is not None and find_active_key(other_raw) is not None


def test_a_key_of_another_deployment_is_404_through_this_one(
    admin_client: APIClient, deployment: Deployment, other_deployment: Deployment
) -> None:
    key, raw = create_key(deployment=other_deployment, name="elsewhere", actor=None)

    assert admin_client.post(_revoke_url(deployment, key)).status_code == 404
    missing = admin_client.post(f"/api/v1/deployments/{deployment.slug}/keys/999999/revoke")
    assert missing.status_code == 404
    assert find_active_key(raw) is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [({"reason": 123}, "reason"), ({"reason": "x" * 2001}, "reason"), ({"reason": "ok", "key": "x"}, "key")],
)
def test_bad_revoke_bodies_are_400_and_revoke_nothing(
    admin_client: APIClient, deployment: Deployment, body: dict[str, Any], field: str
) -> None:
    key, raw = create_key(deployment=deployment, name="edge", actor=None)

    response = admin_client.post(_revoke_url(deployment, key), body, format="json")

    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("invalid", field)
    assert find_active_key(raw) is not None
