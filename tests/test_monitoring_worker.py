"""Windows with a real worker (and Celery beat) on the real broker: on schedule, and across restarts.

The worker and beat run as separate processes against the test database. They are started from a
small script rather than ``celery -A tasks`` so that the monitoring tasks route to a private queue:
``monitoring.request_close`` sends to the ``default`` queue, which a developer's own worker on the same
broker would otherwise take.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from django.utils import timezone

from adaptive.models import Deployment, Event, Job, MonitorState, Window
from adaptive.services import jobs, monitoring
from adaptive.services.monitoring import ErrorStreamDetectors
from tasks.celery import app
from tasks.monitoring import close_window
from tasks.system import ping
from tests import worker as worker_helpers
from tests.factories import deployment_with_live_version
from tests.test_monitoring import add_events, ago, direct_auc
from tests.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# argv: role (worker | beat), queue, beat schedule file. Routes the monitoring tasks to the queue
# in this process too: the worker sends close_window from close_due_windows and from job chains.
# TEST_JOB_SECONDS, when set, replaces the monitoring job's time budget.
_PROCESS = """
import os
import sys
from tasks.celery import app
role, queue, schedule = sys.argv[1:4]
if "TEST_JOB_SECONDS" in os.environ:
    import django
    django.setup()
    import tasks.monitoring
    tasks.monitoring.JOB_SECONDS = float(os.environ["TEST_JOB_SECONDS"])
app.conf.task_routes = {"tasks.monitoring.*": {"queue": queue}, "tasks.system.*": {"queue": queue}}
app.amqp.flush_routes()
app.amqp.router = app.amqp.Router()
if role == "worker":
    app.worker_main(["worker", "-n", queue + "@localhost", "-Q", queue, "--pool", "solo", "--loglevel", "INFO",
                     "--without-mingle", "--without-gossip"])
else:
    app.conf.beat_schedule = {"close-due-windows": app.conf.beat_schedule["close-due-windows"]}
    app.start(["beat", "-s", schedule, "--max-interval", "1", "--loglevel", "INFO"])
