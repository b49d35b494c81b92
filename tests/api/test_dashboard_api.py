"""The reads behind the dashboard: overview, adaptation curve with markers, audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adaptive.models import AuditEntry, Deployment, Job, ModelVersion, Window
from adaptive.services import releases
from adaptive.services.registry import upload_version
from tests.factories import (
    DriftMetricFactory,
    ErrorSampleFactory,
    EventFactory,
    WindowFactory,
    model_artifacts,
)

pytestmark = pytest.mark.django_db


def _windows(deployment: Deployment, n: int, **fields: object) -> list[Window]:
    start = timezone.now() - timedelta(days=30)
    return [WindowFactory.create(deployment=deployment, start=start + timedelta(hours=i), **fields) for i in range(n)]


def _second_version(deployment: Deployment) -> ModelVersion:
    weights, spec = model_artifacts(seed=7)
    version, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    return version


def _summary(client, slug: str) -> dict:
    response = client.get("/api/v1/overview")
    assert response.status_code == 200, response.content
    return next(row for row in response.json()["deployments"] if row["slug"] == slug)


# --- overview --------------------------------------------------------------------------------------


def test_overview_says_no_data_before_any_window(viewer_client, deployment):
    row = _summary(viewer_client, deployment.slug)
    assert row["health"] == "no data"
    assert row["latest_window"] is None
    assert row["sparkline"] == {"base": [], "compensated": []}
    assert row["live_version"] == 1


def test_overview_health_counts_the_calibrated_alarms_only(viewer_client, deployment):
    (window,) = _windows(deployment, 1)
    # A column in its own drift band and a detector firing are context, not a health verdict.
    DriftMetricFactory.create(window=window, column="b", level="drift")
    window.detector_signals = {"raw": {}, "compensated": {"adwin": {"drift": True, "detections": [3]}}}
    window.alarms = [{"kind": "detector", "level": "info", "calibrated": False, "reason": "adwin fired"}]
    window.save()
    assert _summary(viewer_client, deployment.slug)["health"] == "ok"

    status = {"kind": "drift_status", "level": "drift", "calibrated": True, "reason": "drift in humid (severity 3.1)"}
    window.alarms = [*window.alarms, status]
    window.save()
    row = _summary(viewer_client, deployment.slug)
    assert row["health"] == "drift"
    assert row["health_reasons"] == ["drift in humid (severity 3.1)"]


def test_overview_health_reads_only_the_latest_window(viewer_client, deployment):
    old, _new = _windows(deployment, 2)
    old.alarms = [{"kind": "retrain_trigger", "level": "drift", "calibrated": True, "reason": "CUSUM"}]
    old.save()
    assert _summary(viewer_client, deployment.slug)["health"] == "ok"


def test_overview_counts_events_of_the_last_five_minutes_per_minute(viewer_client, deployment):
    now = timezone.now()
    for i in range(10):
        EventFactory.create(deployment=deployment, received_at=now - timedelta(seconds=10 * i))
    for _ in range(7):
        EventFactory.create(deployment=deployment, received_at=now - timedelta(minutes=20))
    assert _summary(viewer_client, deployment.slug)["events_per_minute"] == 2.0  # 10 events / 5 min


def test_overview_latest_window_sparkline_and_memory(viewer_client, deployment):
    windows = _windows(deployment, 35)
    Window.objects.filter(pk=windows[-1].pk).update(base_auc=0.61, compensated_auc=0.66)
    for _ in range(4):
        ErrorSampleFactory.create(deployment=deployment)
    ErrorSampleFactory.create(deployment=deployment, active=False)
    row = _summary(viewer_client, deployment.slug)
    assert row["latest_window"]["id"] == windows[-1].pk
    assert (row["latest_window"]["base_auc"], row["latest_window"]["compensated_auc"]) == (0.61, 0.66)
    assert len(row["sparkline"]["compensated"]) == 30
    assert row["sparkline"]["compensated"][-1] == 0.66
    assert row["memory_size"] == 4


def test_overview_lists_active_jobs_only(viewer_client, deployment):
    running = Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status="running", progress=0.4)
    Job.objects.create(deployment=deployment, kind=Job.Kind.EVALUATION, status="succeeded", progress=1)
    jobs = viewer_client.get("/api/v1/overview").json()["active_jobs"]
    assert [(j["id"], j["progress"], j["deployment"]) for j in jobs] == [(running.pk, 0.4, deployment.slug)]


def test_overview_needs_a_role(norole_client, anon_client):
    assert norole_client.get("/api/v1/overview").status_code == 403
    assert anon_client.get("/api/v1/overview").status_code in (401, 403)


def test_overview_queries_do_not_grow_with_windows(viewer_client, deployment, django_assert_max_num_queries):
    _windows(deployment, 40)
    with django_assert_max_num_queries(12):
        assert viewer_client.get("/api/v1/overview").status_code == 200


# --- adaptation curve ------------------------------------------------------------------------------


def test_curve_has_one_point_per_window_oldest_first(viewer_client, deployment):
    windows = _windows(deployment, 5)
    Window.objects.filter(pk=windows[2].pk).update(compensated_auc=None)
    body = viewer_client.get(f"/api/v1/deployments/{deployment.slug}/curve").json()
    curve = body["windows"]
    assert curve["id"] == [w.pk for w in windows]
    assert len(curve["base_log_loss"]) == 5
    assert curve["compensated_auc"][2] is None
    assert curve["version"] == [1] * 5


def test_curve_places_markers_between_the_windows_around_them(viewer_client, deployment):
    windows = _windows(deployment, 4)
    v2 = _second_version(deployment)
    base = timezone.now() - timedelta(hours=4)
    for i, window in enumerate(windows):
        Window.objects.filter(pk=window.pk).update(created_at=base + timedelta(hours=i))
    ModelVersion.objects.filter(pk=v2.pk).update(
        origin=ModelVersion.Origin.RETRAINED, created_at=base + timedelta(minutes=90)
    )
    releases.promote(deployment=deployment, number=2, actor=None, reason="gates passed")  # now: after all windows

    body = viewer_client.get(f"/api/v1/deployments/{deployment.slug}/curve").json()
    markers = [(m["kind"], m["version"], m["position"]) for m in body["markers"]]
    # Retrained between windows 1 and 2 (closed at +1 h and +2 h); promoted after the last one.
    assert markers == [("retrain", 2, 2), ("promotion", 2, 4)]
    assert body["markers"][1]["reason"] == "gates passed"


def test_curve_limit_keeps_the_newest_windows(viewer_client, deployment):
    windows = _windows(deployment, 6)
    body = viewer_client.get(f"/api/v1/deployments/{deployment.slug}/curve?limit=2").json()
    assert body["windows"]["id"] == [w.pk for w in windows[-2:]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("since=2024-03-02&until=2024-03-01", "until"),
    ],
)
def test_curve_rejects_bad_parameters_with_the_field(viewer_client, deployment, query, field):
    response = viewer_client.get(f"/api/v1/deployments/{deployment.slug}/curve?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_curve_of_an_unknown_deployment_is_404(viewer_client, db):
    assert viewer_client.get("/api/v1/deployments/nope/curve").status_code == 404


# --- audit log -------------------------------------------------------------------------------------


def test_audit_lists_newest_first_with_versions_and_filters(operator_client, deployment, other_deployment):
    _second_version(deployment)
    releases.promote(deployment=deployment, number=2, actor=operator_client.user, reason="better")
    releases.rollback(deployment=deployment, actor=operator_client.user, reason="flips")

    body = operator_client.get(f"/api/v1/audit?deployment={deployment.slug}").json()
    actions = [entry["action"] for entry in body["results"]]
    assert actions[:2] == ["rollback", "promote"]
    rollback = body["results"][0]
    assert (rollback["from_version"], rollback["to_version"], rollback["actor"], rollback["reason"]) == (
        2,
        1,
        operator_client.user.username,
        "flips",
    )
    assert all(entry["deployment"] == deployment.slug for entry in body["results"])

    only = operator_client.get(f"/api/v1/audit?action=rollback&actor={operator_client.user.username}").json()
    assert [entry["id"] for entry in only["results"]] == [rollback["id"]]
    assert operator_client.get("/api/v1/audit?actor=nobody").json()["count"] == 0
    assert AuditEntry.objects.filter(deployment=other_deployment).exists()


@pytest.mark.parametrize(("query", "field"), [("deployment=nope", "deployment"), ("action=explode", "action")])
def test_audit_rejects_unknown_filters(viewer_client, deployment, query, field):
    response = viewer_client.get(f"/api/v1/audit?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_audit_is_readable_by_viewers_only_with_a_role(viewer_client, norole_client, deployment):
    assert viewer_client.get("/api/v1/audit").status_code == 200
    assert norole_client.get("/api/v1/audit").status_code == 403
