"""The compensation gate end to end: predict stores the full correction, feedback teaches the gate,
serving blends with the learned strength, and the API reports it.

Deployments here keep the default (the gate on), unlike tests.factories' deployments, which serve
the full correction so that tests of the memory see it after a handful of labels.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.ml.gate import DEFAULT_MIN_SUPPORT
from adaptive.models import Deployment, Event, GateState
from adaptive.services import memory
from adaptive.services.keys import create_key
from adaptive.services.registry import upload_version
from tests.api.conftest import CLASSES_3
from tests.factories import DeploymentFactory, make_rows, model_artifacts

pytestmark = pytest.mark.django_db

BATCH = 100


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    runtime.clear_cache()
    yield
    runtime.clear_cache()


def _gated(**fields: Any) -> tuple[Deployment, APIClient]:
    dep = DeploymentFactory.create(compensation_gate=True, **fields)
    weights, spec = model_artifacts(n_outputs=3 if fields.get("task") == "multiclass" else 1)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    _, raw = create_key(deployment=dep, name="gate", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    dep.refresh_from_db()
    return dep, client


def _round(client: APIClient, dep: Deployment, prefix: str, label: Any, seed: int) -> list[dict[str, Any]]:
    """Predict a batch of fresh rows, send their labels and move them into the memory and the gate."""
    rows = make_rows(BATCH, seed=seed)
    body = {"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    r = client.post(f"/api/v1/deployments/{dep.slug}/predict", body, format="json")
    assert r.status_code == 200, r.content
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    labels = [{"id": p["id"], "label": label(i)} for i, p in enumerate(predictions)]
    r = client.post(f"/api/v1/deployments/{dep.slug}/feedback", {"labels": labels}, format="json")
    assert r.status_code == 200, r.content
    memory.apply_pending(dep.pk)
    return predictions


def test_the_api_creates_deployments_with_the_gate_on(admin_client: APIClient) -> None:
    body = {"slug": "gated", "name": "Gated", "task": "binary", "feature_schema": [{"name": "x", "type": "numeric"}]}
    r = admin_client.post("/api/v1/deployments", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["compensation_gate"] is True
    assert r.json()["compensation_strength"] == 0.0


def test_a_helpful_correction_is_served_once_the_labels_show_it_helps() -> None:
    dep, client = _gated()
    always_one = lambda i: 1  # noqa: E731 - the memory learns "the label is 1", which is right every time
    first = _round(client, dep, "r0", always_one, seed=0)
    # Nothing is corrected yet: an empty memory computes no correction, and nothing full is stored.
    assert all(p["score"] == p["base_score"] for p in first)
    assert Event.objects.filter(deployment=dep, full_score__isnull=False).count() == 0

    second = _round(client, dep, "r1", always_one, seed=1)
    dep.refresh_from_db()
    # The memory now proposes a correction, stored with every event, but the gate is still shut:
    # the served score is the base score.
    stored = {e.external_id: e for e in Event.objects.filter(deployment=dep, external_id__startswith="r1-")}
    assert all(stored[p["id"]].full_score > p["base_score"] for p in second)
    assert all(p["score"] == p["base_score"] for p in second)
    assert dep.compensation_strength == 0.0

    rounds = 2
    while dep.compensation_strength == 0.0:
        _round(client, dep, f"r{rounds}", always_one, seed=rounds)
        dep.refresh_from_db()
        rounds += 1
        assert rounds < 12, "the gate never opened on a correction that is right every time"
    # Not before the minimum support: every label of the first round came with no correction.
    assert (rounds - 1) * BATCH >= DEFAULT_MIN_SUPPORT
    strength = dep.compensation_strength
    served = _round(client, dep, "after", always_one, seed=99)
    stored = {e.external_id: e for e in Event.objects.filter(deployment=dep, external_id__startswith="after-")}
    for p in served:
        full = stored[p["id"]].full_score
        assert p["score"] == pytest.approx(p["base_score"] + strength * (full - p["base_score"]), abs=1e-9)
        assert p["score"] > p["base_score"]


def test_the_memory_api_reports_the_gate(admin_client: APIClient) -> None:
    dep, client = _gated()
    for n in range(6):
        _round(client, dep, f"r{n}", lambda i: 1, seed=n)
    dep.refresh_from_db()
    r = admin_client.get(f"/api/v1/deployments/{dep.slug}/memory")
    assert r.status_code == 200, r.content
    gate = r.json()["gate"]
    assert gate["enabled"] is True
    assert gate["strength"] == dep.compensation_strength == gate["served_strength"] > 0
    assert gate["labels_seen"] == 5 * BATCH  # the first round had no correction to learn from
    assert gate["loss_change"] < 0 and gate["loss_change_bound"] < 0
    assert gate["support"] == pytest.approx(5 * BATCH, rel=0.01)
    r = admin_client.get(f"/api/v1/deployments/{dep.slug}")
    assert r.json()["compensation_strength"] == dep.compensation_strength


def test_a_correction_that_does_not_help_stays_off() -> None:
    # Labels that are coin flips: whatever the neighbours say is noise, and serving it would cost.
    dep, client = _gated()
    coins = random.Random(5)
    for n in range(15):
        served = _round(client, dep, f"r{n}", lambda i: coins.randint(0, 1), seed=n)
        assert all(p["score"] == p["base_score"] for p in served)
    dep.refresh_from_db()
    assert dep.compensation_strength == 0.0
    state = GateState.objects.get(deployment=dep).state
    assert state["labels_seen"] == 14 * BATCH


def test_turning_the_gate_off_serves_the_full_correction(admin_client: APIClient) -> None:
    dep, client = _gated()
    for n in range(2):
        _round(client, dep, f"r{n}", lambda i: 1, seed=n)
    r = admin_client.patch(f"/api/v1/deployments/{dep.slug}", {"compensation_gate": False}, format="json")
    assert r.status_code == 200, r.content
    served = _round(client, dep, "off", lambda i: 1, seed=50)
    stored = {e.external_id: e for e in Event.objects.filter(deployment=dep, external_id__startswith="off-")}
    assert all(p["score"] == pytest.approx(stored[p["id"]].full_score, abs=1e-12) for p in served)
    assert all(p["score"] > p["base_score"] for p in served)
    assert admin_client.get(f"/api/v1/deployments/{dep.slug}/memory").json()["gate"]["served_strength"] == 1.0


def test_a_multiclass_deployment_stores_full_vectors_and_its_gate_learns() -> None:
    dep, client = _gated(task="multiclass", classes=CLASSES_3)
    for n in range(6):
        _round(client, dep, f"r{n}", lambda i: 2, seed=n)
    dep.refresh_from_db()
    event = Event.objects.filter(deployment=dep, full_proba__isnull=False).first()
    assert event is not None and event.full_proba is not None and len(event.full_proba) == 3
    assert dep.compensation_strength > 0
    served = _round(client, dep, "after", lambda i: 2, seed=77)
    stored = {e.external_id: e for e in Event.objects.filter(deployment=dep, external_id__startswith="after-")}
    s = dep.compensation_strength
    for p in served:
        e = stored[p["id"]]
        assert e.base_proba is not None and e.full_proba is not None
        expected = [b + s * (f - b) for b, f in zip(e.base_proba, e.full_proba, strict=True)]
        assert p["score"] == pytest.approx(expected, abs=1e-9)
