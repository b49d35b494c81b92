"""The retrain policy: triggers, cooldown, manual flags and automatic retrain requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adaptive.models import AuditEntry, Deployment, Job
from adaptive.services import policy, retraining
from tests.factories import UserFactory, WindowFactory, deployment_with_live_version

pytestmark = pytest.mark.django_db

# What the monitoring service writes on a window whose compensated loss raised the CUSUM.
TRIGGERED = [
    {
        "kind": "retrain_trigger",
        "level": "drift",
        "calibrated": True,
        "reason": "compensated log loss 0.5210 against 0.4870 in the version's first windows: CUSUM 4.52 over "
        "its limit 4.38 (one false alarm per 500 windows)",
    }
]
DETECTORS_FIRED = {
    "raw": {"adwin": {"detections": [1], "drift": True}},
    "compensated": {"adwin": {"detections": [4], "drift": True}, "ddm": {"detections": [], "drift": False}},
}


@pytest.fixture
def dep() -> Deployment:
    return deployment_with_live_version()


def test_the_loss_trigger_flags_under_the_manual_policy(dep: Deployment) -> None:
    window = WindowFactory.create(deployment=dep, alarms=TRIGGERED, loss_cusum=4.52)

    decision = policy.decide(dep, window)

    assert decision is not None and decision[0] == "flag"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert entry.actor_label == "policy" and entry.actor is None
    assert "CUSUM 4.52" in entry.reason and "policy manual" in entry.reason
    assert entry.details["trigger"] == "loss_cusum" and entry.details["cusum"] == pytest.approx(4.52)
    assert not Job.objects.filter(kind=Job.Kind.RETRAIN).exists()
    # The same signal again inside the cooldown: no second flag.
    assert policy.decide(dep, WindowFactory.create(deployment=dep, alarms=TRIGGERED)) is None


def test_detectors_and_column_drift_alone_do_not_trigger(dep: Deployment) -> None:
    """Uncalibrated detector signals and a drift status are context: only the loss CUSUM retrains."""
    drift_status = {"kind": "drift_status", "level": "drift", "calibrated": True, "reason": "drift in humid"}
    detector = {"kind": "detector", "level": "info", "calibrated": False, "reason": "adwin fired"}
    window = WindowFactory.create(deployment=dep, detector_signals=DETECTORS_FIRED, alarms=[drift_status, detector])

    assert policy.decide(dep, window) is None
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.RETRAIN).exists()


def test_the_auto_policy_queues_a_retrain_once_per_cooldown(dep: Deployment) -> None:
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy="auto")
    dep.refresh_from_db()
    window = WindowFactory.create(deployment=dep, alarms=TRIGGERED)

    assert policy.act_on_window(dep, window) == "retrain"
    job = Job.objects.get(kind=Job.Kind.RETRAIN)
    assert job.status == Job.Status.QUEUED
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert entry.actor_label == "policy" and "compensated log loss" in entry.reason

    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    later = WindowFactory.create(deployment=dep, alarms=TRIGGERED)
    assert policy.act_on_window(dep, later) is None  # still inside the cooldown
    assert Job.objects.filter(kind=Job.Kind.RETRAIN).count() == 1


def test_a_paused_deployment_is_left_alone(dep: Deployment) -> None:
    Deployment.objects.filter(pk=dep.pk).update(status="paused", retrain_policy="auto")
    dep.refresh_from_db()

    assert policy.decide(dep, WindowFactory.create(deployment=dep, alarms=TRIGGERED)) is None


@pytest.mark.parametrize("retrain_policy", ["auto", "manual"])
def test_an_operators_retrain_starts_the_cooldown_too(dep: Deployment, retrain_policy: str) -> None:
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy=retrain_policy, retrain_cooldown_minutes=60)
    dep.refresh_from_db()
    operator = UserFactory.create(role="operator")
    job = retraining.request_retrain(deployment=dep, actor=operator, reason="by hand")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)  # finished: only the cooldown holds

    assert policy.decide(dep, WindowFactory.create(deployment=dep, alarms=TRIGGERED)) is None
    assert Job.objects.filter(kind=Job.Kind.RETRAIN).count() == 1
    assert not AuditEntry.objects.filter(actor_label="policy").exists()

    # Past the cooldown, the same signal acts again.
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    decision = policy.decide(dep, WindowFactory.create(deployment=dep, alarms=TRIGGERED))
    assert decision is not None and decision[0] == ("retrain" if retrain_policy == "auto" else "flag")
