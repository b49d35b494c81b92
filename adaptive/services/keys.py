"""Ingestion keys: create (the raw key is shown once), look up, revoke."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from adaptive import credential_cache
from adaptive.errors import InvalidInput
from adaptive.models import AuditEntry, Deployment, IngestionKey
from adaptive.services import audit
from adaptive.services.tokens import hash_token
from config.rates import parse_rate

_PREFIX_LEN = 10


def create_key(*, deployment: Deployment, name: str, actor: Any, rate: str = "") -> tuple[IngestionKey, str]:
    """Create a key and return it with the raw secret, which is not stored anywhere.

    ``rate`` limits its requests (api.throttling), e.g. "1000/min"; empty: the INGESTION_KEY_RATE setting.
    """
    try:
        parse_rate(rate)
    except ValueError as exc:
        raise InvalidInput("rate", str(exc)) from exc
    prefix = secrets.token_hex(_PREFIX_LEN // 2)
    raw = f"ik_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = IngestionKey.objects.create(
            deployment=deployment,
            name=name,
            prefix=prefix,
            key_hash=hash_token(raw),
            rate=rate,
            created_by=audit.user_of(actor),
        )
        audit.record(
            action=AuditEntry.Action.CREATE_KEY,
            deployment=deployment,
            actor=actor,
            details={"key": name, "prefix": prefix, "rate": rate},
        )
    return key, raw


def find_active_key(raw: str) -> IngestionKey | None:
    """The unrevoked key whose raw value is ``raw``; remembered by this process for a few seconds
    (adaptive.credential_cache: a key revoked by another process stops working within that time)."""
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != "ik" or len(parts[1]) != _PREFIX_LEN:
        return None
    digest = hash_token(raw)
    cached: IngestionKey | None = credential_cache.ingestion_keys.get(digest)
    if cached is not None:
        return cached
    key = IngestionKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    credential_cache.ingestion_keys.add(digest, key)
    return key


def revoke_key(*, key: IngestionKey, actor: Any, reason: str = "") -> IngestionKey:
    """Revoke ``key`` at once; revoking it again changes nothing (same revoked_at, one audit entry)."""
    with transaction.atomic():
        updated = IngestionKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit.record(
                action=AuditEntry.Action.REVOKE_KEY,
                deployment=key.deployment,
                actor=actor,
                reason=reason,
                details={"key": key.name, "key_id": key.pk, "prefix": key.prefix},
            )
    # This process stops accepting it at once (after the commit: a request in between could have
    # remembered it again); the others within AUTH_CACHE_SECONDS.
    credential_cache.ingestion_keys.forget(key.key_hash)
    key.refresh_from_db()
    return key
