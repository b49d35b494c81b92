"""Monitoring reads for the dashboard and external tools: the curves and current state of one deployment.

The rows and figures come from adaptive.selectors.monitoring; the lists are filtered by api.filters
and paginated in pages of up to 5000 rows (a whole chart in one request).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.models import Deployment, DriftMetric, ErrorSample, Window
from adaptive.selectors import monitoring as selected
from adaptive.selectors.deployments import get_deployment
from api import filters
from api import serializers_monitoring as s
from api.pagination import ChartPagination
from api.serializers_fields import validated
from api.views.openapi import DETAIL_ERRORS, READ_ERRORS, SLUG, path_id


class _DeploymentRowsView(generics.ListAPIView):
    """A paginated, filtered list of one deployment's rows."""

    pagination_class = ChartPagination

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return self.get_serializer_class().Meta.model.objects.none()
        return self.rows(get_deployment(self.kwargs["slug"]))

    def rows(self, deployment: Deployment) -> QuerySet[Any]:
        raise NotImplementedError


@extend_schema(
    summary="Adaptation curve: windows",
    description=(
        "Closed monitoring windows, base vs compensated metrics, counts, memory size and revision, detector "
        "signals, the calibrated drift status, the retrain trigger's CUSUM, the alarm timeline (`alarms`) and "
        "label-free estimates of AUC and accuracy, ordered by `end` (oldest first unless `order=desc`). Pages "
        "of up to 5000 rows."
    ),
    parameters=[SLUG],
    responses={200: s.WindowSerializer(many=True), **READ_ERRORS},
)
class WindowListView(_DeploymentRowsView):
    serializer_class = s.WindowSerializer
    filterset_class = filters.WindowFilter

    def rows(self, deployment: Deployment) -> QuerySet[Window]:
        return selected.windows(deployment)


@extend_schema(
    summary="One window with its drift metrics",
    description=(
        "A window's metrics, calibrated drift status, retrain-trigger CUSUM, alarm timeline and label-free "
        "estimates, and every drift test of the window with the reference and current distributions it "
        "compared (`histogram`): the drill-down behind a cell of the drift grid."
    ),
    parameters=[SLUG, path_id("Window id.")],
    responses={200: s.WindowDetailSerializer, **DETAIL_ERRORS},
)
class WindowDetailView(generics.RetrieveAPIView):
    serializer_class = s.WindowDetailSerializer

    def get_object(self) -> Window:
        return selected.get_window(get_deployment(self.kwargs["slug"]), self.kwargs["id"])


@extend_schema(
    summary="Drift metrics over time",
    description=(
        "One row per (window, column, test), with the window's start and end: the cells of a columns x windows "
        "grid, ordered by window end, then column. Each row has the effect size, the calibrated threshold and "
        "p-value, the band, the severity (statistic / threshold), the column's importance and its PSI; the "
        "histograms are left out to keep the grid small (the window detail, `.../windows/{id}`, has them). "
        "The time range applies to the window's end."
    ),
    parameters=[SLUG],
    responses={200: s.DriftRowSerializer(many=True), **READ_ERRORS},
)
class DriftListView(_DeploymentRowsView):
    serializer_class = s.DriftRowSerializer
    filterset_class = filters.DriftFilter

    def rows(self, deployment: Deployment) -> QuerySet[DriftMetric]:
        # The histograms (about 60 numbers a row) stay in the database: the grid shows one number a cell.
        return selected.drift_metrics(deployment).defer("histogram")


@extend_schema(
    summary="Detector signal timeline",
    description="What the streaming detectors said in each window (see `detector_signals` of the windows).",
    parameters=[SLUG],
    responses={200: s.DetectorSignalRowSerializer(many=True), **READ_ERRORS},
)
class DetectorSignalListView(_DeploymentRowsView):
    serializer_class = s.DetectorSignalRowSerializer
    filterset_class = filters.WindowFilter

    def rows(self, deployment: Deployment) -> QuerySet[Window]:
        return selected.detector_signals(deployment)


@extend_schema(
    summary="Error memory samples",
    description=(
        "The persisted error memory, newest first: label, base score, the revision that wrote each sample "
        "and whether it is still active (not evicted). Key vectors are never returned."
    ),
    parameters=[SLUG],
    responses={200: s.ErrorSampleSerializer(many=True), **READ_ERRORS},
)
class ErrorSampleListView(_DeploymentRowsView):
    serializer_class = s.ErrorSampleSerializer
    filterset_class = filters.ErrorSampleFilter

    def rows(self, deployment: Deployment) -> QuerySet[ErrorSample]:
        return selected.error_samples(deployment)


class DetectorStateView(APIView):
    @extend_schema(
        summary="Streaming detector state",
        description=(
            "The detectors on the raw and compensated error streams of the live version (or of `version`): "
            "errors seen, detections, the position of the last one, and the current drift and warning flags. "
            "Drift on the compensated stream means compensation no longer keeps up: the retrain signal."
        ),
        parameters=[SLUG, s.VersionQuerySerializer],
        responses={200: s.DetectorStateSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        version = validated(s.VersionQuerySerializer, request.query_params).get("version")
        return Response(s.DetectorStateSerializer(selected.detector_state(deployment, version)).data)


class MemoryStatsView(APIView):
    @extend_schema(
        summary="Error memory statistics",
        description=(
            "Settings, revision and epoch of the error memory, its size (active samples), labels waiting to "
            "be written into it, the age of its samples and their label balance. For the live memory, "
            f"`support` says how much evidence it holds near the latest {selected.SUPPORT_EVENTS} served events."
        ),
        parameters=[SLUG, s.VersionQuerySerializer],
        responses={200: s.MemoryStatsSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        deployment = get_deployment(slug)
        version = validated(s.VersionQuerySerializer, request.query_params).get("version")
        return Response(s.MemoryStatsSerializer(selected.memory_stats(deployment, version)).data)
