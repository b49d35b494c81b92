"""Users' API tokens over REST: list your own, create one (the secret is shown once), revoke one.

Any signed-in user manages their own tokens, whatever their role (a user whose role was taken away
can still revoke what they hold); admins may also list and revoke anyone's. Ingestion keys may not.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.errors import InvalidInput
from adaptive.models import ApiToken
from adaptive.roles import Role, role_of
from adaptive.services import tokens
from api import serializers_credentials as s
from api.pagination import StrictLimitOffsetPagination
from api.serializers import ErrorSerializer

TOKEN_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The token's id.")
ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer}
TOKEN_EXAMPLE = {
    "id": 12,
    "name": "ci",
    "user": "alice",
    "prefix": "3f9a0c21d4",
    "status": "active",
    "created_at": "2024-06-01T14:10:00Z",
    "expires_at": "2024-08-30T14:10:00Z",
    "revoked_at": None,
    "last_used_at": None,
}


class IsSignedInUser(permissions.BasePermission):
    """A user (by session or token), whatever their role; not an ingestion key."""

    message = "Sign in as a user (session or API token): ingestion keys have no tokens."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(getattr(user, "is_authenticated", False)) and not getattr(user, "is_ingestion_key", False)


class TokenPagination(StrictLimitOffsetPagination):
    max_limit = 500


@extend_schema_view(
    get=extend_schema(
        summary="List your API tokens",
        description=(
            "Your tokens, newest first, revoked and expired ones included; never their secrets (only hashes "
            "are stored). Admins may pass `user` to list someone else's."
        ),
        parameters=[s.TokenListQuerySerializer],
        responses={200: s.ApiTokenSerializer(many=True), **ERRORS},
    ),
    post=extend_schema(
        summary="Create an API token",
        description=(
            "A token for yourself, with your role. The `token` in the answer is shown once: only its hash is "
            "stored. Optional expiry: `expires_in_days` (1 to 3650) or `expires_at`, not both; none means it "
            "never expires. At most 100 active tokens per user (409)."
        ),
        request=s.ApiTokenCreateSerializer,
        responses={201: s.ApiTokenCreatedSerializer, **ERRORS, 409: ErrorSerializer},
        examples=[
            OpenApiExample("Ninety days for CI", value={"name": "ci", "expires_in_days": 90}, request_only=True),
            OpenApiExample(
                "Created",
                value={**TOKEN_EXAMPLE, "token": "at_3f9a0c21d4_2mV...secret...Q"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    ),
)
class TokenListView(generics.ListCreateAPIView):
    permission_classes = [IsSignedInUser]
    pagination_class = TokenPagination
    serializer_class = s.ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        query = s.TokenListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        owner = self.request.user
        username = query.validated_data.get("user")
        if username and username != owner.get_username():
            if role_of(owner) < Role.ADMIN:
                raise PermissionDenied("Only admins may list another user's tokens.")
            owner = get_user_model().objects.filter(username=username).first()
            if owner is None:
                raise InvalidInput("user", f"no user {username!r}")
        return ApiToken.objects.filter(user=owner).select_related("user").order_by("-created_at", "-pk")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = s.ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, raw = tokens.create_token(
            user=request.user,
            name=body.validated_data["name"],
            expires_at=body.validated_data.get("expires_at"),
            actor=request.user,
        )
        answer = s.ApiTokenCreatedSerializer(token).data
        answer["token"] = raw
        return Response(answer, status=status.HTTP_201_CREATED)


class TokenRevokeView(APIView):
    permission_classes = [IsSignedInUser]

    @extend_schema(
        summary="Revoke an API token",
        description=(
            "Your own token, or anyone's for admins. It stops working at once (401 that says it was revoked). "
            "Revoking a revoked token answers it unchanged, with the same `revoked_at` (safe to retry). "
            "Another user's token is a 404 unless you are an admin."
        ),
        parameters=[TOKEN_ID],
        request=s.RevokeRequestSerializer,
        responses={200: s.ApiTokenSerializer, **ERRORS, 404: ErrorSerializer},
        examples=[OpenApiExample("Revoke", value={"reason": "laptop lost"}, request_only=True)],
    )
    def post(self, request: Request, id: int) -> Response:
        rows = ApiToken.objects.select_related("user")
        if role_of(request.user) < Role.ADMIN:
            rows = rows.filter(user=request.user)
        token = rows.filter(pk=id).first()
        if token is None:
            raise NotFound(f"no token {id} of yours")
        body = s.RevokeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token = tokens.revoke_token(token=token, actor=request.user, reason=body.validated_data["reason"])
        return Response(s.ApiTokenSerializer(token).data)
