"""A deployment with calibrated alarms for the browser tests, its monitoring rows written directly.

The monitoring service fills these fields when a window closes; here they are set by hand, so that
the page's drawing of them is tested on known values whatever the service computes. v1 is uploaded
through the registry and goes live; six hourly windows carry drift status, loss CUSUM, alarms,
label-free estimates and drift tests with severity, importance and histograms; and traffic served
after the last window waits for its labels, for the pending estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from adaptive.models import Deployment, DriftMetric, Event, ModelVersion, Window
from tests.e2e.seed import create_flights_deployment
from tests.factories import DriftMetricFactory, WindowFactory, make_rows

N_WINDOWS = 6
WINDOW_EVENTS = 100
# Served after the last window: two full window-sized chunks, and a third still filling (left out).
N_PENDING = 2 * WINDOW_EVENTS + 40
IMPORTANCE = {"dep_delay": 0.6, "distance": 0.3, "carrier": 0.1}
# Severity per column in the newest window. Sorted by severity alone: carrier, distance, dep_delay,
# prediction; by severity x importance (prediction has none, so weight 1): distance (0.75), carrier
# (0.5), dep_delay (0.48), prediction (0.3).
NEWEST_SEVERITY = {"dep_delay": 0.8, "distance": 2.5, "carrier": 5.0, "prediction": 0.3}
ORDER_BY_PRIORITY = ["distance", "carrier", "dep_delay", "prediction"]
THRESHOLD = {"dep_delay": 4.0, "distance": 120.0, "carrier": 0.1, "prediction": 0.05}
CARRIER_HISTOGRAM = {
    "kind": "categorical",
    "categories": ["AA", "UA", "DL", "B6"],
    "reference": [0.25, 0.25, 0.25, 0.25],
    "current": [0.7, 0.1, 0.1, 0.1],
}
CALIBRATION = {"x": [0.1, 0.4, 0.6, 0.9], "y": [0.05, 0.3, 0.7, 0.95]}
NEWEST_ALARMS: list[dict[str, Any]] = [
    {
        "kind": "detector",
        "level": "info",
        "calibrated": False,
        "reason": "ADWIN flagged a change in the raw error stream",
    },
    {
        "kind": "drift_status",
        "level": "drift",
        "calibrated": True,
        "reason": "carrier and distance beyond their calibrated thresholds (2 of 4 columns)",
    },
    {
        "kind": "retrain_trigger",
        "level": "warn",
        "calibrated": True,
        "reason": "compensated loss CUSUM at 3.4 of its 5.0 limit",
    },
]


@dataclass(frozen=True)
class AlarmsSeeded:
    deployment: Deployment
    version: ModelVersion
    windows: list[Window]  # oldest first


def _numeric_histogram(shift: float) -> dict[str, Any]:
    edges = np.linspace(-60.0, 140.0, 21)
    centres = (edges[:-1] + edges[1:]) / 2
    reference = np.exp(-(((centres - 10.0) / 30.0) ** 2))
    current = np.exp(-(((centres - 10.0 - shift) / 30.0) ** 2))
    return {
        "kind": "numeric",
        "edges": [round(float(e), 3) for e in edges],
        "reference": [round(float(r), 5) for r in reference / reference.sum()],
        "current": [round(float(c), 5) for c in current / current.sum()],
    }


def _severity(column: str, i: int) -> float:
    """Calm windows first, the newest ones drifting; the newest at NEWEST_SEVERITY."""
    return NEWEST_SEVERITY[column] * (0.2 + 0.8 * i / (N_WINDOWS - 1))


def _level(severity: float) -> str:
    return DriftMetric.Level.DRIFT if severity >= 1 else DriftMetric.Level.WARN if severity >= 0.75 else "ok"


def _add_window(deployment: Deployment, start: datetime, i: int) -> Window:
    newest = i == N_WINDOWS - 1
    window = WindowFactory.create(
        deployment=deployment,
        start=start,
        n_labeled=WINDOW_EVENTS,
        n_events=WINDOW_EVENTS,
        base_auc=0.74 - 0.01 * i,
        compensated_auc=0.78 - 0.004 * i,
        estimated_base_auc=0.75 - 0.012 * i,
        estimated_compensated_auc=0.79 - 0.006 * i,
        estimated_base_accuracy=0.70 - 0.01 * i,
        estimated_compensated_accuracy=0.73 - 0.005 * i,
        drift_status="drift" if newest else "warn" if i == N_WINDOWS - 2 else "ok",
        loss_cusum=None if i == 0 else 0.7 * i,
        alarms=NEWEST_ALARMS
        if newest
        else [{"kind": "detector", "level": "info", "calibrated": False, "reason": f"KSWIN noted window {i}"}]
        if i == 1
        else [],
    )
    for column in ("dep_delay", "distance", "carrier", "prediction"):
        severity = _severity(column, i)
        threshold = THRESHOLD[column]
        DriftMetricFactory.create(
            window=window,
            column=column,
            column_kind=DriftMetric.ColumnKind.PREDICTION if column == "prediction" else DriftMetric.ColumnKind.FEATURE,
            method="jensenshannon" if column == "carrier" else "wasserstein",
            statistic=severity * threshold,
            threshold=threshold,
            p_value=round(0.5 / (1 + 10 * severity), 4),
            level=_level(severity),
            severity=severity,
            importance=IMPORTANCE.get(column),
            psi=round(0.1 * severity, 4),
            histogram=CARRIER_HISTOGRAM if column == "carrier" else _numeric_histogram(10.0 * severity),
        )
    return window


def _serve_pending(deployment: Deployment, after: datetime) -> None:
    rng = np.random.default_rng(7)
    base = rng.uniform(0.05, 0.95, N_PENDING)
    served = np.clip(base + rng.normal(0.0, 0.05, N_PENDING), 0.0, 1.0)
    features = make_rows(1)[0]
    Event.objects.bulk_create(
        Event(
            deployment=deployment,
            external_id=f"pending-{i}",
            event_time=after + timedelta(seconds=10 * i + 1),
            received_at=after + timedelta(seconds=10 * i + 1),
            features=features,
            version=deployment.live_version,
            base_score=float(base[i]),
            score=float(served[i]),
        )
        for i in range(N_PENDING)
    )


def seed_alarms(*, admin: Any, slug: str = "alarms") -> AlarmsSeeded:
    deployment, version = create_flights_deployment(slug=slug, admin=admin)
    ModelVersion.objects.filter(pk=version.pk).update(importance=IMPORTANCE, calibration=CALIBRATION)
    Deployment.objects.filter(pk=deployment.pk).update(window_events=WINDOW_EVENTS)
    deployment.refresh_from_db()
    first = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=N_WINDOWS + 2)
    windows = [_add_window(deployment, first + timedelta(hours=i), i) for i in range(N_WINDOWS)]
    _serve_pending(deployment, windows[-1].end)
    version.refresh_from_db()
    return AlarmsSeeded(deployment=deployment, version=version, windows=windows)
