"""The API's credentials.

Ingestion keys: ``Authorization: Key <key>``, scoped to one deployment (predict + feedback only).
Users' API tokens: ``Authorization: Token <token>``, hashed, with an optional expiry; revocable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from adaptive.services import tokens
from adaptive.services.keys import find_active_key


def credential(request: Request, keyword: str, noun: str) -> str | None:
    """The secret of an ``Authorization: <keyword> <secret>`` header; None when the header is for
    another scheme (or absent), AuthenticationFailed when it is for this one but malformed."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != keyword.lower().encode():
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed(f"Invalid {noun} header: expected '{keyword} <{noun}>'.")
    try:
        return str(header[1].decode("ascii"))
    except UnicodeError as exc:
        raise exceptions.AuthenticationFailed(f"Invalid {noun} header: not ASCII.") from exc


@dataclass(frozen=True)
class IngestionPrincipal:
    """Stands in for ``request.user`` when a request carries an ingestion key."""

    deployment_id: int
    key_id: int
    key_name: str
    is_authenticated: bool = True
    is_ingestion_key: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None

    @property
    def username(self) -> str:
        return f"key:{self.key_name}"


class IngestionKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Key"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = credential(request, self.keyword, "key")
        if raw is None:
            return None
        key = find_active_key(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked ingestion key.")
        principal = IngestionPrincipal(deployment_id=key.deployment_id, key_id=key.pk, key_name=key.name)
        return principal, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """A user's API token (adaptive.models.ApiToken). Revoked or expired tokens are a 401 that says so.

    Authentication failures are counted (and throttled) outside this class, by the API's middleware.
    """

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = credential(request, self.keyword, "token")
        if raw is None:
            return None
        token = tokens.find_usable(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"This token was revoked at {token.revoked_at.isoformat()}: create a new one."
            )
        if token.expires_at is not None and token.is_expired():
            raise exceptions.AuthenticationFailed(
                f"This token expired at {token.expires_at.isoformat()}: create a new one."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        tokens.remember(token)
        tokens.mark_used(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
