"""Django admin actions: pause, resume, reset memory, roll back, promote and cancel, through the services."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils.text import capfirst

from adaptive.models import AuditEntry, Deployment, ErrorSample, Job, ModelVersion, Release
from adaptive.services import ingest, memory, releases
from adaptive.services.registry import upload_version
from tests.factories import deployment_with_live_version, make_rows, model_artifacts

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user() -> Any:
    return get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")


@pytest.fixture
def browser(client: Client, admin_user: Any) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def two_versions(deployment: Deployment) -> Deployment:
    weights, spec = model_artifacts(seed=7)
    upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    deployment.refresh_from_db()
    return deployment


def _act(browser: Client, model: str, action: str, objects: list[Any]) -> list[tuple[str, str]]:
    """Post ``action`` for ``objects`` from the changelist; the (level, text) of the messages shown."""
    url = reverse(f"admin:adaptive_{model}_changelist")
    response = browser.post(url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0].endswith(url)
    shown = [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]
    # The messages are on the page the admin lands on, not only in the session.
    page = response.content.decode()
    for _, text in shown:
        assert capfirst(text).replace("'", "&#x27;") in page
    return shown


def _deployment(dep: Deployment) -> Deployment:
    return Deployment.objects.select_related("live_version").get(pk=dep.pk)


def test_pause_and_resume_from_the_deployment_list(browser: Client, admin_user: Any, deployment: Deployment) -> None:
    paused = _act(browser, "deployment", "pause", [deployment])
    again = _act(browser, "deployment", "pause", [deployment])

    assert paused == [("success", f"{deployment.slug}: adaptation paused")]
    assert again == [("success", f"{deployment.slug}: already paused")]
    assert _deployment(deployment).status == Deployment.Status.PAUSED
    entry = AuditEntry.objects.get(action=AuditEntry.Action.PAUSE)
    assert (entry.actor, entry.reason) == (admin_user, "admin action")

    resumed = _act(browser, "deployment", "resume", [deployment])

    assert resumed == [("success", f"{deployment.slug}: adaptation resumed")]
    assert _deployment(deployment).status == Deployment.Status.ACTIVE


def test_a_refused_action_is_an_error_message_not_a_500(browser: Client, deployment: Deployment) -> None:
    other_deployment = deployment_with_live_version()
    Deployment.objects.filter(pk=other_deployment.pk).update(status=Deployment.Status.ARCHIVED)

    shown = _act(browser, "deployment", "pause", [deployment, other_deployment])

    assert sorted(shown) == sorted(
        [
            ("success", f"{deployment.slug}: adaptation paused"),
            ("error", f"{other_deployment.slug}: the deployment is archived"),
        ]
    )
    assert _deployment(other_deployment).status == Deployment.Status.ARCHIVED


def test_reset_memory_from_the_deployment_list(browser: Client, deployment: Deployment) -> None:
    dep = _deployment(deployment)
    rows = [{"id": f"e{i}", "features": f} for i, f in enumerate(make_rows(12))]
    ingest.predict(deployment=dep, payload={"rows": rows})
    ingest.record_feedback(deployment=dep, payload={"labels": [{"id": r["id"], "label": 1} for r in rows]})
    memory.apply_pending(dep.pk)

    shown = _act(browser, "deployment", "reset_memory", [deployment])

    assert shown == [("success", f"{deployment.slug}: memory reset, 12 samples cleared")]
    assert not ErrorSample.objects.filter(active=True).exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RESET_MEMORY, reason="admin action").count() == 1


def test_roll_back_from_the_deployment_list(browser: Client, admin_user: Any, two_versions: Deployment) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="try v2")

    shown = _act(browser, "deployment", "roll_back", [two_versions])

    assert shown == [("success", f"{two_versions.slug}: rolled back, v1 is live")]
    assert _deployment(two_versions).live_version.number == 1  # type: ignore[union-attr]
    release = Release.objects.get(deployment=two_versions, ended_at__isnull=True)
    assert (release.kind, release.actor, release.reason) == ("rollback", admin_user, "admin action")
    # From v1 (the rollback), the previous release is v2's promotion: a second rollback goes there.
    assert _act(browser, "deployment", "roll_back", [two_versions]) == [
        ("success", f"{two_versions.slug}: rolled back, v2 is live")
    ]


def test_rolling_back_without_an_earlier_release_is_an_error_message(browser: Client, deployment: Deployment) -> None:
    shown = _act(browser, "deployment", "roll_back", [deployment])

    assert shown == [("error", f"{deployment.slug}: there is no earlier release to roll back to")]
    assert Release.objects.filter(deployment=deployment).count() == 1


def test_promote_one_version_from_the_version_list(
    browser: Client, admin_user: Any, two_versions: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    v2 = ModelVersion.objects.get(deployment=two_versions, number=2)
    rows = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(30, seed=4))]
    ingest.predict(deployment=_deployment(two_versions), payload={"rows": rows})
    ingest.record_feedback(deployment=two_versions, payload={"labels": [{"id": r["id"], "label": 1} for r in rows]})

    with django_capture_on_commit_callbacks() as sent:
        shown = _act(browser, "modelversion", "promote", [v2])
    again = _act(browser, "modelversion", "promote", [v2])

    # v2's memory was warmed before the switch, by the promotion itself: nothing queued after it.
    assert ErrorSample.objects.filter(version=v2, active=True).count() == 30
    assert not sent
    assert shown == [("success", f"{v2}: promoted, now live")]
    assert again == [("success", f"{v2}: already live")]
    assert _deployment(two_versions).live_version == v2
    assert Release.objects.filter(deployment=two_versions).count() == 2
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.PROMOTE, to_version=v2).get()
    assert (entry.actor, entry.reason) == (admin_user, "admin action")


def test_promote_needs_exactly_one_version(browser: Client, two_versions: Deployment) -> None:
    both = list(ModelVersion.objects.filter(deployment=two_versions))

    shown = _act(browser, "modelversion", "promote", both)

    assert shown == [("error", "Select exactly one version to promote.")]
    assert _deployment(two_versions).live_version.number == 1  # type: ignore[union-attr]


def test_cancel_jobs_from_the_job_list(browser: Client, deployment: Deployment) -> None:
    queued = Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN)
    done = Job.objects.create(deployment=deployment, kind=Job.Kind.DRIFT_SCAN, status=Job.Status.SUCCEEDED)

    shown = _act(browser, "job", "cancel", [queued, done])

    assert sorted(shown) == sorted(
        [
            ("success", f"{queued}: cancelled"),
            (
                "error",
                f"{done}: job {done.pk} has already succeeded; only queued or running jobs can be cancelled",
            ),
        ]
    )
    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, queued.message) == (Job.Status.CANCELLED, "cancelled by root-admin: admin action")
    assert queued.finished_at is not None
    assert done.status == Job.Status.SUCCEEDED


def test_retrain_now_from_the_deployment_list_queues_one_job(
    browser: Client, admin_user: Any, deployment: Deployment
) -> None:
    first = _act(browser, "deployment", "retrain", [deployment])
    second = _act(browser, "deployment", "retrain", [deployment])

    job = Job.objects.get(deployment=deployment, kind=Job.Kind.RETRAIN)
    assert first == [("success", f"{deployment.slug}: retrain queued as job {job.pk}")]
    assert second[0][0] == "error" and "already" in second[0][1]
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert (entry.actor, entry.reason) == (admin_user, "admin action")
