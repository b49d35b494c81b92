"""Predict, compensate and feedback: the ingestion hot path.

Bodies are parsed with orjson and validated by adaptive.services.ingest in one loop; responses
are written with orjson. Django REST framework still authenticates and authorizes the request,
but no serializer touches the rows.
"""

from __future__ import annotations

import json
import math

import orjson
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.views import APIView

from adaptive.errors import InvalidInput
from adaptive.models import Deployment
from adaptive.selectors.serving import serving_deployment
from adaptive.services import ingest
from api import serializers as s
from api.errors import json_response
from api.permissions import CanIngest, key_may_use
from api.throttling import IngestionKeyRateThrottle

PREDICT_EXAMPLE = {
    "rows": [
        {
            "id": "flight-2013-06-01-UA-1545",
            "ts": "2013-06-01T05:15:00Z",
            "features": {"dep_delay": 2.0, "distance": 1400.0, "carrier": "UA", "origin": "EWR"},
        }
    ]
}
COMPENSATE_EXAMPLE = {"rows": [{"id": "txn-8812", "score": 0.83, "key": [0.12, -0.4, 0.05, 0.31]}]}
FEEDBACK_EXAMPLE = {"labels": [{"id": "flight-2013-06-01-UA-1545", "label": "delayed"}]}


class IngestView(APIView):
    """The hot path's settings: ingestion keys or operators, the key's rate, JSON bodies."""

    permission_classes = [CanIngest]
    throttle_classes = [IngestionKeyRateThrottle]
    # Bodies are read with orjson from request.body; the parser only documents the media type.
    parser_classes = [JSONParser]


def _deployment_for(request: Request, slug: str) -> Deployment:
    """The deployment with its live version, read lean (adaptive.selectors.serving: one query on small
    columns); a key of another deployment is a 403."""
    deployment = serving_deployment(slug)
    if not key_may_use(request, deployment.pk):
        raise PermissionDenied("this ingestion key belongs to another deployment")
    return deployment


def _body(request: Request) -> object:
    """The JSON body. ``NaN`` tokens (not JSON, but what Python's json.dumps and pandas write for a
    missing value) are read as NaN: a nullable feature takes them as missing, anything else refuses
    them with a 400 naming the field. orjson refuses them, so such a body takes the slower stdlib
    parser; every other body stays on orjson."""
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(request.body, parse_constant=_nan_only)
        except (ValueError, RecursionError):
            raise InvalidInput("body", f"not valid JSON: {exc}") from exc


def _nan_only(token: str) -> float:
    """``NaN`` is a missing value; ``Infinity`` and ``-Infinity`` stay invalid JSON."""
    if token == "NaN":
        return math.nan
    raise ValueError(f"{token} is not a number JSON allows")


class PredictView(IngestView):
    @extend_schema(
        summary="Score a batch of rows and store them as events",
        description=(
            "All-or-nothing: a bad row fails the whole batch with a 400 naming the row index and field. "
            "Idempotent by id: an id seen before is answered with its stored prediction and not stored twice. "
            "Batch size is capped by MAX_BATCH_ROWS."
        ),
        request=s.PredictRequestSerializer,
        responses={200: s.PredictResponseSerializer, 400: s.ErrorSerializer, 409: s.ErrorSerializer},
        examples=[OpenApiExample("One flight", value=PREDICT_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        deployment = _deployment_for(request, slug)
        predictions = ingest.predict(deployment=deployment, payload=_body(request))
        return json_response({"predictions": predictions})


class FeedbackView(IngestView):
    @extend_schema(
        summary="Send labels for served events",
        description=(
            "Labels are class indexes or class names. Unknown ids and ids labeled before are listed, not "
            "errors, so a retried batch is harmless; the first label of an event wins."
        ),
        request=s.FeedbackRequestSerializer,
        responses={200: s.FeedbackResponseSerializer, 400: s.ErrorSerializer},
        examples=[OpenApiExample("One label", value=FEEDBACK_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        deployment = _deployment_for(request, slug)
        # Accepted labels queue the compensation update that moves them into the error memory.
        return json_response(ingest.record_feedback(deployment=deployment, payload=_body(request)))


class CompensateView(IngestView):
    @extend_schema(
        summary="Compensate scores of a model served elsewhere (external deployments)",
        description=(
            "Send your model's score (binary) or class probabilities (multiclass) and its key vector (last "
            "hidden layer, key_dim numbers) per row; get the compensated score back. Events are stored like "
            "predict's, so feedback works the same. All-or-nothing and idempotent by id."
        ),
        request=s.CompensateRequestSerializer,
        responses={200: s.PredictResponseSerializer, 400: s.ErrorSerializer, 409: s.ErrorSerializer},
        examples=[OpenApiExample("One row", value=COMPENSATE_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request, slug: str) -> HttpResponse:
        deployment = _deployment_for(request, slug)
        predictions = ingest.compensate_external(deployment=deployment, payload=_body(request))
        return json_response({"predictions": predictions})
