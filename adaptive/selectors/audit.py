"""Reads of the audit log."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import F, QuerySet

from adaptive.models import AuditEntry


def audit_entries() -> QuerySet[AuditEntry]:
    """Every entry, newest first, with the deployment's slug and the version numbers annotated."""
    return AuditEntry.objects.annotate(
        deployment_slug=F("deployment__slug"), from_number=F("from_version__number"), to_number=F("to_version__number")
    ).order_by("-created_at", "-id")


def actor_labels(*, max_users: int = 200) -> list[str]:
    """What the audit log's actor filter offers: active usernames (the first ``max_users``), 'policy', 'system'."""
    usernames = get_user_model().objects.filter(is_active=True).order_by("username").values_list("username", flat=True)
    return [*usernames[:max_users], "policy", "system"]
