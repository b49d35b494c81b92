"""Changing a deployment's adaptation settings (compensation, memory, windows, drift, retraining, gates)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from adaptive.errors import InvalidInput
from adaptive.ml.memory import MAX_TAU, MIN_TAU
from adaptive.models import AuditEntry, Deployment
from adaptive.services import audit

# The settings operators may change, by topic; everything else about a deployment is fixed at
# creation. The API's serializers, the dashboard's form and the admin's fieldsets derive from these.
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    "Compensation": (
        "compensation_enabled",
        "compensation_gate",
        "memory_kind",
        "memory_capacity",
        "memory_k",
        "compensation_lambda",
        "compensation_gamma",
        "compensation_tau",
    ),
    "Monitoring": ("window_events", "window_minutes", "drift_p_value", "drift_distance"),
    "Retraining and gates": (
        "retrain_policy",
        "retrain_cooldown_minutes",
        "gate_min_metric_delta",
        "gate_max_nfr",
    ),
}
SETTINGS: tuple[str, ...] = tuple(name for names in SETTING_GROUPS.values() for name in names)

# The inclusive bounds of the numeric settings (None: unbounded on that side), the same when a
# deployment is created and when its settings change, whoever changes them: the API's serializers
# declare them (and document them in the schema), ``check_bounds`` enforces them for the admin.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "memory_capacity": (1, 10_000_000),
    "memory_k": (1, 10_000),
    "compensation_lambda": (0, 1),
    "compensation_gamma": (0, 1),
    "compensation_tau": (MIN_TAU, MAX_TAU),
    "window_events": (10, 1_000_000),
    "window_minutes": (1, 7 * 24 * 60),
    "drift_p_value": (0, 1),
    "drift_distance": (0, None),
    "retrain_cooldown_minutes": (0, None),
    "gate_max_nfr": (0, 1),
    "gate_min_metric_delta": (-1, 1),
}


def check_bounds(changes: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` naming the first setting in ``changes`` outside its bounds."""
    for name, value in changes.items():
        low, high = BOUNDS.get(name, (None, None))
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            lower = "" if low is None else f"{low:g}"
            upper = "" if high is None else f"{high:g}"
            raise InvalidInput(name, f"must be in [{lower}, {upper}]")


def update_settings(*, deployment: Deployment, changes: dict[str, Any], actor: Any, reason: str = "") -> Deployment:
    """Apply validated setting ``changes`` and audit them with their old and new values.

    Serving processes read the deployment row on every request; a change of memory kind or shape
    makes them rebuild the memory from the stored samples (adaptive.runtime), nothing is lost.
    Repeating the same change is a no-op with no audit entry.
    """
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise InvalidInput(unknown[0], f"not an adaptation setting (allowed: {', '.join(SETTINGS)})")
    check_bounds(changes)
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