"""


@pytest.fixture
def queue() -> Iterator[str]:
    """A private queue that this test process also sends the monitoring tasks to."""
    name = f"test-monitoring-{uuid.uuid4().hex[:8]}"
    saved = app.conf.task_routes
    _route(app, {"tasks.monitoring.*": {"queue": name}, "tasks.system.*": {"queue": name}})
    yield name
    _route(app, saved)


def _route(celery_app: Any, routes: Any) -> None:
    celery_app.conf.task_routes = routes
    # The router is built once per process and keeps the route table it was built with: rebuild it,
    # or a process that has sent a task before (an earlier test) keeps sending to "default".
    celery_app.amqp.flush_routes()
    celery_app.amqp.router = celery_app.amqp.Router()


@contextmanager
def process(role: str, queue: str, tmp_path: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / f"{role}-{uuid.uuid4().hex[:6]}.log"
    full_env = {**os.environ, "DATABASE_URL": worker_helpers.test_database_url(), "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PROCESS, role, queue, str(tmp_path / "beat-schedule")],
            cwd=worker_helpers.ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        except BaseException:
            print(f"--- {role} log ---\n{log_path.read_text()[-4000:]}")
            raise
        finally:
            if proc.poll() is None:
                worker_helpers.stop(proc)


def deployment(**fields: Any) -> Deployment:
    dep = deployment_with_live_version()
    Deployment.objects.filter(pk=dep.pk).update(**fields)
    dep.refresh_from_db()
    return dep


def windows_of(dep: Deployment) -> list[Window]:
    return list(Window.objects.filter(deployment=dep).order_by("labeled_to"))


def finished(job: Job) -> bool:
    job.refresh_from_db()
    return job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED)


def test_beat_closes_due_windows_on_schedule_with_metrics_and_drift(queue: str, tmp_path: Path) -> None:
    # By count: 100 labels, then 100 with dep_delay shifted by two standard deviations, then 40
    # that wait for more. No training profile: the first window is the reference.
    by_count = deployment(window_events=100, window_minutes=60)
    first_events = add_events(by_count, [ago(10) + timedelta(milliseconds=i) for i in range(100)], seed=1)
    add_events(by_count, [ago(9) + timedelta(milliseconds=i) for i in range(100)], seed=2, shift=2)
    add_events(by_count, ago(8), n=40, seed=3)
    # By time: 30 labels, two minutes old, with windows of a minute.
    by_time = deployment(window_events=1000, window_minutes=1)
    add_events(by_time, ago(2), n=30, seed=4)
    # A job queued two minutes ago whose message was lost: beat sends it again.
    lost = deployment(window_events=50)
    add_events(lost, ago(5), n=50, seed=5)
    lost_job = jobs.queue_once(lost, Job.Kind.DRIFT_SCAN)
    assert lost_job is not None
    Job.objects.filter(pk=lost_job.pk).update(created_at=timezone.now() - timedelta(minutes=2))

    with process("worker", queue, tmp_path), process("beat", queue, tmp_path, WINDOW_SCAN_SECONDS="1"):
        wait_for(lambda: len(windows_of(by_count)) == 2 and windows_of(by_time) and windows_of(lost), timeout=90)

    first, second = windows_of(by_count)
    assert [first.n_labeled, second.n_labeled] == [100, 100]
    assert first.base_auc == pytest.approx(
        direct_auc([e.base_score for e in first_events], cast(list[int], [e.label for e in first_events]))
    )
    assert not first.drift_metrics.exists()
    levels = {m.column: m.level for m in second.drift_metrics.all()}
    assert levels["dep_delay"] == "drift"
    assert levels["distance"] == "ok"
    assert {"carrier", "prediction", "label", "error"} <= set(levels)
    assert [w.n_labeled for w in windows_of(by_time)] == [30]
    assert [w.n_labeled for w in windows_of(lost)] == [50]
    lost_job.refresh_from_db()
    assert lost_job.status == Job.Status.SUCCEEDED
    assert not Job.objects.filter(kind=Job.Kind.DRIFT_SCAN).exclude(status=Job.Status.SUCCEEDED).exists()


def test_detector_state_survives_a_killed_worker_and_a_duplicate_message_closes_nothing(
    queue: str, tmp_path: Path
) -> None:
    dep = deployment(window_events=100, window_minutes=60)
    for i in range(4):  # 400 labels with a small error
        add_events(dep, [ago(30 - i) + timedelta(milliseconds=k) for k in range(100)], seed=i, error=0.1)

    with process("worker", queue, tmp_path) as worker:
        job = monitoring.request_close(dep)
        assert job is not None
        wait_for(partial(finished, job), timeout=90)
        worker.kill()  # no warm shutdown: whatever it held in memory is gone
        worker.wait()
    assert job.status == Job.Status.SUCCEEDED and len(job.metrics["windows"]) == 4
    state = MonitorState.objects.get(deployment=dep, version=dep.live_version)
    assert state.detectors["raw"]["error"]["detectors"]["adwin"]["n_seen"] == 400

    # The error jumps; a new worker process picks up the saved detectors.
    add_events(dep, [ago(1) + timedelta(milliseconds=k) for k in range(100)], seed=9, error=0.6)
    with process("worker", queue, tmp_path):
        job = monitoring.request_close(dep)
        assert job is not None
        wait_for(partial(finished, job), timeout=90)
        # The same message again (a redelivery): the job is no longer queued, so nothing runs.
        close_window.apply_async(args=[job.pk])
        assert ping.apply_async(args=["after"]).get(timeout=60)["pong"] == "after"  # the queue is in order

    windows = windows_of(dep)
    assert [w.n_labeled for w in windows] == [100] * 5
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 1
    signals = windows[-1].detector_signals["raw"]
    assert all(signals[kind]["n_seen"] == 500 for kind in ("adwin", "page_hinkley", "kswin", "ddm"))
    assert signals["adwin"]["drift"] and signals["ddm"]["drift"]
    assert not any(w.detector_signals["raw"]["adwin"]["drift"] for w in windows[:4])

    # Detected because the history crossed the restart: detectors that saw only the new window see
    # a steady stream. And the restored ones said exactly what one uninterrupted run says.
    events = list(Event.objects.filter(deployment=dep).order_by("labeled_at", "pk"))
    labels = np.array([e.label for e in events])
    p = np.array([e.base_score for e in events])
    errors = np.round(np.abs(labels - p), 6).tolist()
    misses = ((p >= 0.5) != labels).astype(float).tolist()
    assert not ErrorStreamDetectors().update(errors[400:], misses[400:])["adwin"]["drift"]
    uninterrupted = ErrorStreamDetectors().update(errors, misses)
    for kind in ("adwin", "page_hinkley", "kswin", "ddm"):
        positions = [100 * i + d for i, w in enumerate(windows) for d in w.detector_signals["raw"][kind]["detections"]]
        assert positions == uninterrupted[kind]["detections"], kind


def test_a_backlog_drains_through_a_chain_of_jobs_each_within_its_time_budget(queue: str, tmp_path: Path) -> None:
    # With no time at all, every job closes one window and queues the next for the rest.
    dep = deployment(window_events=100, window_minutes=60)
    for i in range(4):
        add_events(dep, [ago(30 - i) + timedelta(milliseconds=k) for k in range(100)], seed=i)

    with process("worker", queue, tmp_path, TEST_JOB_SECONDS="0"):
        first = monitoring.request_close(dep)
        assert first is not None
        wait_for(lambda: len(windows_of(dep)) == 4, timeout=90)
        wait_for(lambda: not Job.objects.filter(status__in=Job.ACTIVE_STATUSES).exists(), timeout=60)

    scans = list(Job.objects.filter(deployment=dep, kind=Job.Kind.DRIFT_SCAN).order_by("pk"))
    assert [job.status for job in scans] == [Job.Status.SUCCEEDED] * 4
    assert [len(job.metrics["windows"]) for job in scans] == [1, 1, 1, 1]
    assert all("the rest goes to the next job" in job.message for job in scans[:3])
    assert scans[3].message == "1 window(s) closed"
    assert [w.n_labeled for w in windows_of(dep)] == [100] * 4
    # Every job's detectors continued from the previous job's: one stream, no window lost or twice.
    assert windows_of(dep)[-1].detector_signals["raw"]["kswin"]["n_seen"] == 400
