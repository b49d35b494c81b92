"""Compensated serving in one process: keys at predict, labels into the memory, delta reads."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.models import Deployment, ErrorSample, Event, Job
from adaptive.services import memory
from tests.factories import make_rows

pytestmark = pytest.mark.django_db


def predict(client: APIClient, dep: Deployment, rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    body = {"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    r = client.post(f"/api/v1/deployments/{dep.slug}/predict", body, format="json")
    assert r.status_code == 200, r.content
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    return predictions


def label_all(client: APIClient, dep: Deployment, ids: list[str], label: int) -> None:
    body = {"labels": [{"id": i, "label": label} for i in ids]}
    r = client.post(f"/api/v1/deployments/{dep.slug}/feedback", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == len(ids)


def test_predict_stores_the_key_and_the_serving_revision(ingest_client: APIClient, deployment: Deployment) -> None:
    out = predict(ingest_client, deployment, make_rows(5), "a")

    assert [p["memory_revision"] for p in out] == [0] * 5
    hidden_dim = 8  # tests.factories.model_artifacts: hidden [16, 8]
    for event in Event.objects.filter(deployment=deployment):
        assert event.key is not None and len(bytes(event.key)) == 4 * hidden_dim
        assert event.served_revision == 0
        assert event.memory_revision is None
    assert [p["score"] for p in out] == [p["base_score"] for p in out]  # empty memory: no correction


def test_labels_become_error_samples_and_later_predictions_are_compensated(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    rows = make_rows(300, seed=3)
    first = predict(ingest_client, deployment, rows, "a")
    label_all(ingest_client, deployment, [p["id"] for p in first], 1)

    result = memory.apply_pending(deployment.pk)

    assert (result.applied, result.revision) == (300, 1)
    assert (
        ErrorSample.objects.filter(deployment=deployment, version=deployment.live_version, active=True).count() == 300
    )
    assert set(Event.objects.filter(deployment=deployment).values_list("memory_revision", flat=True)) == {1}
    # The same rows again under new ids: every label was 1, so the memory pulls scores up.
    again = predict(ingest_client, deployment, rows, "b")
    assert {p["memory_revision"] for p in again} == {1}
    lifted = [p["score"] - p["base_score"] for p in again]
    assert min(lifted) > 0.05
    assert [p["base_score"] for p in again] == pytest.approx([p["base_score"] for p in first])


def test_applying_twice_is_harmless(ingest_client: APIClient, deployment: Deployment) -> None:
    out = predict(ingest_client, deployment, make_rows(10), "a")
    label_all(ingest_client, deployment, [p["id"] for p in out], 0)

    memory.apply_pending(deployment.pk)
    second = memory.apply_pending(deployment.pk)

    assert (second.applied, second.revision) == (0, 1)
    assert ErrorSample.objects.filter(deployment=deployment).count() == 10


def test_a_serving_process_applies_only_the_new_samples(ingest_client: APIClient, deployment: Deployment) -> None:
    out = predict(ingest_client, deployment, make_rows(40, seed=1), "a")
    label_all(ingest_client, deployment, [p["id"] for p in out[:25]], 1)
    memory.apply_pending(deployment.pk)
    predict(ingest_client, deployment, make_rows(1, seed=9), "probe1")
    live = runtime.live_memory(Deployment.objects.get(pk=deployment.pk), deployment.live_version_id, 8)
    assert (len(live.memory), live.memory.n_added, live.revision) == (25, 25, 1)  # type: ignore[attr-defined]

    label_all(ingest_client, deployment, [p["id"] for p in out[25:]], 0)
    memory.apply_pending(deployment.pk)
    predict(ingest_client, deployment, make_rows(1, seed=9), "probe2")

    live = runtime.live_memory(Deployment.objects.get(pk=deployment.pk), deployment.live_version_id, 8)
    # 15 more rows added to the same memory object: a delta, not a rebuild.
    assert (len(live.memory), live.memory.n_added, live.revision) == (40, 40, 2)  # type: ignore[attr-defined]


def test_capacity_evicts_the_oldest_samples_in_the_database_and_in_process(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_capacity=10)
    out = predict(ingest_client, deployment, make_rows(25, seed=2), "a")
    for start in (0, 8, 16):
        label_all(ingest_client, deployment, [p["id"] for p in out[start : start + 8]], 1)
        memory.apply_pending(deployment.pk)

    active = ErrorSample.objects.filter(deployment=deployment, active=True)
    assert active.count() == 10
    newest = list(ErrorSample.objects.order_by("-revision", "-id").values_list("pk", flat=True)[:10])
    assert sorted(active.values_list("pk", flat=True)) == sorted(newest)
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert len(runtime.live_memory(fresh, deployment.live_version_id, 8).memory) == 10
    runtime.clear_cache()  # a new process rebuilds from the active rows: the same ten
    assert len(runtime.live_memory(fresh, deployment.live_version_id, 8).memory) == 10


def test_a_new_epoch_rebuilds_the_memory(ingest_client: APIClient, deployment: Deployment) -> None:
    out = predict(ingest_client, deployment, make_rows(12), "a")
    label_all(ingest_client, deployment, [p["id"] for p in out], 1)
    memory.apply_pending(deployment.pk)
    fresh = Deployment.objects.get(pk=deployment.pk)
    before = runtime.live_memory(fresh, deployment.live_version_id, 8)

    ErrorSample.objects.filter(deployment=deployment).update(active=False)
    Deployment.objects.filter(pk=deployment.pk).update(memory_epoch=1)
    after = runtime.live_memory(Deployment.objects.get(pk=deployment.pk), deployment.live_version_id, 8)

    assert after is not before
    assert len(after.memory) == 0


def test_compensation_switched_off_serves_the_base_score_and_keeps_learning(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    rows = make_rows(50, seed=4)
    out = predict(ingest_client, deployment, rows, "a")
    label_all(ingest_client, deployment, [p["id"] for p in out], 1)
    memory.apply_pending(deployment.pk)
    Deployment.objects.filter(pk=deployment.pk).update(compensation_enabled=False)

    again = predict(ingest_client, deployment, rows, "b")

    assert [p["score"] for p in again] == [p["base_score"] for p in again]
    assert Event.objects.filter(external_id__startswith="b-", key__isnull=False).count() == 50


def test_a_paused_deployment_keeps_its_labels_waiting(ingest_client: APIClient, deployment: Deployment) -> None:
    out = predict(ingest_client, deployment, make_rows(5), "a")
    label_all(ingest_client, deployment, [p["id"] for p in out], 1)
    Deployment.objects.filter(pk=deployment.pk).update(status=Deployment.Status.PAUSED)

    result = memory.apply_pending(deployment.pk)

    assert result.paused and result.applied == 0
    assert memory.pending_labels(deployment) == 5
    assert not ErrorSample.objects.exists()


def test_feedback_queues_one_compensation_job_at_a_time(
    ingest_client: APIClient, deployment: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    out = predict(ingest_client, deployment, make_rows(6), "a")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for p in out:
            label_all(ingest_client, deployment, [p["id"]], 1)

    assert Job.objects.filter(deployment=deployment, kind=Job.Kind.COMPENSATION, status="queued").count() == 1
    assert len(callbacks) == 1  # one message for the one queued job


def test_multiclass_predictions_are_compensated_as_vectors(
    operator_client: APIClient, multiclass_deployment: Deployment
) -> None:
    rows = make_rows(200, seed=5)
    first = predict(operator_client, multiclass_deployment, rows, "a")
    body = {"labels": [{"id": p["id"], "label": "cancelled"} for p in first]}
    assert (
        operator_client.post(
            f"/api/v1/deployments/{multiclass_deployment.slug}/feedback", body, format="json"
        ).status_code
        == 200
    )
    memory.apply_pending(multiclass_deployment.pk)

    again = predict(operator_client, multiclass_deployment, rows, "b")

    for p in again:
        assert sum(p["score"]) == pytest.approx(1.0, abs=1e-6)
        assert p["score"][2] > p["base_score"][2]


# --- external deployments: validation -------------------------------------------------------------


@pytest.fixture
def external(admin_client: APIClient) -> Deployment:
    body = {"slug": "ext", "name": "Ext", "task": "binary", "serving": "external", "key_dim": 3}
    r = admin_client.post("/api/v1/deployments", body, format="json")
    assert r.status_code == 201, r.content
    return Deployment.objects.get(slug="ext")


def test_an_external_deployment_needs_a_key_dim(admin_client: APIClient) -> None:
    body = {"slug": "ext", "name": "Ext", "task": "binary", "serving": "external"}
    r = admin_client.post("/api/v1/deployments", body, format="json")

    assert r.status_code == 400 and r.json()["field"] == "key_dim"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": "a", "score": 0.5, "key": [1, 2]}, "key"),
        ({"id": "a", "score": 0.5, "key": [1, 2, "x"]}, "key"),
        ({"id": "a", "score": 1.5, "key": [1, 2, 3]}, "score"),
        ({"id": "a", "key": [1, 2, 3]}, "score"),
        ({"id": "a", "score": 0.5, "key": [1, 2, 3], "extra": 1}, "extra"),
    ],
)
def test_compensate_rejects_bad_rows_with_the_field_and_stores_nothing(
    operator_client: APIClient, external: Deployment, row: dict[str, Any], field: str
) -> None:
    good = {"id": "ok", "score": 0.5, "key": [0.1, 0.2, 0.3]}
    r = operator_client.post(f"/api/v1/deployments/{external.slug}/compensate", {"rows": [good, row]}, format="json")

    assert r.status_code == 400, r.content
    assert (r.json()["field"], r.json()["index"]) == (field, 1)
    assert not Event.objects.exists()


def test_predict_and_compensate_are_each_for_their_kind_of_deployment(
    operator_client: APIClient, external: Deployment, deployment: Deployment
) -> None:
    row = {"id": "a", "score": 0.5, "key": [0.1, 0.2, 0.3]}
    wrong_1 = operator_client.post(f"/api/v1/deployments/{deployment.slug}/compensate", {"rows": [row]}, format="json")
    wrong_2 = operator_client.post(
        f"/api/v1/deployments/{external.slug}/predict", {"rows": [{"id": "a", "features": {}}]}, format="json"
    )

    assert (wrong_1.status_code, wrong_2.status_code) == (409, 409)


def test_compensate_is_idempotent_by_id(operator_client: APIClient, external: Deployment) -> None:
    rows = [{"id": f"r{i}", "score": 0.1 * i, "key": [i, 1, 0]} for i in range(5)]
    url = f"/api/v1/deployments/{external.slug}/compensate"
    first = operator_client.post(url, {"rows": rows}, format="json").json()
    second = operator_client.post(url, {"rows": rows}, format="json").json()

    assert first == second
    assert Event.objects.filter(deployment=external).count() == 5
    assert all(
        e.version_id is None and e.key is not None and len(bytes(e.key)) == 12
        for e in Event.objects.filter(deployment=external)
    )
