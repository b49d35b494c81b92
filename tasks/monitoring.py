"""Monitoring work: close windows (metrics, drift, detectors) as labels accumulate.

Two ways in. The compensation-update task calls ``request_window_close`` when
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

from django.db import transaction
from django.utils import timezone

from adaptive.errors import Conflict
from adaptive.models import Deployment, Job, Window
from adaptive.services import jobs, monitoring, policy, retraining
from tasks import training
from tasks.celery import app
from tasks.sending import send_on_commit

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


def request_window_close(deployment_id: int) -> Job | None:
    """Queue a drift_scan job for the deployment unless one is queued already; send it on commit."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return None
    job = jobs.queue_once(deployment, Job.Kind.DRIFT_SCAN)
    if job is not None:
        job_id = job.pk
        send_on_commit(close_window, (job_id,))
    return job


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
            metrics["policy"] = _apply_policy(deployment, closed[-1])
        except Exception:  # the windows are written; a policy failure must not leave the job running
            log.exception("retrain policy failed for %s", deployment.slug)
            metrics["policy"] = "error"
    more = out_of_time and monitoring.window_due(deployment)
    message = f"{len(closed)} window(s) closed"
    if more:
        message += f"; stopped after {JOB_SECONDS:g} s, the rest goes to the next job"
    jobs.succeed(job, message=message, metrics=metrics)
    if more:
        request_window_close(deployment.pk)  # the rest of a backlog (unless a job is queued already)
    return metrics


def _apply_policy(deployment: Deployment, window_id: int) -> str | None:
    """Let the retrain policy look at the newest window; queue a retrain when it says so."""
    deployment = Deployment.objects.get(pk=deployment.pk)
    decision = policy.decide(deployment, Window.objects.get(pk=window_id))
    if decision is None:
        return None
    action, trigger = decision
    if action == "retrain":
        try:
            with transaction.atomic():
                job = retraining.request_retrain(
                    deployment=deployment, actor=None, reason=trigger.reason, label=policy.POLICY
                )
                training.send_retrain(job)
        except Conflict as exc:  # a retrain started meanwhile, or the deployment changed
            log.info("policy retrain for %s not queued: %s", deployment.slug, exc)
            return None
    return action


@app.task(name="tasks.monitoring.close_due_windows", ignore_result=True)
def close_due_windows() -> dict[str, int]:
    """Celery beat: queue a window close for every active deployment with one due; repair jobs."""
    for job in jobs.fail_stale_running(Job.Kind.DRIFT_SCAN, STALE_AFTER):
        log.warning("drift scan %s failed: its worker stopped answering", job.pk)
    resent = 0
    for job in jobs.stale_queued(Job.Kind.DRIFT_SCAN, RESEND_AFTER):
        close_window.delay(job.pk)
        resent += 1
    requested = 0
    now = timezone.now()
    for deployment in Deployment.objects.active():
        if monitoring.window_due(deployment, now) and request_window_close(deployment.pk) is not None:
            requested += 1
    pruned, _ = Job.objects.filter(
        kind=Job.Kind.DRIFT_SCAN, status=Job.Status.SUCCEEDED, finished_at__lt=now - KEEP_FINISHED
    ).delete()
    return {"resent": resent, "requested": requested, "pruned": pruned}
