"""Is the loop keeping up? Lags per deployment, waiting jobs per kind, and the alerts they raise.

The loop stalls silently when a worker dies or falls behind: the API keeps answering, predictions
keep being served, and only the memory revision or the windows stop moving. This module turns the
database's own record of the work into figures an operator can read:

* **label-to-memory lag**: labeled events whose label is not in the error memory yet (the
  ``event_pending_memory`` partial index), and the age of the oldest;
* **window lag**: labels in no closed window (after the last window's ``labeled_to``, the
  ``event_deployment_labeled`` index), and the age of the oldest;
* **job wait**: the oldest queued job of each kind, and how long it has waited.

:func:`alerts` adds the workers' side (queues without a consumer, unhealthy workers, read by
``adaptive.health``) and says, in plain words, what is wrong. Counts are capped at
:data:`COUNT_CAP` so a huge backlog costs a bounded index scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from adaptive.models import Deployment, Event, Job, Window

# Lags count at most this many labels: enough to say "far behind", bounded in cost.
COUNT_CAP: Final = 100_000
# Which Celery queue runs each kind of job (tasks.celery's task_routes; a test keeps them equal).
QUEUE_OF_KIND: Final[Mapping[str, str]] = {
    Job.Kind.COMPENSATION: "default",
    Job.Kind.DRIFT_SCAN: "monitoring",
    Job.Kind.RETRAIN: "gpu",
    Job.Kind.EVALUATION: "gpu",
}


@dataclass(frozen=True)
class DeploymentLag:
    """How far one deployment's memory and windows are behind its labels (ages in seconds)."""

    slug: str
    pending_labels: int
    pending_age_s: float | None
    unwindowed_labels: int
    unwindowed_age_s: float | None
    window_events: int
    window_minutes: int
    active_jobs: int  # queued or running, of any kind
    memory_revision: int


@dataclass(frozen=True)
class JobWait:
    """The oldest queued job of one kind."""

    kind: str
    queue: str
    queued: int
    oldest_id: int
    oldest_deployment: str | None
    wait_s: float


def _age(oldest: datetime | None, now: datetime) -> float | None:
    return None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 1)


def deployment_lag(deployment: Deployment, now: datetime | None = None) -> DeploymentLag:
    """Pending labels (not in the memory) and labels in no closed window, with the oldest's age."""
    now = now or timezone.now()
    pending = Event.objects.filter(
        deployment_id=deployment.pk, label__isnull=False, memory_revision__isnull=True, key__isnull=False
    )
    cursor = (
        Window.objects.filter(deployment_id=deployment.pk, labeled_to__isnull=False)
        .order_by("-labeled_to")
        .values_list("labeled_to", flat=True)
        .first()
    )
    unwindowed = Event.objects.filter(deployment_id=deployment.pk, label__isnull=False)
    if cursor is not None:
        unwindowed = unwindowed.filter(labeled_at__gt=cursor)
    pending_count = pending.order_by()[:COUNT_CAP].count()
    unwindowed_count = unwindowed.order_by()[:COUNT_CAP].count()
    return DeploymentLag(
        slug=deployment.slug,
        pending_labels=pending_count,
        pending_age_s=_age(pending.aggregate(m=Min("labeled_at"))["m"], now) if pending_count else None,
        unwindowed_labels=unwindowed_count,
        unwindowed_age_s=_age(unwindowed.aggregate(m=Min("labeled_at"))["m"], now) if unwindowed_count else None,
        window_events=deployment.window_events,
        window_minutes=deployment.window_minutes,
        active_jobs=Job.objects.filter(deployment_id=deployment.pk).active().count(),
        memory_revision=deployment.memory_revision,
    )


def job_waits(now: datetime | None = None) -> list[JobWait]:
    """Per job kind with queued jobs: how many, and the oldest's wait (the (status, created_at) index)."""
    now = now or timezone.now()
    waits = []
    for kind, queue in QUEUE_OF_KIND.items():
        queued = Job.objects.filter(status=Job.Status.QUEUED, kind=kind)
        oldest = queued.order_by("created_at", "id").select_related("deployment").first()
        if oldest is None:
            continue
        waits.append(
            JobWait(
                kind=str(kind),
                queue=queue,
                queued=queued.count(),
                oldest_id=oldest.pk,
                oldest_deployment=oldest.deployment.slug if oldest.deployment else None,
                wait_s=_age(oldest.created_at, now) or 0.0,
            )
        )
    return waits


