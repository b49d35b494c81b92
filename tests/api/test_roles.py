"""Who may call what: roles for users (viewer < operator < admin) and ingestion keys scoped to one deployment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive.models import Deployment, Event, IngestionKey, ModelVersion
from adaptive.services import ingest
from adaptive.services.keys import create_key, revoke_key
from tests.factories import SCHEMA, make_rows, model_artifacts, upload_payload


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {slug} is the deployment's slug
    body: Callable[[], Any] | None = None
    format: str = "json"

    def send(self, client: APIClient, deployment: Deployment) -> Any:
        url = "/api/v1/" + self.path.format(slug=deployment.slug)
        if self.method == "GET":
            return client.get(url)
        assert self.body is not None
        return client.post(url, self.body(), format=self.format)


def _upload_body() -> dict[str, Any]:
    weights, spec = model_artifacts(seed=11)
    return upload_payload(weights, spec)


CALLS = {
    "list deployments": Call("GET", "deployments"),
    "deployment detail": Call("GET", "deployments/{slug}"),
    "list versions": Call("GET", "deployments/{slug}/versions"),
    "version detail": Call("GET", "deployments/{slug}/versions/1"),
    "list keys": Call("GET", "deployments/{slug}/keys"),
    "create deployment": Call(
        "POST", "deployments", lambda: {"slug": "new-dep", "name": "New", "task": "binary", "feature_schema": SCHEMA}
    ),
    "upload version": Call("POST", "deployments/{slug}/versions", _upload_body, format="multipart"),
    "predict": Call(
        "POST", "deployments/{slug}/predict", lambda: {"rows": [{"id": "fresh", "features": make_rows(1)[0]}]}
    ),
    "feedback": Call("POST", "deployments/{slug}/feedback", lambda: {"labels": [{"id": "seen", "label": 1}]}),
    "create key": Call("POST", "deployments/{slug}/keys", lambda: {"name": "edge"}),
}

OK = {"create deployment": 201, "upload version": 201, "create key": 201}
READS = {name for name, call in CALLS.items() if call.method == "GET"}


def _expected(role: str, call: str) -> int:
    success = OK.get(call, 200)
    if role == "anon":
        return 401
    if role == "norole":
        return 403
    if role == "viewer":
        return success if call in READS else 403
    if role == "operator":
        return 403 if call in ("create deployment", "create key") else success
    assert role == "admin"
    return success


TABLE = [
    (role, call, _expected(role, call)) for role in ("anon", "norole", "viewer", "operator", "admin") for call in CALLS
]


def _state() -> tuple[int, ...]:
    return (
        Deployment.objects.count(),
        ModelVersion.objects.count(),
        Event.objects.count(),
        Event.objects.labeled().count(),
        IngestionKey.objects.count(),
    )


@pytest.mark.parametrize(("role", "call", "status"), TABLE, ids=[f"{r}-{c.replace(' ', '_')}-{s}" for r, c, s in TABLE])
def test_role_table(request: pytest.FixtureRequest, deployment: Deployment, role: str, call: str, status: int) -> None:
    client: APIClient = request.getfixturevalue(f"{role}_client")
    ingest.predict(deployment=deployment, payload={"rows": [{"id": "seen", "features": make_rows(1)[0]}]})
    before = _state()

    r = CALLS[call].send(client, deployment)

    assert r.status_code == status, r.content
    if status >= 400:
        # A refused call changes nothing.
        assert _state() == before
        assert r.json()["error"] in ("not_authenticated", "permission_denied")
    elif CALLS[call].method == "POST":
        assert _state() != before


def test_anonymous_requests_are_told_how_to_authenticate(anon_client: APIClient, deployment: Deployment) -> None:
    r = anon_client.get("/api/v1/deployments")

    assert r.status_code == 401
    assert r["WWW-Authenticate"]


def test_a_bad_user_token_is_401(db: None) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    assert client.get("/api/v1/deployments").status_code == 401


# --- ingestion keys -------------------------------------------------------------------------------


def _predict(client: APIClient, deployment: Deployment, ids: list[str]) -> Any:
    rows = [{"id": i, "features": f} for i, f in zip(ids, make_rows(len(ids)), strict=True)]
    return client.post(f"/api/v1/deployments/{deployment.slug}/predict", {"rows": rows}, format="json")


def _feedback(client: APIClient, deployment: Deployment, ids: list[str]) -> Any:
    labels = [{"id": i, "label": 1} for i in ids]
    return client.post(f"/api/v1/deployments/{deployment.slug}/feedback", {"labels": labels}, format="json")


def test_a_key_predicts_and_labels_on_its_own_deployment(ingest_client: APIClient, deployment: Deployment) -> None:
    predicted = _predict(ingest_client, deployment, ["a", "b"])
    labeled = _feedback(ingest_client, deployment, ["a"])

    assert predicted.status_code == 200, predicted.content
    assert labeled.status_code == 200, labeled.content
    assert labeled.json()["accepted"] == 1
    assert dict(Event.objects.filter(deployment=deployment).values_list("external_id", "label")) == {"a": 1, "b": None}


def test_a_key_is_refused_on_another_deployment(
    ingest_client: APIClient, deployment: Deployment, other_deployment: Deployment
) -> None:
    ingest.predict(deployment=other_deployment, payload={"rows": [{"id": "theirs", "features": make_rows(1)[0]}]})

    predicted = _predict(ingest_client, other_deployment, ["mine"])
    labeled = _feedback(ingest_client, other_deployment, ["theirs"])

    assert predicted.status_code == 403
    assert labeled.status_code == 403
    assert list(Event.objects.values_list("external_id", "label")) == [("theirs", None)]


@pytest.mark.parametrize("call", [name for name in CALLS if name not in ("predict", "feedback")])
def test_a_key_may_do_nothing_but_predict_and_feedback(
    ingest_client: APIClient, deployment: Deployment, call: str
) -> None:
    before = _state()

    r = CALLS[call].send(ingest_client, deployment)

    assert r.status_code == 403, r.content
    assert _state() == before


def test_a_revoked_key_is_401(deployment: Deployment) -> None:
    key, raw = create_key(deployment=deployment, name="old", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    assert _predict(client, deployment, ["before"]).status_code == 200

    revoke_key(key=key, actor=None, reason="leaked")
    r = _predict(client, deployment, ["after"])

    assert r.status_code == 401
    assert list(Event.objects.values_list("external_id", flat=True)) == ["before"]


@pytest.mark.parametrize(
    "header",
    [
        "Key ik_0123456789_not-the-secret",
        "Key garbage",
        "Key",
        "Key two parts",
        "Key {prefix_with_wrong_secret}",
    ],
)
def test_a_bad_key_is_401(deployment: Deployment, header: str) -> None:
    _, raw = create_key(deployment=deployment, name="real", actor=None)
    prefix = raw.split("_")[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(prefix_with_wrong_secret=f"ik_{prefix}_wrong-secret"))

    r = _predict(client, deployment, ["a"])

    assert r.status_code == 401
    assert not Event.objects.exists()


def test_health_needs_no_authentication(anon_client: APIClient, db: None) -> None:
    r = anon_client.get("/api/v1/health")

    # 503 only says the broker is down in this environment; what matters is that nobody asked who we are.
    assert r.status_code in (200, 503), r.content
    body = r.json()
    assert set(body) == {"status"}  # the parts are for viewers (tests/api/test_health.py)
    assert body["status"] in ("ok", "degraded", "down")


def test_health_ignores_a_bad_key(db: None) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Key garbage")

    r = client.get("/api/v1/health")

    assert r.status_code in (200, 503), r.content
    assert r.json()["status"] in ("ok", "degraded", "down")
