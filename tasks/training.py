"""The slow loop's background work on the ``gpu`` queue: retrain, evaluate, sweep.

Every task here is routed to the ``gpu`` queue (``tasks.training.*`` in tasks/celery.py), the
evaluation included: it loads two versions' models and scores up to a holdout's worth of events,
work that belongs with the models and must not delay the fast loop's compensation updates on the
``default`` queue. The stale-job sweep is the exception: beat sends it to ``default`` (see the
schedule), because a sweep queued behind a dead gpu worker would never run.

Flow: ``retraining.request_retrain`` (any entry point) -> ``retrain`` -> candidate version ->
``evaluation.request_evaluation`` -> ``evaluate`` -> FlipReport -> gate -> reject, or pre-warm the
candidate's memory and, under the auto policy, promote it. The services queue the Job rows and
``adaptive.services.dispatch`` sends them here once their transaction commits. No task follows a
promotion: the promotion itself warms the new version's memory before the switch
(adaptive.services.releases).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from adaptive.ml.training import resolve_device
from adaptive.models import Job, ModelVersion
from adaptive.services import evaluation, jobs, retraining
from tasks.celery import app

log = logging.getLogger(__name__)

# A retrain or evaluation still queued after this long never reached a worker (a lost message, no
# worker on the gpu queue): it is failed, so that the deployment can be retrained again.
QUEUED_TIMEOUT = timedelta(hours=6)


# --- tasks ----------------------------------------------------------------------------------------


@app.task(name="tasks.training.retrain", ignore_result=True)
def retrain(job_id: int) -> dict[str, Any] | None:
    """Continue training the live version into a candidate, then queue its evaluation."""
    device = str(resolve_device(settings.ADAPTIVE_DEVICE))
    job = jobs.claim(job_id, Job.Kind.RETRAIN, device=device)
    if job is None:
        return None  # ran already, or cancelled: a duplicate delivery
    try:
        version = retraining.run_retrain(job)
    except retraining.Cancelled as exc:
        log.info("retrain %s stopped: %s", job_id, exc)
        return None
    except retraining.RetrainError as exc:
        jobs.fail(job, str(exc))
        return None
    except Exception as exc:
        jobs.fail(job, f"{type(exc).__name__}: {exc}")
        raise
    metrics = {
        key: version.metrics.get(key)
        for key in ("n_train", "n_replay", "n_validation", "epochs_run", "best_epoch", "val_auc", "seconds", "device")
    }
    metrics.update(version=version.number, version_id=version.pk, holdout=version.metrics.get("holdout"))
    jobs.succeed(job, message=f"candidate v{version.number} trained on {device}", metrics=metrics)
    if version.parent is not None:
        evaluation.request_evaluation(
            deployment=version.deployment,
            old_number=version.parent.number,
            new_number=version.number,
            actor=job.requested_by,
            retrain_job=job,
        )
    return metrics


@app.task(name="tasks.training.evaluate", ignore_result=True)
def evaluate(job_id: int) -> dict[str, Any] | None:
    """Write the FlipReport of an evaluation job (which pre-warms a passing candidate and may promote it)."""
    job = jobs.claim(job_id, Job.Kind.EVALUATION, device=str(resolve_device(settings.ADAPTIVE_DEVICE)))
    if job is None:
        return None
    try:
        report = evaluation.run_evaluation(job)
    except retraining.Cancelled as exc:
        log.info("evaluation %s stopped: %s", job_id, exc)
        return None
    except evaluation.EvaluationError as exc:
        jobs.fail(job, str(exc))
        return None
    except Exception as exc:
        jobs.fail(job, f"{type(exc).__name__}: {exc}")
        raise
    metrics = evaluation.outcome(report)
    promoted = job.params.get("retrain_job") is not None and metrics["new_status"] == ModelVersion.Status.LIVE
    metrics["promoted"] = promoted
    verdict = "passed" if report.gate_passed else "failed"
    jobs.succeed(job, message=f"v{metrics['old']} vs v{metrics['new']}: gate {verdict}", metrics=metrics)
    return metrics


@app.task(name="tasks.training.sweep_stale", ignore_result=True)
def sweep_stale() -> dict[str, list[int]]:
    """Celery beat: fail retrains and evaluations whose worker died, or that never started."""
    stale_after = timedelta(seconds=settings.STALE_JOB_SECONDS)
    failed: list[int] = []
    for kind in (Job.Kind.RETRAIN, Job.Kind.EVALUATION):
        for job in jobs.fail_stale_running(kind, stale_after):
            log.warning("%s job %s failed: its worker stopped answering", kind, job.pk)
            failed.append(job.pk)
    never_started: list[int] = []
    cutoff = timezone.now() - QUEUED_TIMEOUT
    for job in Job.objects.filter(
        kind__in=(Job.Kind.RETRAIN, Job.Kind.EVALUATION), status=Job.Status.QUEUED, created_at__lt=cutoff
    ):
        jobs.fail(job, f"never started within {QUEUED_TIMEOUT}: is a worker consuming the gpu queue?")
        never_started.append(job.pk)
    return {"failed": failed, "never_started": never_started}
