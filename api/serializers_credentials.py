"""Serializers of the credentials: users' API tokens (list, create, revoke) and the key revoke body.

Request serializers are strict (api.serializers_fields): an unknown field, a number where a string
is expected or a string where a number is, is a 400 naming the field, before any service runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from adaptive.models import ApiToken
from adaptive.services import tokens
from api.serializers_fields import QuerySerializer, StrictCharField, StrictIntegerField, StrictSerializer

REASON_MAX_LENGTH = 2000  # as the actions' reasons (api.serializers_actions)


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as its owner (or an admin) sees it: never the secret, which is not stored."""

    user = serializers.CharField(source="user.username", read_only=True)
    status = serializers.SerializerMethodField(help_text="active, expired or revoked (now)")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "user", "prefix", "status", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = fields

    def get_status(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        return "expired" if token.is_expired() else "active"


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="Shown once: only its hash is stored. Send it as `Authorization: Token <token>`."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=tokens.NAME_MAX_LENGTH, help_text="What the token is for (e.g. 'ci').")
    expires_in_days = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=tokens.MAX_EXPIRY.days,
        help_text="The token expires this many days from now. Give this or `expires_at`, or neither (no expiry).",
    )
    expires_at = serializers.DateTimeField(
        required=False, help_text="The token expires at this time (ISO 8601, in the future, at most ten years away)."
    )

    def validate_expires_at(self, value: Any) -> Any:
        now = timezone.now()
        if value <= now:
            raise serializers.ValidationError("must be in the future")
        if value > now + tokens.MAX_EXPIRY:
            raise serializers.ValidationError(f"at most {tokens.MAX_EXPIRY.days} days away")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        days = attrs.pop("expires_in_days", None)
        if days is not None:
            if "expires_at" in attrs:
                raise serializers.ValidationError({"expires_at": "give expires_in_days or expires_at, not both"})
            attrs["expires_at"] = timezone.now() + timedelta(days=days)
        return attrs


class TokenListQuerySerializer(QuerySerializer):
    user = StrictCharField(
        required=False, max_length=150, help_text="Admins: list this user's tokens instead of their own."
    )


class RevokeRequestSerializer(StrictSerializer):
    reason = StrictCharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=REASON_MAX_LENGTH,
        help_text="Why: stored in the audit log.",
    )
