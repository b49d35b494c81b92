"""The tasks layer as a Django app: at start-up it tells the domain how each kind of job is sent."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.apps import AppConfig


def _publish(task: Any, job_id: int, task_id: str) -> None:
    task.apply_async((job_id,), task_id=task_id)


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Background work"

    def ready(self) -> None:
        from adaptive.models import Job
        from adaptive.services import dispatch
        from tasks import adaptation, monitoring, training

        # Every queued Job of these kinds is sent to its task once the action that queued it commits
        # (adaptive.services.dispatch). Routing to queues is tasks.celery's task_routes.
        senders = {
            Job.Kind.COMPENSATION: adaptation.update_memory,
            Job.Kind.DRIFT_SCAN: monitoring.close_window,
            Job.Kind.RETRAIN: training.retrain,
            Job.Kind.EVALUATION: training.evaluate,
        }
        for kind, task in senders.items():
            dispatch.register(kind, partial(_publish, task))
