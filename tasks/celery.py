"""The Celery application, configured from Django settings (``CELERY_*``).

Task modules are listed explicitly: autodiscovery only finds ``<app>.tasks`` modules.
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

from tasks import filesystem_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# filesystem:// (the embedded default) is the hardened transport in every process that loads the app.
filesystem_broker.register()

# tasks.worker_health: the loop_health control command and the per-task connection check.
TASK_MODULES = ["tasks.worker_health", "tasks.system", "tasks.adaptation", "tasks.monitoring", "tasks.training"]

# TrackedTask counts each task's outcome for the worker's health (tasks.worker_health).
app = Celery("control_room", include=TASK_MODULES, task_cls="tasks.worker_health:TrackedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # JSON only: never accept pickled messages from the broker.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    result_expires=3600,
    # default: the fast loop (compensation updates, sweeps), seconds or less; monitoring: window
    # closes and drift scans (about a second each); gpu: retraining and evaluation (minutes). Run
    # default on its own worker processes, so a memory update never waits behind a drift scan
    # (bench/responsiveness.py measured that wait at several seconds under load).
    task_queues=[
        Queue("default", routing_key="default"),
        Queue("monitoring", routing_key="monitoring"),
        Queue("gpu", routing_key="gpu"),
    ],
    task_default_routing_key="default",
    task_default_queue="default",
    task_routes={"tasks.training.*": {"queue": "gpu"}, "tasks.monitoring.*": {"queue": "monitoring"}},
    # Long jobs: a worker takes one message at a time so others are not stuck behind it.
    worker_prefetch_multiplier=1,
    task_soft_time_limit=int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "3300")),
    task_time_limit=int(os.environ.get("CELERY_TASK_TIME_LIMIT", "3600")),
    task_track_started=True,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=True,
    # Logging is configured by Django's LOGGING setting, not replaced by Celery's.
    worker_hijack_root_logger=False,
    # Periodic work for `celery beat` (names are the tasks' registered names).
    beat_schedule={
        "sweep-memory-updates": {"task": "tasks.adaptation.sweep", "schedule": 30.0},
        "close-due-windows": {
            "task": "tasks.monitoring.close_due_windows",
            "schedule": float(settings.WINDOW_SCAN_SECONDS),
        },
        # On the default queue, not gpu like the other training tasks: it must run when the gpu
        # worker it checks on is dead or busy.
        "sweep-training-jobs": {
            "task": "tasks.training.sweep_stale",
            "schedule": 60.0,
            "options": {"queue": "default"},
        },
    },
)

# Celery's Django fixup closes the database connection around every task unless told to reuse it,
# and reconnecting to PostgreSQL costs more than a short task. The fixup reads this old-style key
# directly, so it is set outside the namespaced settings.
app.conf["CELERY_DB_REUSE_MAX"] = int(os.environ.get("CELERY_DB_REUSE_MAX", "200"))


def _ensure_broker_folders() -> None:
    """The file-system transport needs its folders before the first message is sent."""
    options = app.conf.broker_transport_options or {}
    if str(app.conf.broker_url).startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            if options.get(key):
                os.makedirs(options[key], exist_ok=True)
    backend = str(app.conf.result_backend or "")
    if backend.startswith("file://"):
        os.makedirs(backend.removeprefix("file://"), exist_ok=True)


_ensure_broker_folders()
