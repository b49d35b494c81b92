"""Changing a deployment's adaptation settings (compensation, memory, windows, drift, retraining, gates)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from adaptive.errors import InvalidInput
from adaptive.models import AuditEntry, Deployment
from adaptive.services import audit

# Settings operators may change; everything else about a deployment is fixed at creation.
SETTINGS = (
    "compensation_enabled",
    "memory_kind",
    "memory_capacity",
    "memory_k",
    "compensation_lambda",
    "compensation_gamma",
    "compensation_tau",
    "window_events",
    "window_minutes",
    "drift_p_value",
    "drift_distance",
    "retrain_policy",
    "retrain_cooldown_minutes",
    "gate_min_metric_delta",
    "gate_max_nfr",
)


def update_settings(*, deployment: Deployment, changes: dict[str, Any], actor: Any, reason: str = "") -> Deployment:
    """Apply validated setting ``changes`` and audit them with their old and new values.

    Serving processes read the deployment row on every request; a change of memory kind or shape
    makes them rebuild the memory from the stored samples (adaptive.runtime), nothing is lost.
    Repeating the same change is a no-op with no audit entry.
    """
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise InvalidInput(unknown[0], f"not an adaptation setting (allowed: {', '.join(SETTINGS)})")
    with transaction.atomic():
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        diff = {
            name: {"from": getattr(locked, name), "to": value}
            for name, value in changes.items()
            if getattr(locked, name) != value
        }
        if not diff:
            return locked
        for name, change in diff.items():
            setattr(locked, name, change["to"])
        locked.save(update_fields=[*diff, "updated_at"])
        audit.record(
            action=AuditEntry.Action.UPDATE_SETTINGS,
            deployment=locked,
            actor=actor,
            reason=reason,
            details={"changes": diff},
        )
    return locked
