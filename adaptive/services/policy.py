"""The retrain policy: when monitoring says compensation no longer keeps up (docs/adaptation.md).

One trigger, checked after each closed window: the window's ``retrain_trigger`` alarm, raised by a
CUSUM on the mean *compensated* log loss of each window against the version's first windows
(adaptive.ml.cusum). The loss that is left after compensation has risen and stayed up, so the
error memory alone no longer follows the data. Its limit is set for one false alarm per 500
windows on a stream that does not change (bench/alarms.py measures the rate on time-shuffled
streams). Streaming detectors and column drift do not trigger retrains: they are context, shown on
the deployment page.

A trigger inside the deployment's cooldown (a retrain requested, or a flag raised, within
``retrain_cooldown_minutes``) or while a retrain is active does nothing. Policy ``manual`` only
flags (an AuditEntry by "policy" that says why); policy ``auto`` requests a retrain
(``act_on_window``), which is sent to the ``gpu`` queue like an operator's. Either way the audit log
says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal

from django.db import transaction
from django.utils import timezone

from adaptive.errors import Conflict
from adaptive.models import AuditEntry, Deployment, Job, Window
from adaptive.services import audit, retraining

log = logging.getLogger(__name__)

POLICY: Final = "policy"


@dataclass(frozen=True)
class Trigger:
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def retrain_trigger(deployment: Deployment, window: Window) -> Trigger | None:
    """Why this window calls for a retrain (its calibrated ``retrain_trigger`` alarm), or None."""
    for alarm in window.alarms or []:
        if isinstance(alarm, dict) and alarm.get("kind") == "retrain_trigger":
            return Trigger(
                f"{alarm.get('reason', 'the compensated loss rose')} in the window ending {window.end:%Y-%m-%d %H:%M}",
                {"trigger": "loss_cusum", "cusum": window.loss_cusum, "window": window.pk},
            )
    return None


def decide(deployment: Deployment, window: Window) -> tuple[Literal["retrain", "flag"], Trigger] | None:
    """Apply the policy to a closed window: ("retrain", why), ("flag", why) or None.

    "flag" is recorded here (an audit entry); "retrain" is acted on by ``act_on_window``.
    """
    if deployment.status != Deployment.Status.ACTIVE or deployment.live_version_id is None:
        return None
    trigger = retrain_trigger(deployment, window)
    if trigger is None:
        return None
    since = timezone.now() - timedelta(minutes=deployment.retrain_cooldown_minutes)
    retrains = Job.objects.filter(deployment=deployment, kind=Job.Kind.RETRAIN)
    if retrains.filter(status__in=Job.ACTIVE_STATUSES).exists() or retrains.filter(created_at__gte=since).exists():
        return None
    flagged = AuditEntry.objects.filter(
        deployment=deployment, action=AuditEntry.Action.RETRAIN, actor_label=POLICY, created_at__gte=since
    )
    if flagged.exists():
        return None
    if deployment.retrain_policy == Deployment.RetrainPolicy.AUTO:
        return "retrain", trigger
    audit.record(
        action=AuditEntry.Action.RETRAIN,
        deployment=deployment,
        actor=None,
        label=POLICY,
        reason=f"retrain suggested, not started (policy manual): {trigger.reason}",
        details={"flagged": True, **trigger.details},
    )
    return "flag", trigger


def act_on_window(deployment: Deployment, window: Window) -> Literal["retrain", "flag"] | None:
    """Decide on a closed window and act: request the retrain (policy auto) or flag it (manual).

    Returns what was done. A retrain that cannot be requested (one started meanwhile, the deployment
    changed) is logged and gives None.
    """
    deployment = Deployment.objects.get(pk=deployment.pk)
    decision = decide(deployment, window)
    if decision is None:
        return None
    action, trigger = decision
    if action == "retrain":
        try:
            with transaction.atomic():
                retraining.request_retrain(deployment=deployment, actor=None, reason=trigger.reason, label=POLICY)
        except Conflict as exc:
            log.info("policy retrain for %s not requested: %s", deployment.slug, exc)
            return None
    return action
