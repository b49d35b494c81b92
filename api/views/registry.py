"""Deployments, versions and ingestion keys: the model registry over REST."""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.errors import InvalidInput
from adaptive.models import Deployment, ModelVersion
from adaptive.selectors import registry as selected
from adaptive.selectors.deployments import get_deployment
from adaptive.services import deployments, keys, registry
from api import serializers as s
from api import serializers_credentials as sc
from api.permissions import IsAdminForWrites, IsOperatorForWrites

FLIGHTS_SCHEMA_EXAMPLE = {
    "slug": "flights",
    "name": "Flight delays",
    "task": "binary",
    "classes": ["on_time", "delayed"],
    "feature_schema": [
        {"name": "dep_delay", "type": "numeric"},
        {"name": "distance", "type": "numeric"},
        {"name": "carrier", "type": "categorical"},
        {"name": "origin", "type": "categorical"},
    ],
}


@extend_schema_view(
    get=extend_schema(summary="List deployments"),
    post=extend_schema(
        summary="Create a deployment (admins)",
        description="Idempotent: repeating a create with the same definition returns the existing deployment (200).",
        examples=[OpenApiExample("Flights", value=FLIGHTS_SCHEMA_EXAMPLE, request_only=True)],
        responses={
            201: s.DeploymentSerializer,
            200: s.DeploymentSerializer,
            400: s.ErrorSerializer,
            409: s.ErrorSerializer,
        },
    ),
)
class DeploymentListView(generics.ListCreateAPIView):
    serializer_class = s.DeploymentSerializer
    permission_classes = [IsAdminForWrites]

    def get_queryset(self) -> QuerySet[Deployment]:
        return Deployment.objects.visible().select_related("live_version")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment, created = registry.create_deployment(fields=serializer.validated_data, actor=request.user)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(deployment).data, status=code)


@extend_schema_view(
    get=extend_schema(summary="Deployment detail"),
    patch=extend_schema(
        summary="Change adaptation settings (operators)",
        description=(
            "Partial update of the adaptation settings only (compensation, memory, windows, drift, retrain "
            "policy, gates), with an optional `reason` for the audit log. Unknown or read-only fields are a 400. "
            "Serving picks the change up on the next request."
        ),
        request=s.DeploymentSettingsSerializer,
        responses={200: s.DeploymentSerializer, 400: s.ErrorSerializer},
        examples=[OpenApiExample("Switch compensation off", value={"compensation_enabled": False, "reason": "A/B"})],
    ),
)
class DeploymentDetailView(generics.RetrieveAPIView):
    serializer_class = s.DeploymentSerializer
    permission_classes = [IsOperatorForWrites]
    # For the schema (the slug's type); requests look the deployment up in get_object.
    queryset = Deployment.objects.all()
    lookup_field = "slug"

    def get_object(self) -> Deployment:
        return get_deployment(self.kwargs["slug"], with_live_version=True)

    def patch(self, request: Request, slug: str) -> Response:
        deployment = self.get_object()
        serializer = s.DeploymentSettingsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        reason = changes.pop("reason", "")
        updated = deployments.update_settings(deployment=deployment, changes=changes, actor=request.user, reason=reason)
        return Response(s.DeploymentSerializer(updated).data)


@extend_schema_view(get=extend_schema(summary="List a deployment's versions"))
class VersionListView(generics.ListAPIView):
    serializer_class = s.ModelVersionSerializer
    permission_classes = [IsOperatorForWrites]
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> QuerySet[ModelVersion]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return ModelVersion.objects.none()
        return selected.versions(get_deployment(self.kwargs["slug"]))

    @extend_schema(
        summary="Upload a version (operators)",
        description=(
            "Multipart upload of `weights` (safetensors) and `spec` (JSON). The weights are loaded into the "
            "named architecture and must match its shapes; nothing is ever unpickled. The first version of "
            "a deployment goes live; later ones are candidates. Re-uploading the same weights and spec "
            "returns the existing version (200)."
        ),
        request={"multipart/form-data": s.VersionUploadSerializer},
        responses={201: s.ModelVersionSerializer, 200: s.ModelVersionSerializer, 400: s.ErrorSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        upload = request.FILES.get("weights")
        if upload is None:
            raise InvalidInput("weights", "required: a safetensors file in the multipart field 'weights'")
        raw_spec = request.data.get("spec")
        if raw_spec is None:
            raise InvalidInput("spec", "required: a JSON document in the multipart field 'spec'")
        try:
            spec = orjson.loads(raw_spec.read() if hasattr(raw_spec, "read") else raw_spec)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("spec", f"not valid JSON: {exc}") from exc
        if upload.size is not None and upload.size > settings.MAX_WEIGHTS_BYTES:
            raise InvalidInput(
                "weights", f"file is {upload.size} bytes, over the limit of {settings.MAX_WEIGHTS_BYTES}"
            )
        version, created = registry.upload_version(
            deployment=deployment, spec=spec, weights=upload.read(), actor=request.user
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.ModelVersionSerializer(version).data, status=code)


@extend_schema_view(get=extend_schema(summary="Version detail"))
class VersionDetailView(generics.RetrieveAPIView):
    serializer_class = s.ModelVersionSerializer

    def get_object(self) -> ModelVersion:
        return selected.get_version(self.kwargs["slug"], self.kwargs["number"])


class IngestionKeyListView(APIView):
    permission_classes = [IsAdminForWrites]

    @extend_schema(summary="List a deployment's ingestion keys", responses=s.IngestionKeySerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        rows = selected.ingestion_keys(get_deployment(slug))
        return Response(s.IngestionKeySerializer(rows, many=True).data)

    @extend_schema(
        summary="Create an ingestion key (admins)",
        description="The key may only call predict and feedback of this deployment. It is shown once.",
        request=s.IngestionKeySerializer,
        responses={201: s.IngestionKeyCreatedSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        serializer = s.IngestionKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = keys.create_key(
            deployment=deployment,
            name=serializer.validated_data["name"],
            rate=serializer.validated_data.get("rate", ""),
            actor=request.user,
        )
        body = s.IngestionKeyCreatedSerializer(key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)


class IngestionKeyRevokeView(APIView):
    permission_classes = [IsAdminForWrites]

    @extend_schema(
        summary="Revoke an ingestion key (admins)",
        description=(
            "The key stops working at once: predict and feedback with it get a 401. Audited, with the optional "
            "`reason`. Revoking a revoked key answers it unchanged, with the same `revoked_at` (safe to retry)."
        ),
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The key's id.")],
        request=sc.RevokeRequestSerializer,
        responses={
            200: s.IngestionKeySerializer,
            400: s.ErrorSerializer,
            401: s.ErrorSerializer,
            403: s.ErrorSerializer,
            404: s.ErrorSerializer,
        },
        examples=[OpenApiExample("Revoke", value={"reason": "leaked in a log"}, request_only=True)],
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        key = selected.get_ingestion_key(slug, id)
        body = sc.RevokeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = keys.revoke_key(key=key, actor=request.user, reason=body.validated_data["reason"])
        return Response(s.IngestionKeySerializer(key).data)