def lag_alerts(lag: DeploymentLag) -> list[str]:
    """What an operator must hear about one deployment's lags (thresholds in settings)."""
    out = []
    limit = settings.LABEL_LAG_WARN_SECONDS
    if lag.pending_age_s is not None and lag.pending_age_s > limit:
        out.append(
            f"{lag.slug}: {lag.pending_labels:,} label(s) wait for the error memory, the oldest for "
            f"{lag.pending_age_s:.0f} s (more than {limit} s): is the default-queue worker running?"
        )
    # A window closes every window_events labels or window_minutes minutes: more than two windows'
    # worth waiting, or the oldest waiting a window's time plus the allowance, means monitoring lags.
    allowance = lag.window_minutes * 60 + settings.WINDOW_LAG_WARN_SECONDS
    behind = lag.unwindowed_labels > 2 * lag.window_events
    if behind or (lag.unwindowed_age_s is not None and lag.unwindowed_age_s > allowance):
        out.append(
            f"{lag.slug}: {lag.unwindowed_labels:,} label(s) are in no closed window, the oldest for "
            f"{lag.unwindowed_age_s or 0:.0f} s: monitoring is behind"
        )
    return out


def alerts(
    *,
    lags: Iterable[DeploymentLag],
    waits: Iterable[JobWait],
    workers: Mapping[str, Any] | None,
) -> list[dict[str, str]]:
    """Every reason the loop may be stalled, worst first: ``{"level", "topic", "message"}``.

    ``workers`` is :func:`adaptive.health.check_workers`' answer, or None when the broker is down.
    """
    out: list[dict[str, str]] = []
    if workers is None:
        out.append({"level": "error", "topic": "broker", "message": "the broker is unreachable: no work is delivered"})
    else:
        for queue in workers.get("queues_without_consumer", []):
            out.append(
                {
                    "level": "error",
                    "topic": f"queue:{queue}",
                    "message": f"no healthy worker consumes the {queue!r} queue: its jobs wait",
                }
            )
        for name in workers.get("unhealthy", []):
            state = workers.get("workers", {}).get(name, {})
            out.append(
                {
                    "level": "error",
                    "topic": f"worker:{name}",
                    "message": f"worker {name} failed its last {state.get('consecutive_failures', '?')} tasks",
                }
            )
    limit = settings.JOB_WAIT_WARN_SECONDS
    for wait in waits:
        if wait.wait_s > limit:
            where = f" for {wait.oldest_deployment}" if wait.oldest_deployment else ""
            out.append(
                {
                    "level": "warn",
                    "topic": f"jobs:{wait.kind}",
                    "message": f"the oldest queued {wait.kind} job (#{wait.oldest_id}{where}) has waited "
                    f"{wait.wait_s:.0f} s on the {wait.queue!r} queue (more than {limit} s)",
                }
            )
    for lag in lags:
        out += [{"level": "warn", "topic": f"lag:{lag.slug}", "message": m} for m in lag_alerts(lag)]
    return out


def status(workers: Mapping[str, Any] | None, deployments: Iterable[Deployment] | None = None) -> dict[str, Any]:
    """The loop's whole state for the API and the dashboard: lags, waits, workers and alerts."""
    now = timezone.now()
    if deployments is None:
        deployments = Deployment.objects.exclude(status=Deployment.Status.ARCHIVED).order_by("slug")
    lags = [deployment_lag(d, now) for d in deployments]
    waits = job_waits(now)
    return {
        "checked_at": now,
        "alerts": alerts(lags=lags, waits=waits, workers=workers),
        "deployments": [asdict(lag) for lag in lags],
        "jobs": [asdict(wait) for wait in waits],
        "workers": workers,
    }
