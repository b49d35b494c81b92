"""Ingestion keys: create (the raw key is shown once), look up, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from adaptive.models import AuditEntry, Deployment, IngestionKey
from adaptive.services import audit

_PREFIX_LEN = 10


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(*, deployment: Deployment, name: str, actor: Any) -> tuple[IngestionKey, str]:
    """Create a key and return it with the raw secret, which is not stored anywhere."""
    prefix = secrets.token_hex(_PREFIX_LEN // 2)
    raw = f"ik_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = IngestionKey.objects.create(
            deployment=deployment,
            name=name,
            prefix=prefix,
            key_hash=_hash(raw),
            created_by=audit.user_of(actor),
        )
        audit.record(
            action=AuditEntry.Action.CREATE_KEY,
            deployment=deployment,
            actor=actor,
            details={"key": name, "prefix": prefix},
        )
    return key, raw


def find_active_key(raw: str) -> IngestionKey | None:
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != "ik" or len(parts[1]) != _PREFIX_LEN:
        return None
    key = IngestionKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw)):
        return None
    return key


def revoke_key(*, key: IngestionKey, actor: Any, reason: str = "") -> IngestionKey:
    with transaction.atomic():
        updated = IngestionKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit.record(
                action=AuditEntry.Action.REVOKE_KEY,
                deployment=key.deployment,
                actor=actor,
                reason=reason,
                details={"key": key.name, "prefix": key.prefix},
            )
    key.refresh_from_db()
    return key
