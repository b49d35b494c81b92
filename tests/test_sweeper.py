"""The fast loop's beat sweeper (tasks.adaptation.sweep) repairs what a lost message left behind.

Run with a real worker on the test's private queues: the sweep itself runs in this process, as beat
would have it run on any worker, and the worker must then apply the labels. Nothing is mocked: a
"lost message" is a queued job whose message was never sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from adaptive import runtime
from adaptive.models import Deployment, ErrorSample, Event, Job
from adaptive.services import ingest
from tasks import adaptation
from tests.factories import deployment_with_live_version, make_rows
from tests.worker import celery_worker, private_queues, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _private_queues() -> Iterator[None]:
    runtime.clear_cache()
    with private_queues():
        yield
    runtime.clear_cache()


def _served(n: int, seed: int) -> Deployment:
    """A deployment that served ``n`` rows (events with their keys), none labeled yet."""
    dep = deployment_with_live_version()
    dep = Deployment.objects.select_related("live_version").get(pk=dep.pk)
    rows = [{"id": f"r-{i}", "features": row} for i, row in enumerate(make_rows(n, seed=seed))]
    ingest.predict(deployment=dep, payload={"rows": rows})
    return dep


def _label_silently(dep: Deployment) -> None:
    """Label every event of ``dep`` without queueing anything: labels no job was queued for."""
    Event.objects.filter(deployment=dep).update(label=1, labeled_at=timezone.now())


def _status(job: Job) -> str:
    return str(Job.objects.values_list("status", flat=True).get(pk=job.pk))


def test_a_job_queued_longer_than_resend_after_is_sent_again_and_runs() -> None:
    lost = _served(30, seed=31)
    recent = _served(10, seed=32)
    # Queued jobs whose message never reached the broker (the rows alone, as a broker outage at
    # commit leaves them): one queued for longer than RESEND_AFTER, one just now.
    old_job = Job.objects.create(deployment=lost, kind=Job.Kind.COMPENSATION)
    new_job = Job.objects.create(deployment=recent, kind=Job.Kind.COMPENSATION)
    Job.objects.filter(pk=old_job.pk).update(created_at=timezone.now() - adaptation.RESEND_AFTER - timedelta(seconds=5))
    _label_silently(lost)
    _label_silently(recent)

    with celery_worker(["default"]):
        result = adaptation.sweep()
        wait_for(lambda: _status(old_job) == Job.Status.SUCCEEDED, timeout=60)

    assert (result["resent"], result["requested"]) == (1, 0)
    assert ErrorSample.objects.filter(deployment=lost).count() == 30
    # The young job may still get its own message: the sweep leaves it alone.
    assert _status(new_job) == Job.Status.QUEUED
    assert not ErrorSample.objects.filter(deployment=recent).exists()


def test_labels_that_no_job_was_queued_for_get_an_update() -> None:
    dep = _served(25, seed=33)
    _label_silently(dep)
    assert not Job.objects.exists()

    with celery_worker(["default"]):
        result = adaptation.sweep()
        job = Job.objects.get(deployment=dep, kind=Job.Kind.COMPENSATION)
        wait_for(lambda: _status(job) == Job.Status.SUCCEEDED, timeout=60)

    assert result["requested"] == 1
    assert ErrorSample.objects.filter(deployment=dep, active=True).count() == 25
    assert not Event.objects.filter(deployment=dep, memory_revision__isnull=True).exists()
    # Nothing is pending any more: a second sweep queues nothing.
    assert adaptation.sweep()["requested"] == 0
