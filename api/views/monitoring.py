"""Monitoring reads for the dashboard and external tools: the curves of one deployment.

Every list reads pre-aggregated rows (Windows, DriftMetrics, ErrorSamples) through an index that
starts with the deployment, filtered by a time range and paginated; related numbers come from
annotations, so a page of any size costs a fixed number of queries. Nothing here scans events,
except the memory's support figure, which reads the keys of the latest few dozen served events
through the (deployment, event_time) index.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch
from django.db.models import Count, F, Max, Min, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.errors import InvalidInput
from adaptive.ml.compensation import support_weight
from adaptive.ml.drift import DETECTOR_KINDS, STATE_FORMAT, DetectorBank
from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, ModelVersion, MonitorState, Window
from adaptive.runtime import compensation_config, decode_keys
from adaptive.services.serving import memory_support
from api import serializers_monitoring as s
from api.pagination import StrictLimitOffsetPagination
from api.serializers import ErrorSerializer

log = logging.getLogger(__name__)

SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The deployment's slug.")
ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
# The latest served events whose keys the memory's support figure looks up. An exact memory's
# lookup costs O(events x size): 256 events against 50k samples took 65 ms of CPU per dashboard poll
# (bench/dashboard.py); 64 keep the hit rate within a few points for a quarter of that.
SUPPORT_EVENTS = 64
STREAMS = ("raw", "compensated")


class ChartPagination(StrictLimitOffsetPagination):
    """The project's limit/offset pages, with room for a whole chart in one request."""

    max_limit = 5000


def _deployment(slug: str) -> Deployment:
    return get_object_or_404(Deployment, slug=slug)


