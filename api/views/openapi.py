"""OpenAPI parts the views share: the deployment's slug in the path and the error answers."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from api.serializers import ErrorSerializer

SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The deployment's slug.")
READ_ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
ACTION_ERRORS = {**READ_ERRORS, 409: ErrorSerializer}
DETAIL_ERRORS = {403: ErrorSerializer, 404: ErrorSerializer}


def path_id(description: str) -> OpenApiParameter:
    """An integer ``id`` in the path (a window, a flip report, a job, a key)."""
    return OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description=description)
