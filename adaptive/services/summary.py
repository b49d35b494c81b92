"""What the overview shows per deployment: health, traffic, the latest window and a sparkline.

Reads only pre-aggregated rows (the latest windows, their drift rows, active jobs) and two counts
through indexes: events received in the last few minutes on (deployment, received_at), and the
live memory's active samples on (version, active, revision). Nothing scans the event table, so the
overview costs the same with a thousand events or a billion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from adaptive.models import Deployment, ErrorSample, Event, Job, Window

# Events per minute average over this span: long enough to be steady, short enough to be "now".
RATE_SPAN = timedelta(minutes=5)
# Windows drawn in an overview sparkline.
SPARKLINE_WINDOWS = 30


class Health:
    """Health levels, worst last: the order is what :func:`health` takes the maximum over."""

    NO_DATA = "no data"
    OK = "ok"
    WARN = "warn"
    DRIFT = "drift"
    ORDER = (NO_DATA, OK, WARN, DRIFT)


@dataclass(frozen=True)
class HealthVerdict:
    level: str
    reasons: list[str]


def health(window: Window | None) -> HealthVerdict:
    """The latest window's calibrated alarms, worst first: the drift status and the retrain trigger.

    Only alarms with a known false-alarm rate count (adaptive.ml.drift.calibration,
    adaptive.ml.cusum); what the streaming detectors said is context on the deployment page, not a
    health verdict.
    """
    if window is None:
        return HealthVerdict(Health.NO_DATA, ["no window closed yet"])
    level = Health.OK
    reasons: list[str] = []
    for alarm in window.alarms or []:
        if not isinstance(alarm, dict) or not alarm.get("calibrated"):
            continue
        new = Health.DRIFT if alarm.get("level") == "drift" else Health.WARN
        reasons.append(str(alarm.get("reason", "")))
        if Health.ORDER.index(new) > Health.ORDER.index(level):
            level = new
    return HealthVerdict(level, reasons)


def events_per_minute(deployment_id: int, now: datetime) -> float:
    count = Event.objects.filter(deployment_id=deployment_id, received_at__gte=now - RATE_SPAN).count()
    return round(count / (RATE_SPAN.total_seconds() / 60), 1)


def _latest_windows(deployment_id: int, n: int) -> list[Window]:
    # The (deployment, end) index read backwards; the alarms ride along for the health.
    rows = Window.objects.filter(deployment_id=deployment_id).order_by("-end", "-id")[:n]
    return list(reversed(rows))


def _memory_size(deployment: Deployment) -> int:
    rows = ErrorSample.objects.filter(deployment_id=deployment.pk, active=True)
    if deployment.serving == Deployment.Serving.EXTERNAL:
        return rows.filter(version__isnull=True).count()
    if deployment.live_version_id is None:
        return 0
    return rows.filter(version_id=deployment.live_version_id).count()


def _rounded(values: Iterable[float | None]) -> list[float | None]:
    return [None if value is None else round(value, 4) for value in values]


def deployment_summary(deployment: Deployment, now: datetime) -> dict[str, Any]:
    windows = _latest_windows(deployment.pk, SPARKLINE_WINDOWS)
    latest = windows[-1] if windows else None
    verdict = health(latest)
    live = deployment.live_version
    return {
        "slug": deployment.slug,
        "name": deployment.name,
        "task": deployment.task,
        "status": deployment.status,
        "serving": deployment.serving,
        "live_version": live.number if live is not None else None,
        "health": verdict.level,
        "health_reasons": verdict.reasons,
        "events_per_minute": events_per_minute(deployment.pk, now),
        "latest_window": None
        if latest is None
        else {
            "id": latest.pk,
            "end": latest.end,
            "n_labeled": latest.n_labeled,
            "base_auc": latest.base_auc,
            "compensated_auc": latest.compensated_auc,
        },
        "memory_size": _memory_size(deployment),
        "memory_revision": deployment.memory_revision,
        "sparkline": {
            "base": _rounded(w.base_auc for w in windows),
            "compensated": _rounded(w.compensated_auc for w in windows),
        },
    }


def overview(now: datetime | None = None) -> dict[str, Any]:
    """Every visible deployment's summary and the jobs queued or running, newest first."""
    now = now or timezone.now()
    deployments = Deployment.objects.visible().select_related("live_version").defer("live_version__profile")
    active_jobs = (
        Job.objects.active()
        .exclude(kind=Job.Kind.PING)
        .select_related("deployment")
        .only("id", "kind", "status", "progress", "message", "device", "created_at", "started_at", "deployment__slug")
        .order_by("-created_at")[:20]
    )
    return {
        "generated_at": now,
        "deployments": [deployment_summary(deployment, now) for deployment in deployments],
        "active_jobs": [
            {
                "id": job.pk,
                "deployment": job.deployment.slug if job.deployment is not None else None,
                "kind": job.kind,
                "status": job.status,
                "progress": job.progress,
                "message": job.message,
                "device": job.device,
                "created_at": job.created_at,
                "started_at": job.started_at,
            }
            for job in active_jobs
        ],
    }
