"""Sending queued jobs to their workers: the one place for "after X, queue Y".

A domain action that leaves work for a worker (labels recorded: a compensation update; a retrain or
an evaluation requested; windows due: a drift scan) creates the Job row, which is the record of the
work, and calls ``send(job)``. Once the surrounding transaction commits, the sender that the tasks
layer registered for the job's kind sends the message that wakes a worker. The follow-up belongs to
the action, not to its callers, so the API, the dashboard, the admin, the retrain policy, a
management command and a shell all get the same effect; a new entry point cannot forget it.

The tasks layer registers one sender per job kind when Django starts (``tasks.apps``), so the
domain never imports Celery. In a process without senders (the tasks app not installed) a job
stays queued and a warning is logged: the beat sweepers send jobs that waited too long.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.db import transaction

from adaptive.models import Job

log = logging.getLogger(__name__)

# A sender publishes the message for one job: ``sender(job_id, task_id)``. It runs after the commit.
Sender = Callable[[int, str], None]

_senders: dict[str, Sender] = {}


def register(kind: str, sender: Sender) -> None:
    """Name how jobs of ``kind`` reach a worker (called by the tasks layer at start-up)."""
    _senders[kind] = sender


def registered() -> dict[str, Sender]:
    """The senders by job kind (for health checks and tests)."""
    return dict(_senders)


def new_task_id() -> str:
    """A Celery task id, stored on the Job before the message is sent so the jobs page can name it."""
    return str(uuid.uuid4())


def send(job: Job) -> None:
    """Send ``job`` to its worker once the current transaction commits; never raises.

    The job's ``celery_task_id`` is set here when its creator did not set it. A broker that cannot
    be reached is logged, not raised: the row is committed and the sweepers re-send it.
    """
    sender = _senders.get(job.kind)
    if sender is None:
        log.warning("no sender registered for %s jobs: job %s waits for a sweeper", job.kind, job.pk)
        return
    if not job.celery_task_id:
        job.celery_task_id = new_task_id()
        Job.objects.filter(pk=job.pk).update(celery_task_id=job.celery_task_id)
    job_id, task_id = job.pk, job.celery_task_id

    def publish() -> None:
        try:
            sender(job_id, task_id)
        except Exception:  # kombu raises several types for an unreachable broker
            log.exception("could not send %s job %s; a sweeper will re-send it", job.kind, job_id)

    transaction.on_commit(publish)
