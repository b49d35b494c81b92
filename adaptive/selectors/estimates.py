"""Performance before the labels: label-free estimates for the traffic that no window holds yet.

A window closes once ``window_events`` labels have come back, so the realised curve always ends
where the labels end. The served scores are there long before: cut into chunks the size of a
window, each chunk gets the confidence-based estimates of :mod:`adaptive.ml.cbpe` under the live
version's calibration, for the base and the compensated (served) scores. The dashboard draws them
beyond the last realised window as "estimated (no labels yet)".

Bounded: at most ``max_windows * window_events`` of the newest events are read (the
(deployment, event_time) index), three numbers each; features and keys stay in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from adaptive.ml import cbpe
from adaptive.models import Deployment, Event, ModelVersion, Task, Window

# The most pending windows one request estimates (the curve API's ``pending`` parameter).
MAX_PENDING_WINDOWS: Final = 20
# A chunk of fewer events is left out: the standard error of an AUC over fewer than about a hundred
# events is above 0.05, more than the differences the curve is there to show, and the newest chunk
# (still filling) would jump at every poll. Capped by window_events, so that tiny windows work.
MIN_CHUNK_EVENTS: Final = 100


def pending_estimates(deployment: Deployment, max_windows: int = 5) -> list[dict[str, Any]]:
    """Estimated AUC and accuracy per window-sized chunk of the events served after the last window.

    "After" is in event time: the latest window's ``end`` is the largest event time of any labeled
    event in a window, so every event after it is one whose label no window holds yet (labeled or
    not). Only events served by the live version are taken (its calibration describes its own
    scores, not an earlier version's), oldest first, in chunks of ``window_events``; a chunk of
    fewer than ``min(MIN_CHUNK_EVENTS, window_events)`` events is left out. Each row: ``start``,
    ``end`` (event times of its first and last events), ``n_events`` and the four
    ``estimated_{base,compensated}_{auc,accuracy}`` (None where undefined).

    Empty for a multiclass or external deployment, or one without a live version.
    """
    if (
        deployment.task != Task.BINARY
        or deployment.serving != Deployment.Serving.HOSTED
        or deployment.live_version_id is None
        or max_windows < 1
    ):
        return []
    # Only the two fields needed: a version row also carries its training profile.
    version = ModelVersion.objects.filter(pk=deployment.live_version_id).values("calibration", "threshold").first()
    if version is None:
        return []
    size = max(1, deployment.window_events)
    events = Event.objects.filter(deployment=deployment)
    latest_end = Window.objects.filter(deployment=deployment).order_by("-end").values_list("end", flat=True).first()
    if latest_end is not None:
        events = events.filter(event_time__gt=latest_end)
    # The newest first through the index, then back into event-time order. Events of another version
    # are read (so the bound holds whatever the mix) and skipped here.
    newest = events.order_by("-event_time", "-id").values_list("event_time", "base_score", "score", "version_id")[
        : max_windows * size
    ]
    served = [row[:3] for row in reversed(newest) if row[3] == deployment.live_version_id]
    smallest = min(MIN_CHUNK_EVENTS, size)
    return [
        _estimate_chunk(chunk, version["calibration"], version["threshold"])
        for chunk in (served[i : i + size] for i in range(0, len(served), size))
        if len(chunk) >= smallest
    ]


def _estimate_chunk(
    chunk: list[tuple[datetime, float, float]], calibration: dict[str, Any], threshold: float
) -> dict[str, Any]:
    times, base, compensated = zip(*chunk, strict=True)
    base_estimate = cbpe.estimate(calibration, base, threshold)
    compensated_estimate = cbpe.estimate(calibration, compensated, threshold)
    return {
        "start": times[0],
        "end": times[-1],
        "n_events": len(chunk),
        "estimated_base_auc": _plain(base_estimate["auc"]),
        "estimated_compensated_auc": _plain(compensated_estimate["auc"]),
        "estimated_base_accuracy": _plain(base_estimate["accuracy"]),
        "estimated_compensated_accuracy": _plain(compensated_estimate["accuracy"]),
    }


def _plain(value: float | None) -> float | None:
    # cbpe may hand back numpy floats, which the JSON encoders of the API refuse.
    return None if value is None else float(value)
