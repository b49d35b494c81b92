"""The slow loop with a real Celery worker on the ``default`` and ``gpu`` queues.

A retrain request goes through the broker to the worker, which trains a candidate, queues and runs
its evaluation, writes the FlipReport and, when the gates pass, warms the candidate's memory and
(under the auto policy) promotes it; when they fail, the candidate is rejected and never warmed. A worker killed in the
middle of a round leaves the live version alone, and the stale-job sweep fails its job. Runs on
both passes of bin/test (SQLite + file broker, PostgreSQL + Redis); CPU only.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from adaptive import runtime
from adaptive.errors import Conflict
from adaptive.models import Deployment, ErrorSample, FlipReport, Job, ModelVersion, Release
from adaptive.services import retraining
from tasks import training
from tests.factories import deployment_with_live_version
from tests.test_retraining import FAST, add_labeled_events
from tests.worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _worker_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The worker inherits the environment: the same artifact folder as this process, the CPU, and
    # one thread so that it does not fight the test process for the cores.
    monkeypatch.setenv("ARTIFACT_ROOT", str(settings.ARTIFACT_ROOT))
    monkeypatch.setenv("ADAPTIVE_DEVICE", "cpu")
    monkeypatch.setenv("TORCH_NUM_THREADS", "1")
    runtime.clear_cache()
    yield
    runtime.clear_cache()


def _deployment(**gates: Any) -> Deployment:
    dep = deployment_with_live_version()
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy=Deployment.RetrainPolicy.AUTO, **gates)
    dep.refresh_from_db()
    add_labeled_events(dep, 600)
    return dep


def _live_number(dep: Deployment) -> int:
    return int(ModelVersion.objects.get(deployment=dep, status=ModelVersion.Status.LIVE).number)


def test_a_retrain_request_ends_in_an_automatic_promotion_with_a_warm_memory() -> None:
    dep = _deployment(gate_max_nfr=1.0, gate_min_metric_delta=0.0)

    with celery_worker(["default", "gpu"]):
        job = retraining.request_retrain(deployment=dep, actor=None, reason="drift on carrier", params=FAST)
        evaluation_job = wait_for(
            lambda: Job.objects.filter(deployment=dep, kind=Job.Kind.EVALUATION, status=Job.Status.SUCCEEDED).first(),
            timeout=120,
        )

    job.refresh_from_db()
    # Warm before the switch: the memory was complete when the promotion committed, nothing follows it.
    release = Release.objects.get(deployment=dep, ended_at__isnull=True)
    warmed = ErrorSample.objects.filter(deployment=dep, version__number=2)
    assert warmed.count() == 600 and not warmed.filter(revision__gt=release.memory_revision).exists()
    assert (job.status, job.device, job.metrics["version"], job.progress) == ("succeeded", "cpu", 2, 1.0)
    candidate = ModelVersion.objects.get(deployment=dep, number=2)
    assert candidate.origin_job_id == job.pk and candidate.parent is not None and candidate.parent.number == 1
    report = FlipReport.objects.get(deployment=dep)
    assert (report.job_id, report.old_version.number, report.new_version_id) == (evaluation_job.pk, 1, candidate.pk)
    assert report.n == 120 and report.gate_passed is True
    assert evaluation_job.params["retrain_job"] == job.pk and evaluation_job.metrics["promoted"] is True
    assert _live_number(dep) == 2
    assert release.actor_label == "policy" and release.reason.startswith("gates passed")


def test_a_candidate_that_fails_its_gate_is_rejected_and_never_served() -> None:
    dep = _deployment(gate_max_nfr=0.0)

    with celery_worker(["default", "gpu"]):
        retraining.request_retrain(deployment=dep, actor=None, reason="drift", params=FAST)
        evaluation_job = wait_for(
            lambda: Job.objects.filter(deployment=dep, kind=Job.Kind.EVALUATION, status=Job.Status.SUCCEEDED).first(),
            timeout=120,
        )

    report = FlipReport.objects.get(deployment=dep)
    assert report.gate_passed is False and any(r.startswith("fail: NFR") for r in report.gate_reasons)
    assert ModelVersion.objects.get(deployment=dep, number=2).status == ModelVersion.Status.REJECTED
    assert evaluation_job.metrics["promoted"] is False
    assert _live_number(dep) == 1
    assert not ErrorSample.objects.filter(version__number=2).exists()


def _pid_of(worker_name: str) -> int:
    """The worker process started by this test process (Linux: read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if worker_name.encode() in argv and parent == os.getpid():
            return int(entry.name)
    raise AssertionError(f"no process for worker {worker_name}")


def test_a_worker_killed_mid_round_leaves_the_live_version_and_the_sweep_fails_its_job(settings: Any) -> None:
    dep = _deployment(gate_max_nfr=1.0)
    slow = {"epochs": 5000, "batch_size": 8, "patience": None}  # minutes of work on the CPU

    with celery_worker(["default", "gpu"]) as (worker_name, _):
        job = retraining.request_retrain(deployment=dep, actor=None, reason="slow round", params=slow)
        wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, progress__gt=0).exists())
        with pytest.raises(Conflict, match="already queued or running"):
            retraining.request_retrain(deployment=dep, actor=None, reason="a second one", params=FAST)

        os.kill(_pid_of(worker_name), signal.SIGKILL)

        settings.STALE_JOB_SECONDS = 1
        wait_for(lambda: job.pk in training.sweep_stale()["failed"], timeout=30)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "stopped answering" in job.message
    assert job.message.startswith("worker") and job.progress < 0.1
    assert list(ModelVersion.objects.filter(deployment=dep).values_list("number", flat=True)) == [1]
    assert _live_number(dep) == 1
    assert not FlipReport.objects.filter(deployment=dep).exists()
    # The failed job no longer blocks the deployment.
    assert (
        retraining.request_retrain(deployment=dep, actor=None, reason="after the crash", params=FAST).status
        == Job.Status.QUEUED
    )
