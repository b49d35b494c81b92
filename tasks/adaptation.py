"""The fast loop's background work: compensation updates, coalesced per deployment, and a sweeper.

Feedback (``adaptive.services.ingest.record_feedback``) queues one compensation Job per deployment at
a time (the database refuses a second queued one), sent here after the feedback commits. The worker
claims the job (queued -> running), so feedback that arrives meanwhile queues the next one: many
feedback calls give at most one running and one queued job, and no label is left behind. ``sweep``
(Celery beat) re-sends messages of jobs queued too long (a lost message, a broker restart), fails
jobs whose worker died, and catches labels that no job was queued for.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils import timezone

from adaptive.models import Deployment, Event, Job
from adaptive.services import jobs, memory, monitoring
from tasks.celery import app

log = logging.getLogger(__name__)

# A queued job older than this is assumed to have lost its message and is sent again (claiming
# makes a duplicate delivery harmless).
RESEND_AFTER = timedelta(seconds=60)
# A running compensation job beats after every batch of APPLY_BATCH labels (a second or two, tens
# of seconds at worst on a loaded SQLite); no heartbeat for this long means its worker died. Failing
# such a job loses nothing: its transaction died with the worker, and its labels are still pending.
STALE_AFTER = timedelta(seconds=60)
# Finished compensation jobs are kept this long for the jobs page, then deleted.
KEEP_FINISHED = timedelta(days=1)


@app.task(name="tasks.adaptation.update_memory", ignore_result=True)
def update_memory(job_id: int) -> dict[str, Any] | None:
    """Apply every pending label of the job's deployment to its error memory."""
    job = jobs.claim(job_id, Job.Kind.COMPENSATION)
    if job is None:
        return None  # ran already, or cancelled: a duplicate delivery
    assert job.deployment_id is not None
    applied = evicted = 0
    revision = 0
    try:
        while True:
            result = memory.apply_pending(job.deployment_id)
            applied += result.applied
            evicted += result.evicted
            revision = result.revision
            Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
            if result.applied < memory.APPLY_BATCH:
                break
    except Exception as exc:
        jobs.fail(job, f"{type(exc).__name__}: {exc}")
        raise
    metrics = {"applied": applied, "evicted": evicted, "revision": revision}
    jobs.succeed(job, message=f"{applied} labels applied, revision {revision}", metrics=metrics)
    _maybe_close_window(job.deployment_id)
    return metrics


def _maybe_close_window(deployment_id: int) -> None:
    deployment = Deployment.objects.get(pk=deployment_id)
    if monitoring.window_due(deployment):
        monitoring.request_close(deployment)


@app.task(name="tasks.adaptation.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Repair what a lost message or a dead worker left behind; prune old finished jobs."""
    for job in jobs.fail_stale_running(Job.Kind.COMPENSATION, STALE_AFTER):
        log.warning("compensation job %s failed: its worker stopped answering", job.pk)
    resent = 0
    for job in jobs.stale_queued(Job.Kind.COMPENSATION, RESEND_AFTER):
        jobs.resend(job)
        resent += 1
    pending = Event.objects.filter(
        deployment=OuterRef("pk"), label__isnull=False, memory_revision__isnull=True, key__isnull=False
    )
    requested = 0
    for deployment in Deployment.objects.active().filter(Exists(pending)):
        if jobs.queue_once(deployment, Job.Kind.COMPENSATION) is not None:
            requested += 1
    pruned, _ = Job.objects.filter(
        kind=Job.Kind.COMPENSATION,
        status=Job.Status.SUCCEEDED,
        finished_at__lt=timezone.now() - KEEP_FINISHED,
    ).delete()
    return {"resent": resent, "requested": requested, "pruned": pruned}
