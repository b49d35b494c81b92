"""Users' API tokens: create (the raw token is shown once), look up, revoke; only hashes are stored.

A token reads ``at_<prefix>_<secret>``: the prefix (10 hex digits, public) finds the row with one
indexed query and the SHA-256 of the whole token is compared in constant time, as for ingestion
keys (adaptive.services.keys). Tokens made by Django REST framework's ``authtoken`` before (40 hex
digits) were converted by migration 0006 and keep working: their prefix is their first 10 digits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Any, Final

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from adaptive import credential_cache
from adaptive.errors import Conflict, InvalidInput
from adaptive.models import ApiToken, AuditEntry
from adaptive.services import audit

TOKEN_TAG: Final = "at"
PREFIX_LEN: Final = 10
# last_used_at is written at most this often per token: a request costs no write in between.
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
MAX_EXPIRY: Final = timedelta(days=3650)
# Active tokens a user may hold at once: a stolen session cannot fill the table.
MAX_ACTIVE_PER_USER: Final = 100
NAME_MAX_LENGTH: Final = ApiToken._meta.get_field("name").max_length or 100

_LEGACY = re.compile(r"[0-9a-f]{40}")


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh (prefix, raw token): 10 random hex digits, then 32 random bytes (256 bits) in base64url."""
    prefix = secrets.token_hex(PREFIX_LEN // 2)
    return prefix, f"{TOKEN_TAG}_{prefix}_{secrets.token_urlsafe(32)}"


def prefix_of(raw: str) -> str | None:
    """The lookup prefix of a raw token, or None when it cannot be one of ours."""
    parts = raw.split("_", 2)
    if len(parts) == 3 and parts[0] == TOKEN_TAG and len(parts[1]) == PREFIX_LEN:
        return parts[1]
    if _LEGACY.fullmatch(raw):
        return raw[:PREFIX_LEN]
    return None


def create_token(*, user: Any, name: str, actor: Any, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for ``user`` and return it with the raw secret, which is not stored anywhere."""
    name = name.strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise InvalidInput("name", f"a name of 1 to {NAME_MAX_LENGTH} characters")
    now = timezone.now()
    if expires_at is not None and not now < expires_at <= now + MAX_EXPIRY:
        raise InvalidInput("expires_at", f"must be in the future and at most {MAX_EXPIRY.days} days away")
    prefix, raw = new_secret()
    with transaction.atomic():
        if ApiToken.objects.filter(user=user).active().count() >= MAX_ACTIVE_PER_USER:
            raise Conflict(f"{user.username!r} already holds {MAX_ACTIVE_PER_USER} active tokens: revoke one first")
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, key_hash=hash_token(raw), created_at=now, expires_at=expires_at
        )
        audit.record(
            action=AuditEntry.Action.CREATE_TOKEN,
            deployment=None,
            actor=actor,
            details=_details(token),
        )
    return token, raw


def find_token(raw: str) -> ApiToken | None:
    """The token (with its user) whose raw value is ``raw``, revoked or expired ones included.

    One indexed query; the caller decides what a revoked or expired token means (a 401 that says so).
    """
    prefix = prefix_of(raw)
    if prefix is None:
        return None
    digest = hash_token(raw)
    # Prefixes are random, so a second row with the same one is all but impossible; compare each anyway.
    for token in ApiToken.objects.filter(prefix=prefix).select_related("user"):
        if hmac.compare_digest(token.key_hash, digest):
            return token
    return None


def find_usable(raw: str) -> ApiToken | None:
    """The token of ``raw`` as the API authenticates it: remembered by this process for a few seconds
    once found valid (adaptive.credential_cache), looked up again otherwise. The caller still checks
    that it is not revoked or expired and its user is active: only a token that passed is remembered
    (``remember``), and expiry is checked on every request."""
    cached: ApiToken | None = credential_cache.api_tokens.get(hash_token(raw))
    return cached if cached is not None else find_token(raw)


def remember(token: ApiToken) -> None:
    """Remember a token that passed every check (see find_usable)."""
    credential_cache.api_tokens.add(token.key_hash, token)


def find_active(raw: str) -> ApiToken | None:
    """The token whose raw value is ``raw`` if it is neither revoked nor expired."""
    token = find_token(raw)
    if token is None or token.is_revoked or token.is_expired():
        return None
    return token


def mark_used(token: ApiToken, now: datetime | None = None) -> None:
    """Record that ``token`` was used, at most once per LAST_USED_RESOLUTION (a conditional update)."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def revoke_token(*, token: ApiToken, actor: Any, reason: str = "") -> ApiToken:
    """Revoke ``token`` at once; revoking it again changes nothing (same revoked_at, one audit entry)."""
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit.record(
                action=AuditEntry.Action.REVOKE_TOKEN,
                deployment=None,
                actor=actor,
                reason=reason,
                details=_details(token),
            )
    # This process stops accepting it at once (after the commit: a request in between could have
    # remembered it again); the others within AUTH_CACHE_SECONDS.
    credential_cache.api_tokens.forget(token.key_hash)
    token.refresh_from_db()
    return token


def _details(token: ApiToken) -> dict[str, Any]:
    return {
        "token": token.name,
        "token_id": token.pk,
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }
