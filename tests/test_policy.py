"""The retrain policy: triggers, cooldown, manual flags and automatic retrain requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adaptive.models import AuditEntry, Deployment, Job, Window
from adaptive.services import policy, retraining
from tests.factories import UserFactory, WindowFactory, deployment_with_live_version

pytestmark = pytest.mark.django_db

DRIFTED = {
    "raw": {},
    "compensated": {"adwin": {"detections": [4], "drift": True}, "ddm": {"detections": [], "drift": False}},
}


@pytest.fixture
def dep() -> Deployment:
    return deployment_with_live_version()


def _windows(dep: Deployment, aucs: list[float]) -> list[Window]:
    start = WindowFactory._meta.declarations["start"]
    return [
        WindowFactory.create(deployment=dep, start=start + timedelta(hours=i), compensated_auc=auc)
        for i, auc in enumerate(aucs)
    ]


def test_drift_on_the_compensated_error_flags_under_the_manual_policy(dep: Deployment) -> None:
    window = WindowFactory.create(deployment=dep, detector_signals=DRIFTED)

    decision = policy.decide(dep, window)

    assert decision is not None and decision[0] == "flag"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert entry.actor_label == "policy" and entry.actor is None
    assert "adwin" in entry.reason and "policy manual" in entry.reason
    assert not Job.objects.filter(kind=Job.Kind.RETRAIN).exists()
    # The same signal again inside the cooldown: no second flag.
    assert policy.decide(dep, WindowFactory.create(deployment=dep, detector_signals=DRIFTED)) is None


def test_drift_on_the_raw_error_alone_is_what_compensation_is_for(dep: Deployment) -> None:
    signals = {"raw": {"adwin": {"detections": [1], "drift": True}}, "compensated": {}}

    assert policy.decide(dep, WindowFactory.create(deployment=dep, detector_signals=signals)) is None


def test_a_sustained_drop_of_the_compensated_auc_triggers(dep: Deployment) -> None:
    windows = _windows(dep, [0.80, 0.81, 0.79, 0.75, 0.74, 0.76])

    trigger = policy.retrain_trigger(dep, windows[-1])

    assert trigger is not None and trigger.details["trigger"] == "performance_drop"
    assert trigger.details["reference_auc"] == pytest.approx(0.80)


@pytest.mark.parametrize("aucs", [[0.80, 0.81, 0.79, 0.75, 0.79, 0.76], [0.80, 0.70, 0.70], [0.8, 0.8, 0.8, 0.7]])
def test_no_trigger_without_a_sustained_drop_over_enough_windows(dep: Deployment, aucs: list[float]) -> None:
    windows = _windows(dep, aucs)

    assert policy.retrain_trigger(dep, windows[-1]) is None


def test_the_auto_policy_queues_a_retrain_once_per_cooldown(dep: Deployment) -> None:
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy="auto")
    dep.refresh_from_db()
    window = WindowFactory.create(deployment=dep, detector_signals=DRIFTED)

    assert policy.act_on_window(dep, window) == "retrain"
    job = Job.objects.get(kind=Job.Kind.RETRAIN)
    assert job.status == Job.Status.QUEUED
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert entry.actor_label == "policy" and "compensated error" in entry.reason

    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    later = WindowFactory.create(deployment=dep, detector_signals=DRIFTED)
    assert policy.act_on_window(dep, later) is None  # still inside the cooldown
    assert Job.objects.filter(kind=Job.Kind.RETRAIN).count() == 1


def test_a_paused_deployment_is_left_alone(dep: Deployment) -> None:
    Deployment.objects.filter(pk=dep.pk).update(status="paused", retrain_policy="auto")
    dep.refresh_from_db()

    assert policy.decide(dep, WindowFactory.create(deployment=dep, detector_signals=DRIFTED)) is None


@pytest.mark.parametrize("retrain_policy", ["auto", "manual"])
def test_an_operators_retrain_starts_the_cooldown_too(dep: Deployment, retrain_policy: str) -> None:
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy=retrain_policy, retrain_cooldown_minutes=60)
    dep.refresh_from_db()
    operator = UserFactory.create(role="operator")
    job = retraining.request_retrain(deployment=dep, actor=operator, reason="by hand")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)  # finished: only the cooldown holds

    assert policy.decide(dep, WindowFactory.create(deployment=dep, detector_signals=DRIFTED)) is None
    assert Job.objects.filter(kind=Job.Kind.RETRAIN).count() == 1
    assert not AuditEntry.objects.filter(actor_label="policy").exists()

    # Past the cooldown, the same signal acts again.
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    decision = policy.decide(dep, WindowFactory.create(deployment=dep, detector_signals=DRIFTED))
    assert decision is not None and decision[0] == ("retrain" if retrain_policy == "auto" else "flag")
