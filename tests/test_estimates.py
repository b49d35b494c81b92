"""Label-free estimates beyond the last window: adaptive.selectors.estimates and the curve's ``pending`` series."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from adaptive.ml import cbpe
from adaptive.models import Deployment, Event, ModelVersion
from adaptive.selectors.estimates import MIN_CHUNK_EVENTS, pending_estimates
from adaptive.services.registry import upload_version
from tests.factories import WINDOW_START, DeploymentFactory, WindowFactory, make_rows, model_artifacts

CALIBRATION = {"x": [0.1, 0.4, 0.6, 0.9], "y": [0.05, 0.3, 0.7, 0.95]}
SIZE = 100  # window_events of the deployments here (MIN_CHUNK_EVENTS is 100: every full chunk counts)


@pytest.fixture
def calibrated(deployment: Deployment) -> Deployment:
    """The binary deployment, its live v1 calibrated with threshold 0.45, windows of SIZE events."""
    assert deployment.live_version is not None
    ModelVersion.objects.filter(pk=deployment.live_version.pk).update(calibration=CALIBRATION, threshold=0.45)
    Deployment.objects.filter(pk=deployment.pk).update(window_events=SIZE)
    deployment.refresh_from_db()
    return deployment


@pytest.fixture
def multiclass_deployment(db: None) -> Deployment:
    """A three-class deployment whose first version (three outputs) is live."""
    deployment = DeploymentFactory.create(task="multiclass", classes=["on_time", "late", "cancelled"])
    weights, spec = model_artifacts(n_outputs=3)
    upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    deployment.refresh_from_db()
    return deployment


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.02, 0.98, n)
    return base, np.clip(base + rng.normal(0, 0.05, n), 0.0, 1.0)


def _serve(
    deployment: Deployment, n: int, *, after: datetime, seed: int = 0, version_id: int | None = None
) -> list[Event]:
    """n events served one second apart from ``after`` + 1 s, in a shuffled insertion order."""
    base, served = _scores(n, seed)
    features = make_rows(1)[0]
    version = version_id if version_id is not None else deployment.live_version_id
    order = np.random.default_rng(seed + 1).permutation(n)
    return Event.objects.bulk_create(
        Event(
            deployment=deployment,
            external_id=f"s{seed}-{i}",
            event_time=after + timedelta(seconds=int(i) + 1),
            received_at=after + timedelta(seconds=int(i) + 1),
            features=features,
            version_id=version,
            base_score=float(base[i]),
            score=float(served[i]),
        )
        for i in order
    )


def _expected(events: list[Event], threshold: float = 0.45) -> dict[str, Any]:
    base = [e.base_score for e in events]
    served = [e.score for e in events]
    b, c = cbpe.estimate(CALIBRATION, base, threshold), cbpe.estimate(CALIBRATION, served, threshold)
    return {
        "start": events[0].event_time,
        "end": events[-1].event_time,
        "n_events": len(events),
        "estimated_base_auc": b["auc"],
        "estimated_compensated_auc": c["auc"],
        "estimated_base_accuracy": b["accuracy"],
        "estimated_compensated_accuracy": c["accuracy"],
    }


def _by_time(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.event_time)


# --- the selector --------------------------------------------------------------------------------------


def test_events_after_the_last_window_are_estimated_per_window_sized_chunk(calibrated: Deployment) -> None:
    window = WindowFactory.create(deployment=calibrated, start=WINDOW_START)
    _serve(calibrated, 50, after=window.start, seed=9)  # inside the window's event-time range: realised
    pending = _by_time(_serve(calibrated, 2 * SIZE + 60, after=window.end, seed=3))

    chunks = pending_estimates(calibrated)

    # Two full chunks and a third still filling (60 events: fewer than MIN_CHUNK_EVENTS, left out).
    assert [c["n_events"] for c in chunks] == [SIZE, SIZE]
    assert chunks == [_expected(pending[:SIZE]), _expected(pending[SIZE : 2 * SIZE])]
    assert chunks[0]["start"] > window.end
    # The compensated scores are not the base ones: the two estimates differ.
    assert chunks[0]["estimated_base_auc"] != chunks[0]["estimated_compensated_auc"]
    assert 0.5 < chunks[0]["estimated_base_auc"] < 1.0 and 0.5 < chunks[0]["estimated_base_accuracy"] < 1.0


def test_without_any_window_every_served_event_is_pending(calibrated: Deployment) -> None:
    served = _by_time(_serve(calibrated, SIZE, after=WINDOW_START))

    assert pending_estimates(calibrated) == [_expected(served)]


def test_a_partial_chunk_counts_once_it_has_min_chunk_events(calibrated: Deployment) -> None:
    Deployment.objects.filter(pk=calibrated.pk).update(window_events=4 * MIN_CHUNK_EVENTS)
    calibrated.refresh_from_db()
    served = _by_time(_serve(calibrated, MIN_CHUNK_EVENTS, after=WINDOW_START))

    assert pending_estimates(calibrated) == [_expected(served)]
    Event.objects.filter(pk=served[-1].pk).delete()
    assert pending_estimates(calibrated) == []


def test_the_read_is_bounded_to_the_newest_max_windows_chunks(
    calibrated: Deployment, django_assert_max_num_queries: Any
) -> None:
    served = _by_time(_serve(calibrated, 5 * SIZE, after=WINDOW_START))

    # The version, the latest window's end, and the newest 2 x SIZE events: whatever the backlog.
    with django_assert_max_num_queries(3):
        chunks = pending_estimates(calibrated, max_windows=2)

    assert chunks == [_expected(served[3 * SIZE : 4 * SIZE]), _expected(served[4 * SIZE :])]


def test_events_of_another_version_are_left_out(calibrated: Deployment) -> None:
    weights, spec = model_artifacts(seed=5)
    v2, _ = upload_version(deployment=calibrated, spec=spec, weights=weights, actor=None)
    _serve(calibrated, SIZE, after=WINDOW_START, seed=1, version_id=v2.pk)  # a shadow version's scores
    live = _by_time(_serve(calibrated, SIZE, after=WINDOW_START + timedelta(hours=1), seed=2))

    assert pending_estimates(calibrated) == [_expected(live)]


def test_the_threshold_and_calibration_are_the_live_versions(calibrated: Deployment) -> None:
    served = _by_time(_serve(calibrated, SIZE, after=WINDOW_START))
    assert calibrated.live_version is not None
    ModelVersion.objects.filter(pk=calibrated.live_version.pk).update(threshold=0.8, calibration={})

    [chunk] = pending_estimates(calibrated)

    identity = cbpe.estimate({}, [e.base_score for e in served], 0.8)
    assert chunk["estimated_base_accuracy"] == identity["accuracy"]
    assert chunk["estimated_base_auc"] == identity["auc"]
    assert chunk != _expected(served)


def test_multiclass_external_and_versionless_deployments_have_no_estimates(
    multiclass_deployment: Deployment,
) -> None:
    empty_deployment = DeploymentFactory.create()
    external = DeploymentFactory.create(serving=Deployment.Serving.EXTERNAL, key_dim=8, feature_schema=[])
    for deployment in (multiclass_deployment, empty_deployment, external):
        Deployment.objects.filter(pk=deployment.pk).update(window_events=SIZE)
        deployment.refresh_from_db()
        _serve(deployment, SIZE, after=WINDOW_START)

        assert pending_estimates(deployment) == [], deployment.slug


# --- the curve API -------------------------------------------------------------------------------------


def _curve(client: APIClient, deployment: Deployment, query: str = "") -> dict[str, Any]:
    r = client.get(f"/api/v1/deployments/{deployment.slug}/curve{query}")
    assert r.status_code == 200, r.content
    body: dict[str, Any] = r.json()
    return body


def test_the_curve_carries_window_estimates_and_the_pending_series(
    viewer_client: APIClient, calibrated: Deployment
) -> None:
    window = WindowFactory.create(
        deployment=calibrated,
        start=WINDOW_START,
        estimated_base_auc=0.71234567,
        estimated_compensated_auc=0.75,
        estimated_base_accuracy=0.66,
        estimated_compensated_accuracy=None,
    )
    pending = _by_time(_serve(calibrated, 2 * SIZE, after=window.end))

    body = _curve(viewer_client, calibrated)

    w = body["windows"]
    assert w["id"] == [window.pk]
    assert (w["estimated_base_auc"], w["estimated_compensated_auc"]) == ([0.71235], [0.75])
    assert (w["estimated_base_accuracy"], w["estimated_compensated_accuracy"]) == ([0.66], [None])
    p = body["pending"]
    assert p["n_events"] == [SIZE, SIZE]
    assert [datetime.fromisoformat(t) for t in p["start"]] == [pending[0].event_time, pending[SIZE].event_time]
    assert [datetime.fromisoformat(t) for t in p["end"]] == [pending[SIZE - 1].event_time, pending[-1].event_time]
    expected = [_expected(pending[:SIZE]), _expected(pending[SIZE:])]
    for name in ("estimated_base_auc", "estimated_compensated_auc", "estimated_base_accuracy"):
        assert p[name] == [pytest.approx(e[name], abs=1e-5) for e in expected], name


def test_the_pending_parameter_bounds_the_series_and_until_drops_it(
    viewer_client: APIClient, calibrated: Deployment
) -> None:
    window = WindowFactory.create(deployment=calibrated, start=WINDOW_START)
    _serve(calibrated, 3 * SIZE, after=window.end)

    assert _curve(viewer_client, calibrated)["pending"]["n_events"] == [SIZE] * 3
    assert _curve(viewer_client, calibrated, "?pending=1")["pending"]["n_events"] == [SIZE]
    assert _curve(viewer_client, calibrated, "?pending=0")["pending"]["n_events"] == []
    later = (window.end + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    ranged = _curve(viewer_client, calibrated, f"?until={later}")
    assert ranged["windows"]["id"] == [window.pk] and ranged["pending"]["start"] == []


def test_a_multiclass_curve_has_an_empty_pending_series(
    viewer_client: APIClient, multiclass_deployment: Deployment
) -> None:
    _serve(multiclass_deployment, SIZE, after=WINDOW_START)

    pending = _curve(viewer_client, multiclass_deployment)["pending"]

    assert all(column == [] for column in pending.values())
    assert set(pending) == {
        "start",
        "end",
        "n_events",
        "estimated_base_auc",
        "estimated_compensated_auc",
        "estimated_base_accuracy",
        "estimated_compensated_accuracy",
    }


@pytest.mark.parametrize("value", ["-1", "21", "x", "1.5", ""])
def test_a_bad_pending_parameter_is_400_naming_it(viewer_client: APIClient, calibrated: Deployment, value: str) -> None:
    r = viewer_client.get(f"/api/v1/deployments/{calibrated.slug}/curve?pending={value}")

    assert r.status_code == 400, r.content
    assert r.json()["field"] == "pending"
