"""Writing audit entries: one helper so every action records actor and reason the same way."""

from __future__ import annotations

from typing import Any

from adaptive.models import AuditEntry, Deployment, ModelVersion


def user_of(actor: Any) -> Any:
    """The user row behind an actor, or None for the system, the policy or an ingestion key."""
    if getattr(actor, "pk", None) is None or getattr(actor, "is_ingestion_key", False):
        return None
    return actor


def actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    return str(getattr(actor, "username", None) or actor)


def record(
    *,
    action: str,
    deployment: Deployment | None,
    actor: Any,
    reason: str = "",
    from_version: ModelVersion | None = None,
    to_version: ModelVersion | None = None,
    details: dict[str, Any] | None = None,
    label: str | None = None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        deployment=deployment,
        actor=user_of(actor),
        actor_label=label or actor_label(actor),
        action=action,
        from_version=from_version,
        to_version=to_version,
        reason=reason,
        details=details or {},
    )
