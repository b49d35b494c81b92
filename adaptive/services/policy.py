"""The retrain policy: when monitoring says compensation no longer keeps up (docs/design.md).

Two triggers, checked after each closed window:

* drift on the *compensated* error: a streaming detector fired on the errors that are left after
  compensation, so the error memory alone cannot follow the data any more;
* a performance drop: the compensated AUC of the last ``PERFORMANCE_WINDOWS`` windows all sit more
  than ``PERFORMANCE_DROP`` below the mean of the live version's first windows.

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

PERFORMANCE_WINDOWS: Final = 3
PERFORMANCE_DROP: Final = 0.02
POLICY: Final = "policy"


@dataclass(frozen=True)
class Trigger:
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def retrain_trigger(deployment: Deployment, window: Window) -> Trigger | None:
    """Why this window calls for a retrain, or None."""
    compensated = (window.detector_signals or {}).get("compensated") or {}
    fired = sorted(name for name, signal in compensated.items() if isinstance(signal, dict) and signal.get("drift"))
    if fired:
        return Trigger(
            f"drift on the compensated error ({', '.join(fired)}) in the window ending {window.end:%Y-%m-%d %H:%M}",
            {"trigger": "compensated_drift", "detectors": fired, "window": window.pk},
        )
    windows = Window.objects.filter(deployment=deployment, version_id=window.version_id, compensated_auc__isnull=False)
    baseline = [
        (pk, float(auc or 0.0))
        for pk, auc in windows.order_by("end").values_list("pk", "compensated_auc")[:PERFORMANCE_WINDOWS]
    ]
    recent = [
        (pk, float(auc or 0.0))
        for pk, auc in windows.order_by("-end").values_list("pk", "compensated_auc")[:PERFORMANCE_WINDOWS]
    ]
    if len(recent) < PERFORMANCE_WINDOWS or {pk for pk, _ in baseline} & {pk for pk, _ in recent}:
        return None
    reference = sum(auc for _, auc in baseline) / len(baseline)
    if all(auc < reference - PERFORMANCE_DROP for _, auc in recent):
        latest = ", ".join(f"{auc:.3f}" for _, auc in recent)
        return Trigger(
            f"compensated AUC {latest} in the last {PERFORMANCE_WINDOWS} windows, more than "
            f"{PERFORMANCE_DROP} below the version's first windows ({reference:.3f})",
            {"trigger": "performance_drop", "reference_auc": reference, "recent_auc": [a for _, a in recent]},
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