def _params(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


def in_range(rows: QuerySet[Any], column: str, params: Mapping[str, Any]) -> QuerySet[Any]:
    """Rows with ``since <= column < until``, from a validated TimeRangeQuerySerializer (since < until)."""
    if params.get("since") is not None:
        rows = rows.filter(**{f"{column}__gte": params["since"]})
    if params.get("until") is not None:
        rows = rows.filter(**{f"{column}__lt": params["until"]})
    return rows


class _DeploymentRowsView(generics.ListAPIView):
    """A paginated list of one deployment's rows, filtered by a validated query string."""

    pagination_class = ChartPagination
    query_serializer_class: type[serializers.Serializer]

    def get_queryset(self) -> QuerySet[Any]:
        model = self.get_serializer_class().Meta.model
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return model.objects.none()
        deployment = _deployment(self.kwargs["slug"])
        return self.rows(deployment, _params(self.query_serializer_class, self.request))

    def rows(self, deployment: Deployment, params: dict[str, Any]) -> QuerySet[Any]:
        raise NotImplementedError


def _windows(deployment: Deployment, params: Mapping[str, Any]) -> QuerySet[Window]:
    # Uses the (deployment, end) index; the version number is joined, not loaded as an object
    # (a ModelVersion row carries its training profile, far larger than a window).
    rows = in_range(Window.objects.filter(deployment=deployment), "end", params)
    if params.get("version") is not None:
        rows = rows.filter(version__number=params["version"])
    order = ("end", "id") if params.get("order", "asc") == "asc" else ("-end", "-id")
    return rows.annotate(version_number=F("version__number")).order_by(*order)


@extend_schema(
    summary="Adaptation curve: windows",
    description=(
        "Closed monitoring windows, base vs compensated metrics, counts, memory size and revision, and "
        "detector signals, ordered by `end` (oldest first unless `order=desc`). Pages of up to 5000 rows."
    ),
    parameters=[SLUG, s.WindowQuerySerializer],
    responses={200: s.WindowSerializer(many=True), **ERRORS},
)
class WindowListView(_DeploymentRowsView):
    serializer_class = s.WindowSerializer
    query_serializer_class = s.WindowQuerySerializer

    def rows(self, deployment: Deployment, params: dict[str, Any]) -> QuerySet[Window]:
        return _windows(deployment, params)


@extend_schema(
    summary="One window with its drift metrics",
    parameters=[SLUG, OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Window id.")],
    responses={200: s.WindowDetailSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
)
class WindowDetailView(generics.RetrieveAPIView):
    serializer_class = s.WindowDetailSerializer

    def get_object(self) -> Window:
        deployment = _deployment(self.kwargs["slug"])
        rows = (
            Window.objects.filter(deployment=deployment)
            .annotate(version_number=F("version__number"))
            .prefetch_related(
                Prefetch("drift_metrics", queryset=DriftMetric.objects.order_by("column_kind", "column", "method"))
            )
        )
        window: Window = get_object_or_404(rows, pk=self.kwargs["id"])
        return window


@extend_schema(
    summary="Drift metrics over time",
    description=(
        "One row per (window, column, test), with the window's start and end: the cells of a columns x windows "
        "grid, ordered by window end, then column. The time range applies to the window's end."
    ),
    parameters=[SLUG, s.DriftQuerySerializer],
    responses={200: s.DriftRowSerializer(many=True), **ERRORS},
)
class DriftListView(_DeploymentRowsView):
    serializer_class = s.DriftRowSerializer
    query_serializer_class = s.DriftQuerySerializer

    def rows(self, deployment: Deployment, params: dict[str, Any]) -> QuerySet[DriftMetric]:
        # The window range comes from the (deployment, end) index; the metrics of each window from
        # the (window, column, method) unique index.
        rows = in_range(DriftMetric.objects.filter(window__deployment=deployment), "window__end", params)
        if params.get("version") is not None:
            rows = rows.filter(window__version__number=params["version"])
        if params.get("column"):
            rows = rows.filter(column__in=params["column"])
        if params.get("column_kind"):
            rows = rows.filter(column_kind=params["column_kind"])
        if params.get("level"):
            rows = rows.filter(level__in=sorted(params["level"]))
        if params.get("method"):
            rows = rows.filter(method=params["method"])
        ascending = params.get("order", "asc") == "asc"
        order = ("window__end", "window_id") if ascending else ("-window__end", "-window_id")
        return rows.annotate(
            window_start=F("window__start"), window_end=F("window__end"), version_number=F("window__version__number")
        ).order_by(*order, "column", "method")


@extend_schema(
    summary="Detector signal timeline",
    description="What the streaming detectors said in each window (see `detector_signals` of the windows).",
    parameters=[SLUG, s.WindowQuerySerializer],
    responses={200: s.DetectorSignalRowSerializer(many=True), **ERRORS},
)
class DetectorSignalListView(_DeploymentRowsView):
    serializer_class = s.DetectorSignalRowSerializer
    query_serializer_class = s.WindowQuerySerializer

    def rows(self, deployment: Deployment, params: dict[str, Any]) -> QuerySet[Window]:
        return _windows(deployment, params).only("id", "version", "start", "end", "n_labeled", "detector_signals")


@extend_schema(
    summary="Error memory samples",
    description=(
        "The persisted error memory, newest first: label, base score, the revision that wrote each sample "
        "and whether it is still active (not evicted). Key vectors are never returned."
    ),
    parameters=[SLUG, s.SampleQuerySerializer],
    responses={200: s.ErrorSampleSerializer(many=True), **ERRORS},
)
class ErrorSampleListView(_DeploymentRowsView):
    serializer_class = s.ErrorSampleSerializer
    query_serializer_class = s.SampleQuerySerializer

    def rows(self, deployment: Deployment, params: dict[str, Any]) -> QuerySet[ErrorSample]:
        rows = in_range(ErrorSample.objects.filter(deployment=deployment), "written_at", params)
        if params.get("version") is not None:
            rows = rows.filter(version__number=params["version"])
        if params.get("active") is not None:
            rows = rows.filter(active=params["active"])
        if params.get("label") is not None:
            rows = rows.filter(label=params["label"])
        # Revisions grow with every write, so (deployment, revision) descending is newest first and
        # has an index; the key bytes stay in the database.
        return (
            rows.defer("key")
            .annotate(event_external_id=F("event__external_id"), version_number=F("version__number"))
            .order_by("-revision", "-id")
        )


# --- current state: detectors and memory ------------------------------------------------------------


@dataclass(frozen=True)
class _VersionRef:
    """Whose detectors or memory: a version of a hosted deployment, or None for an external one."""

    id: int | None
    number: int | None
    live: bool
    key_mean_length: int | None = None


def _version_ref(deployment: Deployment, number: int | None) -> _VersionRef:
    if deployment.serving == Deployment.Serving.EXTERNAL:
        if number is not None:
            raise InvalidInput("version", "an external deployment has a single memory and no versions")
        return _VersionRef(id=None, number=None, live=True, key_mean_length=deployment.key_dim)
    versions = ModelVersion.objects.filter(deployment=deployment)
    if number is None:
        if deployment.live_version_id is None:
            return _VersionRef(id=None, number=None, live=True)
        versions = versions.filter(pk=deployment.live_version_id)
    else:
        versions = versions.filter(number=number)
    # Only what is needed: a version row also holds its training profile.
    found = versions.values("id", "number", "key_mean").first()
    if found is None:
        raise InvalidInput("version", f"deployment {deployment.slug} has no version {number}")
    key_mean = found["key_mean"]
    return _VersionRef(
        id=found["id"],
        number=found["number"],
        live=found["id"] == deployment.live_version_id,
        key_mean_length=len(key_mean) if key_mean else None,
    )


def summarise_detectors(detectors: Any) -> list[dict[str, Any]]:
    """Per error stream, what each detector of the saved state says, without the stored errors.

    A stream's state is one DetectorBank state, or several by bank name (the monitoring service
    keeps detectors that take different inputs or histories in separate banks). Everything but
    DDM's warning zone is in the saved state as plain values. The warning zone is not, so the DDM
    detector alone is rebuilt (a replay of its stored errors, a few milliseconds per stream).
    """
    if not isinstance(detectors, Mapping):
        return []
    names = [name for name in STREAMS if name in detectors]
    names += sorted(name for name in detectors if name not in STREAMS)
    # An empty state is a stream whose detectors have taken nothing yet: nothing to say about it.
    return [_summarise_stream(name, detectors[name]) for name in names if detectors[name]]


def _summarise_stream(stream: str, state: Any) -> dict[str, Any]:
    try:
        banks = [state] if "format" in state else [state[name] for name in sorted(state)]
        summaries = [summary for bank in banks for summary in _summarise_bank(bank)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # The monitoring worker wrote something this reader does not understand; say so in the
        # response rather than fail the whole dashboard panel.
        log.warning("unreadable detector state for stream %s: %r", stream, exc)
        return {"stream": stream, "drift": False, "warning": False, "detectors": [], "error": f"unreadable: {exc!r}"}
    order = {kind: i for i, kind in enumerate(DETECTOR_KINDS)}
    summaries.sort(key=lambda d: (order.get(d["detector"], len(order)), d["detector"]))
    return {
        "stream": stream,
        "drift": any(d["drift"] for d in summaries),
        "warning": any(d["warning"] for d in summaries),
        "detectors": summaries,
    }


def _summarise_bank(bank: Mapping[str, Any]) -> list[dict[str, Any]]:
    if bank.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown detector state format {bank.get('format')!r}")
    history = int(bank["history"])
    entries = bank["detectors"]
    warnings = _ddm_warning(bank) if "ddm" in entries else {}
    return [_summarise_detector(kind, entry, history, warnings.get(kind)) for kind, entry in entries.items()]


def _ddm_warning(bank: Mapping[str, Any]) -> dict[str, bool]:
    ddm_only = DetectorBank.from_state({**bank, "detectors": {"ddm": bank["detectors"]["ddm"]}})
    return {"ddm": ddm_only.detectors["ddm"].warning_detected}


def _summarise_detector(kind: str, entry: Mapping[str, Any], history: int, warning: bool | None) -> dict[str, Any]:
    n_seen = int(entry["n_seen"])
    last = entry["last_detection_at"]
    since_reset = int(entry["since_reset"])
    return {
        "detector": kind,
        "params": dict(entry["params"]),
        "n_seen": n_seen,
        "n_detections": int(entry["n_detections"]),
        "last_detection_at": last,
        "since_last_detection": None if last is None else n_seen - 1 - int(last),
        "drift": bool(entry["drift_detected"]),
        "warning": warning,
        "history": history,
        "stored": int(entry["stream_length"]),
        # KSWIN's state keeps its sampler, Page-Hinkley's and DDM's their own numbers: exact at any
        # length (adaptive.ml.drift.StreamDetector.restore_is_exact); ADWIN's only within its history.
        "restore_exact": since_reset <= history or "sampler" in entry or "native" in entry,
    }


class DetectorStateView(APIView):
    @extend_schema(
        summary="Streaming detector state",
        description=(
            "The detectors on the raw and compensated error streams of the live version (or of `version`): "
            "errors seen, detections, the position of the last one, and the current drift and warning flags. "
            "Drift on the compensated stream means compensation no longer keeps up: the retrain signal."
        ),
        parameters=[SLUG, s.VersionQuerySerializer],
        responses={200: s.DetectorStateSerializer, **ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        ref = _version_ref(deployment, _params(s.VersionQuerySerializer, request).get("version"))
        state = None
        if ref.id is not None or deployment.serving == Deployment.Serving.EXTERNAL:
            state = (
                MonitorState.objects.filter(deployment=deployment, version_id=ref.id)
                .only("detectors", "updated_at")
                .first()
            )
        body = {
            "version": ref.number,
            "live": ref.live,
            "updated_at": state.updated_at if state else None,
            "streams": summarise_detectors(state.detectors) if state else [],
        }
        return Response(s.DetectorStateSerializer(body).data)


class MemoryStatsView(APIView):
    @extend_schema(
        summary="Error memory statistics",
        description=(
            "Settings, revision and epoch of the error memory, its size (active samples), labels waiting to "
            "be written into it, the age of its samples and their label balance. For the live memory, "
            f"`support` says how much evidence it holds near the latest {SUPPORT_EVENTS} served events."
        ),
        parameters=[SLUG, s.VersionQuerySerializer],
        responses={200: s.MemoryStatsSerializer, **ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        ref = _version_ref(deployment, _params(s.VersionQuerySerializer, request).get("version"))
        hosted_without_version = ref.id is None and deployment.serving == Deployment.Serving.HOSTED
        samples = ErrorSample.objects.filter(deployment=deployment, version_id=ref.id, active=True)
        # One grouped read of the active samples (the (version, active, revision) index).
        groups = (
            []
            if hosted_without_version
            else list(
                samples.order_by()
                .values("label")
                .annotate(count=Count("id"), oldest=Min("written_at"), newest=Max("written_at"))
            )
        )
        size = sum(g["count"] for g in groups)
        key_dim = ref.key_mean_length
        if key_dim is None and size:
            key = next(iter(samples.order_by().values_list("key", flat=True)[:1]), None)
            key_dim = len(key) // 4 if key is not None else None
        pending = Event.objects.filter(
            deployment=deployment, label__isnull=False, memory_revision__isnull=True, key__isnull=False
        ).count()
        support = _support(deployment, ref) if ref.live and not hosted_without_version else None
        body = {
            "version": ref.number,
            "live": ref.live,
            "memory_kind": deployment.memory_kind,
            "compensation_enabled": deployment.compensation_enabled,
            "capacity": deployment.memory_capacity,
            "k": deployment.memory_k,
            "compensation_lambda": deployment.compensation_lambda,
            "compensation_gamma": deployment.compensation_gamma,
            "compensation_tau": deployment.compensation_tau,
            "key_dim": key_dim,
            "revision": deployment.memory_revision,
            "epoch": deployment.memory_epoch,
            "size": size,
            "pending_labels": pending,
            "oldest_sample_at": _extreme((g["oldest"] for g in groups), min),
            "newest_sample_at": _extreme((g["newest"] for g in groups), max),
            "label_balance": _label_balance(deployment, groups, size),
            "support": support,
        }
        return Response(s.MemoryStatsSerializer(body).data)


def _extreme(values: Any, pick: Any) -> datetime | None:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def _label_balance(deployment: Deployment, groups: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    classes = list(deployment.classes or [])
    return [
        {
            "label": g["label"],
            "name": classes[g["label"]] if 0 <= g["label"] < len(classes) else str(g["label"]),
            "count": g["count"],
            "share": g["count"] / size,
        }
        for g in sorted(groups, key=lambda g: g["label"])
    ]


def _support(deployment: Deployment, ref: _VersionRef) -> dict[str, Any]:
    """The live memory's support for the keys of the latest served events (read in this process)."""
    # bytes on SQLite, memoryview on PostgreSQL
    blobs = [
        bytes(blob)
        for blob in Event.objects.filter(deployment=deployment, version_id=ref.id, key__isnull=False)
        .order_by("-event_time")
        .values_list("key", flat=True)[:SUPPORT_EVENTS]
        if blob is not None
    ]
    if not blobs:
        return {"events": 0, "hit_rate": None, "mean_support": None, "mean_weight": None}
    dim = len(blobs[0]) // 4
    keys = decode_keys([b for b in blobs if len(b) == dim * 4], dim)
    support = memory_support(deployment, keys, ref.id).float()
    weight = support_weight(support, compensation_config(deployment).shrink)
    return {
        "events": int(keys.shape[0]),
        "hit_rate": float((support > 0).to(torch.float32).mean()),
        "mean_support": float(support.mean()),
        "mean_weight": float(weight.mean()),
    }
