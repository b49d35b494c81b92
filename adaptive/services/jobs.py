"""Job rows: coalesced queueing, claiming, progress and the end states.

A Job row is created before its Celery message is sent and is the source of truth for what
happened; the message only carries the id. Claiming moves a job from queued to running in one
conditional UPDATE, so a message delivered twice (a retry, a redelivery after a worker died) runs
the work once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from adaptive.models import Deployment, Job
from adaptive.services import dispatch


def queue_once(deployment: Deployment, kind: str, *, params: dict[str, Any] | None = None) -> Job | None:
    """Create a queued job of ``kind`` unless one is queued already, and send it after the commit.

    Returns None when one is queued: it has not started, so it will see every row committed
    before it does; this is what coalesces many feedback calls into one update at a time.
    The database enforces it (constraint one_queued_update_per_deployment_kind).
    """
    try:
        with transaction.atomic():
            job = Job.objects.create(
                deployment=deployment, kind=kind, params=params or {}, celery_task_id=dispatch.new_task_id()
            )
    except IntegrityError:
        return None
    dispatch.send(job)
    return job


def resend(job: Job) -> None:
    """Send a queued job's message again (its first may be lost); claiming makes a duplicate harmless."""
    dispatch.send(job)


def claim(job_id: int, kind: str, *, device: str = "") -> Job | None:
    """Move a queued job of ``kind`` to running and return it; None if it is not queued (ran,
    cancelled, claimed by another delivery) or not of that kind (a stray message)."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, kind=kind, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, device=device
    )
    if not claimed:
        return None
    return Job.objects.select_related("deployment").get(pk=job_id)


def succeed(job: Job, *, message: str = "", metrics: dict[str, Any] | None = None) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        message=message,
        metrics=metrics or {},
        finished_at=now,
        heartbeat_at=now,
    )


def fail(job: Job, message: str) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
        status=Job.Status.FAILED, message=message[:2000], finished_at=now, heartbeat_at=now
    )


def stale_queued(kind: str, older_than: timedelta) -> list[Job]:
    """Queued jobs of ``kind`` created before ``now - older_than``: their message may be lost."""
    cutoff = timezone.now() - older_than
    return list(Job.objects.filter(kind=kind, status=Job.Status.QUEUED, created_at__lt=cutoff))


def fail_stale_running(kind: str, older_than: timedelta) -> list[Job]:
    """Mark running jobs whose heartbeat stopped as failed (their worker died); return them."""
    cutoff = timezone.now() - older_than
    stale = list(Job.objects.filter(kind=kind, status=Job.Status.RUNNING, heartbeat_at__lt=cutoff))
    for job in stale:
        fail(job, f"worker stopped answering (no heartbeat since {job.heartbeat_at:%Y-%m-%d %H:%M:%S})")
    return stale


def cancel(job: Job, *, actor: Any, reason: str = "") -> Job:
    """Cancel a queued or running job; cancelling a cancelled job again returns it unchanged.

    One conditional UPDATE decides, so a worker that claims or finishes the job at the same moment
    either wins (the job is finished: Conflict) or loses (``claim``, ``succeed`` and ``fail`` only
    move queued or running jobs, so a cancelled job stays cancelled and its result is dropped).
    No AuditEntry action fits a cancellation, so who cancelled and why go into the job's message.
    """
    from adaptive.errors import Conflict
    from adaptive.services.audit import actor_label

    now = timezone.now()
    note = f"cancelled by {actor_label(actor)}" + (f": {reason}" if reason else "")
    cancelled = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
        status=Job.Status.CANCELLED, message=note[:2000], finished_at=now, heartbeat_at=now
    )
    current = Job.objects.get(pk=job.pk)
    if not cancelled and current.status != Job.Status.CANCELLED:
        raise Conflict(f"job {job.pk} has already {current.status}; only queued or running jobs can be cancelled")
    return current
