"""Pause, resume and reset memory over REST: an operator's controls over adaptation.

Each is one service call (adaptive.services.releases) with a reason. Pausing a paused deployment
and resuming an active one change nothing (no audit entry); a repeated reset clears 0 samples.
"""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.models import Deployment
from adaptive.selectors.deployments import deployment_state, get_deployment
from adaptive.services import releases
from api import serializers_actions as s
from api.permissions import IsOperatorForWrites
from api.serializers_fields import validated
from api.views.openapi import ACTION_ERRORS, SLUG
from api.views.timing import ms_since

STATE_EXAMPLE = {
    "deployment": "flights",
    "status": "paused",
    "live_version": 3,
    "memory_revision": 18211,
    "took_ms": 3.1,
}


def _state_answer(deployment: Deployment, took_ms: float, **extra: Any) -> dict[str, Any]:
    return {**deployment_state(deployment), **extra, "took_ms": took_ms}


class _PauseView(APIView):
    permission_classes = [IsOperatorForWrites]
    paused: bool
    body_serializer: type[serializers.Serializer]

    def post(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        body = validated(self.body_serializer, request.data)
        started = time.perf_counter()
        releases.set_paused(deployment=deployment, paused=self.paused, actor=request.user, reason=body["reason"])
        return Response(_state_answer(deployment, ms_since(started)))


@extend_schema(
    summary="Pause adaptation (operators)",
    description=(
        "Serving goes on with the memory as it is; labels are stored and wait, and no window closes, until "
        "the deployment is resumed. Pausing a paused deployment changes nothing (no audit entry)."
    ),
    parameters=[SLUG],
    request=s.RequiredReasonSerializer,
    responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
    examples=[
        OpenApiExample("Pause", value={"reason": "label pipeline incident"}, request_only=True),
        OpenApiExample("Paused", value=STATE_EXAMPLE, response_only=True),
    ],
)
class PauseView(_PauseView):
    paused = True
    body_serializer = s.RequiredReasonSerializer


@extend_schema(
    summary="Resume adaptation (operators)",
    description=(
        "The labels that arrived while paused go into the memory on the next compensation update. Resuming an "
        "active deployment changes nothing. The reason is optional."
    ),
    parameters=[SLUG],
    request=s.OptionalReasonSerializer,
    responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
    examples=[
        OpenApiExample("Resume", value={"reason": "incident over"}, request_only=True),
        OpenApiExample("Resumed", value={**STATE_EXAMPLE, "status": "active"}, response_only=True),
    ],
)
class ResumeView(_PauseView):
    paused = False
    body_serializer = s.OptionalReasonSerializer


class ResetMemoryView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Reset the live version's error memory (operators)",
        description=(
            "Every sample of the live version's memory becomes inactive (rows are kept for the record) and "
            "serving processes start from an empty memory on their next request: scores are the base model's "
            "until new labels arrive. Answers how many samples were cleared; a repeat clears 0."
        ),
        parameters=[SLUG],
        request=s.RequiredReasonSerializer,
        responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("Reset", value={"reason": "mislabeled batch from the CRM export"}, request_only=True),
            OpenApiExample(
                "Reset done",
                value={**STATE_EXAMPLE, "status": "active", "memory_revision": 18212, "cleared": 50000},
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        body = validated(s.RequiredReasonSerializer, request.data)
        started = time.perf_counter()
        cleared = releases.reset_memory(deployment=deployment, actor=request.user, reason=body["reason"])
        return Response(_state_answer(deployment, ms_since(started), cleared=cleared))
