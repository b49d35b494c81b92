"""Monitoring reads: windows, drift metrics, error samples, and the current detector and memory state.

Lists read pre-aggregated rows (Windows, DriftMetrics, ErrorSamples) through an index that starts
with the deployment; related numbers come from annotations, so a page of any size costs a fixed
number of queries. Nothing here scans events, except the memory's support figure, which reads the
keys of the latest few dozen served events through the (deployment, event_time) index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch
from django.db.models import Count, F, Max, Min, Prefetch, QuerySet
from django.http import Http404

from adaptive.errors import InvalidInput
from adaptive.ml.compensation import support_weight
from adaptive.ml.drift import DETECTOR_KINDS, STATE_FORMAT, DetectorBank
from adaptive.ml.gate import CompensationGate
from adaptive.models import (
    Deployment,
    DriftMetric,
    ErrorSample,
    Event,
    GateState,
    ModelVersion,
    MonitorState,
    Window,
)
from adaptive.runtime import compensation_config, decode_keys, served_strength
from adaptive.services.serving import memory_support

log = logging.getLogger(__name__)

# The latest served events whose keys the memory's support figure looks up. An exact memory's lookup
# costs O(events x size) on every dashboard poll; a few dozen keep the hit rate within a few points
# of a larger sample at a fraction of the cost (bench/dashboard.py measures it).
SUPPORT_EVENTS = 64
STREAMS = ("raw", "compensated")


# --- lists -------------------------------------------------------------------------------------------


def windows(deployment: Deployment) -> QuerySet[Window]:
    """Closed windows, oldest first, with ``version_number`` annotated.

    The (deployment, end) index; the version is joined, not loaded (a ModelVersion row carries its
    training profile, far larger than a window).
    """
    return (
        Window.objects.filter(deployment=deployment).annotate(version_number=F("version__number")).order_by("end", "id")
    )


def detector_signals(deployment: Deployment) -> QuerySet[Window]:
    """:func:`windows` with only what the detector timeline shows."""
    return windows(deployment).only("id", "version", "start", "end", "n_labeled", "detector_signals")


def get_window(deployment: Deployment, pk: int) -> Window:
    """One of the deployment's windows with its drift metrics; Http404 when it has none with this id."""
    window = (
        Window.objects.filter(deployment=deployment, pk=pk)
        .annotate(version_number=F("version__number"))
        .prefetch_related(
            Prefetch("drift_metrics", queryset=DriftMetric.objects.order_by("column_kind", "column", "method"))
        )
        .first()
    )
    if window is None:
        raise Http404(f"deployment {deployment.slug!r} has no window {pk}")
    return window


def drift_metrics(deployment: Deployment) -> QuerySet[DriftMetric]:
    """One row per (window, column, test), by window end then column, with the window's span annotated.

    The window range comes from the (deployment, end) index; the metrics of each window from the
    (window, column, method) unique index.
    """
    return (
        DriftMetric.objects.filter(window__deployment=deployment)
        .annotate(
            window_start=F("window__start"), window_end=F("window__end"), version_number=F("window__version__number")
        )
        .order_by("window__end", "window_id", "column", "method")
    )


def error_samples(deployment: Deployment) -> QuerySet[ErrorSample]:
    """The persisted error memory, newest first, without the key bytes.

    Revisions grow with every write, so (deployment, revision) descending is newest first and has
    an index; the key vectors stay in the database.
    """
    return (
        ErrorSample.objects.filter(deployment=deployment)
        .defer("key")
        .annotate(event_external_id=F("event__external_id"), version_number=F("version__number"))
        .order_by("-revision", "-id")
    )


# --- current state: detectors and memory --------------------------------------------------------------


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


def detector_state(deployment: Deployment, version: int | None) -> dict[str, Any]:
    """What the streaming detectors of the live version (or of version number ``version``) say now.

    InvalidInput naming ``version`` when the deployment has no such version, or is external.
    """
    ref = _version_ref(deployment, version)
    state = None
    if ref.id is not None or deployment.serving == Deployment.Serving.EXTERNAL:
        state = (
            MonitorState.objects.filter(deployment=deployment, version_id=ref.id)
            .only("detectors", "updated_at")
            .first()
        )
    return {
        "version": ref.number,
        "live": ref.live,
        "updated_at": state.updated_at if state else None,
        "streams": summarise_detectors(state.detectors) if state else [],
    }


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
        # answer rather than fail the whole dashboard panel.
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


def memory_stats(deployment: Deployment, version: int | None) -> dict[str, Any]:
    """Settings, size, age and label balance of the live memory (or of version number ``version``'s).

    For the live memory, ``support`` says how much evidence it holds near the latest
    :data:`SUPPORT_EVENTS` served events. InvalidInput naming ``version`` like :func:`detector_state`.
    """
    ref = _version_ref(deployment, version)
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
    return {
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
        "support": _support(deployment, ref.id) if ref.live and not hosted_without_version else None,
        "gate": gate_summary(deployment),
    }


def gate_summary(deployment: Deployment) -> dict[str, Any]:
    """The compensation gate: whether it is on, the strength served, and the evidence behind it.

    ``strength`` is what the evidence supports (adaptive.ml.gate.CompensationGate.strength);
    ``served_strength`` what predict serves now: that strength while the gate is on, 1 when it is
    off, 0 when compensation is off.
    """
    state = GateState.objects.filter(deployment=deployment).values_list("state", flat=True).first()
    gate = CompensationGate.from_state(state or {})
    return {
        "enabled": deployment.compensation_gate,
        "served_strength": served_strength(deployment),
        "half_life": gate.half_life,
        "z": gate.z,
        "min_support": gate.min_support,
        **gate.summary(),
    }


def _extreme(values: Iterable[datetime | None], pick: Any) -> datetime | None:
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


def _support(deployment: Deployment, version_id: int | None) -> dict[str, Any]:
    """The live memory's support for the keys of the latest served events (read in this process)."""
    # bytes on SQLite, memoryview on PostgreSQL
    blobs = [
        bytes(blob)
        for blob in Event.objects.filter(deployment=deployment, version_id=version_id, key__isnull=False)
        .order_by("-event_time")
        .values_list("key", flat=True)[:SUPPORT_EVENTS]
        if blob is not None
    ]
    if not blobs:
        return {"events": 0, "hit_rate": None, "mean_support": None, "mean_weight": None}
    dim = len(blobs[0]) // 4
    keys = decode_keys([b for b in blobs if len(b) == dim * 4], dim)
    support = memory_support(deployment, keys, version_id).float()
    weight = support_weight(support, compensation_config(deployment).shrink)
    return {
        "events": int(keys.shape[0]),
        "hit_rate": float((support > 0).to(torch.float32).mean()),
        "mean_support": float(support.mean()),
        "mean_weight": float(weight.mean()),
    }
