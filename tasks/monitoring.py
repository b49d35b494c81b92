"""Monitoring work: close windows (metrics, drift, detectors) as labels accumulate.

Two ways in. The compensation-update task calls ``monitoring.request_close`` when
``monitoring.window_due`` says a window is due (every ``window_events`` labels), and Celery beat runs
``close_due_windows`` every ``WINDOW_SCAN_SECONDS`` for the time trigger (``window_minutes``) and to
repair lost messages. Both go through one coalesced ``drift_scan`` Job per deployment: the database
allows one queued at a time, and the job closes the windows that are due when it runs.

A backlog is cut by time, not by count: a job closes windows for at most ``JOB_SECONDS`` and then
queues the next job for the rest, so that no monitoring task holds its worker much longer than
that (other deployments' jobs wait behind it on the same queue).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from time import monotonic
from typing import Any

from django.utils import timezone

from adaptive.models import Deployment, Job, Window
from adaptive.services import jobs, monitoring, policy
from tasks.celery import app

log = logging.getLogger(__name__)

# A queued job older than this has probably lost its message; it is sent again (claiming makes a
# duplicate delivery harmless).
RESEND_AFTER = timedelta(seconds=60)
# A window closes in tens of milliseconds and the job beats after each; this long without a
# heartbeat means its worker died.
STALE_AFTER = timedelta(minutes=10)
# Seconds a job keeps closing windows before it hands the rest of a backlog to a fresh job. Checked
# after each window, so a job runs this long plus one window (about 0.1 s): about 8 s in all, under
# the 10 s that issue 14 allows a monitoring task, and a job always closes at least one window.
JOB_SECONDS = 8.0
# Finished drift scans are kept this long for the jobs page, then deleted.
KEEP_FINISHED = timedelta(days=1)


@app.task(name="tasks.monitoring.close_window", ignore_result=True)
def close_window(job_id: int) -> dict[str, Any] | None:
    """Close every window of the job's deployment that is due, oldest labels first."""
    job = jobs.claim(job_id, Job.Kind.DRIFT_SCAN)
    if job is None:
        return None  # ran already, or cancelled: a duplicate delivery
    deployment = job.deployment
    assert deployment is not None
    closed: list[int] = []
    started = monotonic()
    out_of_time = False
    try:
        while monitoring.window_due(deployment):
            window = monitoring.close_window(deployment)
            if window is None:
                break  # another job closed it first, or only too-young labels wait
            closed.append(window.pk)
            Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
            if monotonic() - started >= JOB_SECONDS:
                out_of_time = True
                break
    except Exception as exc:
        jobs.fail(job, f"{type(exc).__name__}: {exc}")
        raise
    metrics: dict[str, Any] = {"windows": closed, "seconds": round(monotonic() - started, 3)}
    if closed:
        try:
            metrics["policy"] = policy.act_on_window(deployment, Window.objects.get(pk=closed[-1]))
        except Exception:  # the windows are written; a policy failure must not leave the job running
            log.exception("retrain policy failed for %s", deployment.slug)
            metrics["policy"] = "error"
    more = out_of_time and monitoring.window_due(deployment)
    message = f"{len(closed)} window(s) closed"
    if more:
        message += f"; stopped after {JOB_SECONDS:g} s, the rest goes to the next job"
    jobs.succeed(job, message=message, metrics=metrics)
    if more:
        monitoring.request_close(deployment)  # the rest of a backlog (unless a job is queued already)
    return metrics


@app.task(name="tasks.monitoring.close_due_windows", ignore_result=True)
def close_due_windows() -> dict[str, int]:
    """Celery beat: queue a window close for every active deployment with one due; repair jobs."""
    for job in jobs.fail_stale_running(Job.Kind.DRIFT_SCAN, STALE_AFTER):
        log.warning("drift scan %s failed: its worker stopped answering", job.pk)
    resent = 0
    for job in jobs.stale_queued(Job.Kind.DRIFT_SCAN, RESEND_AFTER):
        jobs.resend(job)
        resent += 1
    requested = 0
    now = timezone.now()
    for deployment in Deployment.objects.active():
        if monitoring.window_due(deployment, now) and monitoring.request_close(deployment) is not None:
            requested += 1
    pruned, _ = Job.objects.filter(
        kind=Job.Kind.DRIFT_SCAN, status=Job.Status.SUCCEEDED, finished_at__lt=now - KEEP_FINISHED
    ).delete()
    return {"resent": resent, "requested": requested, "pruned": pruned}
