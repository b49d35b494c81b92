"""Reads behind the dashboard, open to any viewer: the overview, the adaptation curve, the audit log.

Each reads pre-aggregated rows through an index that starts with what it filters on; none scans
the event table (see adaptive.services.summary and adaptive.services.curves).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.models import AuditEntry
from adaptive.selectors.audit import audit_entries
from adaptive.selectors.deployments import get_deployment
from adaptive.selectors.estimates import MIN_CHUNK_EVENTS
from adaptive.services import curves, summary
from api import serializers_dashboard as s
from api.errors import json_response
from api.filters import AuditFilter
from api.serializers import ErrorSerializer
from api.serializers_fields import validated
from api.views.openapi import READ_ERRORS, SLUG


@extend_schema(
    summary="Overview of every deployment",
    description=(
        "Per deployment: live version, health (ok / warn / drift from the latest window's drift bands and "
        "detectors), events per minute over the last 5 minutes, the latest window's base and compensated "
        "AUC, the live memory's size and a 30-window AUC sparkline; and the queued or running jobs."
    ),
    responses={200: s.OverviewSerializer, 403: ErrorSerializer},
)
class OverviewView(APIView):
    def get(self, request: Request) -> Response:
        return Response(s.OverviewSerializer(summary.overview()).data)


@extend_schema(
    summary="Adaptation curve with markers",
    description=(
        "One entry per window in column arrays (oldest first): base and compensated AUC, log loss, accuracy "
        "and Brier score, their label-free estimates (AUC and accuracy, from the scores alone), the version "
        "that served it, labels and memory size; markers for retrains, promotions and rollbacks, each placed "
        "at the first window that closed after it; and `pending`: the label-free estimates of up to `pending` "
        "window-sized chunks of the traffic served after the last window (binary hosted deployments, live "
        f"version's events only, chunks of fewer than {MIN_CHUNK_EVENTS} events left out). `since`/`until` apply "
        "to the "
        "windows' `end`; with `until` there are no pending chunks."
    ),
    parameters=[SLUG, s.EstimatedCurveQuerySerializer],
    responses={200: s.EstimatedCurveSerializer, **READ_ERRORS},
)
class CurveView(APIView):
    def get(self, request: Request, slug: str) -> HttpResponse:
        deployment = get_deployment(slug)
        params = validated(s.EstimatedCurveQuerySerializer, request.query_params)
        curve = curves.adaptation_curve(
            deployment,
            since=params.get("since"),
            until=params.get("until"),
            limit=params["limit"],
            pending=params["pending"],
        )
        # orjson straight from the column arrays: DRF's field-by-field rendering of thousands of
        # windows would take most of the page's time budget (bench/dashboard.py measures it).
        return json_response(curve)


@extend_schema(
    summary="Audit log",
    description=(
        "Who (a user, 'policy' or 'system') did what to which deployment, from which version to which, and "
        "why; newest first, filterable by deployment, actor, action and time (`since`/`until` on `created_at`)."
    ),
    responses={200: s.AuditEntrySerializer(many=True), **READ_ERRORS},
    examples=[
        OpenApiExample(
            "A rollback",
            value={
                "id": 812,
                "created_at": "2024-06-01T14:05:09.120Z",
                "deployment": "flights",
                "actor": "alice",
                "action": "rollback",
                "action_label": "Roll back",
                "from_version": 4,
                "to_version": 3,
                "reason": "v4 flips too many on-time flights",
                "details": {"release": 42},
            },
            response_only=True,
        )
    ],
)
class AuditListView(generics.ListAPIView):
    serializer_class = s.AuditEntrySerializer
    filterset_class = AuditFilter

    def get_queryset(self) -> QuerySet[AuditEntry]:
        return audit_entries()
