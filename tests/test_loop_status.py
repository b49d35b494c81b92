"""The loop's lags and alerts: labels waiting for the memory, labels in no window, jobs waiting, and
queues without a consumer, through the service and ``GET /api/v1/loop``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adaptive.models import Deployment, Job
from adaptive.services import loop, memory
from tasks.celery import app
from tests.factories import EventFactory, WindowFactory, unit_key

pytestmark = pytest.mark.django_db


def _labeled(deployment: Deployment, n: int, *, ago: timedelta, prefix: str) -> None:
    at = timezone.now() - ago
    for i in range(n):
        EventFactory.create(
            deployment=deployment,
            external_id=f"{prefix}-{i}",
            event_time=at,
            label=i % 2,
            labeled_at=at + timedelta(milliseconds=i),
            key=unit_key(8, seed=i),
        )


def test_labels_outside_the_memory_are_a_lag_until_applied(deployment: Deployment, settings) -> None:
    settings.LABEL_LAG_WARN_SECONDS = 60
    _labeled(deployment, 5, ago=timedelta(minutes=3), prefix="old")
    lag = loop.deployment_lag(deployment)
    assert lag.pending_labels == 5
    assert lag.pending_age_s is not None and 179 <= lag.pending_age_s <= 240
    assert any("wait for the error memory" in m for m in loop.lag_alerts(lag))

    memory.apply_pending(deployment.pk)
    lag = loop.deployment_lag(deployment)
    assert (lag.pending_labels, lag.pending_age_s) == (0, None)
    assert not any("error memory" in m for m in loop.lag_alerts(lag))


def test_labels_in_no_closed_window_count_from_the_last_window(deployment: Deployment, settings) -> None:
    settings.WINDOW_LAG_WARN_SECONDS = 60
    deployment.window_events, deployment.window_minutes = 2, 1
    deployment.save()
    _labeled(deployment, 6, ago=timedelta(minutes=10), prefix="a")
    memory.apply_pending(deployment.pk)  # in the memory: only the windows lag
    lag = loop.deployment_lag(deployment)
    assert lag.unwindowed_labels == 6
    assert any("monitoring is behind" in m for m in loop.lag_alerts(lag))

    # A window that took every label so far: nothing waits outside a window.
    WindowFactory.create(
        deployment=deployment,
        start=timezone.now() - timedelta(minutes=11),
        labeled_to=timezone.now() - timedelta(seconds=1),
    )
    lag = loop.deployment_lag(deployment)
    assert (lag.unwindowed_labels, lag.unwindowed_age_s) == (0, None)
    assert loop.lag_alerts(lag) == []


def test_a_job_queued_too_long_raises_an_alert_naming_its_queue(deployment: Deployment, settings) -> None:
    settings.JOB_WAIT_WARN_SECONDS = 30
    fresh = Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN)
    assert [w.kind for w in loop.job_waits()] == ["retrain"]
    assert loop.alerts(lags=[], waits=loop.job_waits(), workers={"queues_without_consumer": []}) == []

    Job.objects.filter(pk=fresh.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    (wait,) = loop.job_waits()
    assert (wait.queue, wait.oldest_id, wait.oldest_deployment) == ("gpu", fresh.pk, deployment.slug)
    (alert,) = loop.alerts(lags=[], waits=[wait], workers={"queues_without_consumer": []})
    assert alert["topic"] == "jobs:retrain"
    assert "'gpu' queue" in alert["message"]


def test_the_queue_of_each_job_kind_is_where_celery_routes_its_task() -> None:
    router = app.amqp.router
    tasks = {
        Job.Kind.COMPENSATION: "tasks.adaptation.update_memory",
        Job.Kind.DRIFT_SCAN: "tasks.monitoring.close_window",
        Job.Kind.RETRAIN: "tasks.training.retrain",
        Job.Kind.EVALUATION: "tasks.training.evaluate",
    }
    for kind, task in tasks.items():
        assert router.route({}, task)["queue"].name == loop.QUEUE_OF_KIND[kind], task


def test_loop_endpoint_reports_lags_and_missing_consumers(viewer_client, anon_client, deployment, settings) -> None:
    settings.LABEL_LAG_WARN_SECONDS = 60
    _labeled(deployment, 3, ago=timedelta(minutes=5), prefix="p")
    assert anon_client.get("/api/v1/loop").status_code in (401, 403)

    response = viewer_client.get("/api/v1/loop")
    assert response.status_code == 200
    body = response.json()
    (lag,) = body["deployments"]
    assert (lag["slug"], lag["pending_labels"], lag["unwindowed_labels"]) == (deployment.slug, 3, 3)
    topics = {a["topic"] for a in body["alerts"]}
    # No worker runs in this test: every queue the loop needs lacks a consumer.
    assert {"queue:default", "queue:monitoring", "queue:gpu"} <= topics
    assert f"lag:{deployment.slug}" in topics
    assert body["workers"]["queues_without_consumer"] == ["default", "gpu", "monitoring"]
