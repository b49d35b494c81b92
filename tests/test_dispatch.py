"""Follow-up work belongs to the domain action: whoever calls it, the job's message reaches the broker.

Each test routes every task to private queues (tests/worker.py), runs one entry point (a service called directly, the
REST API, the retrain policy), lets the transaction commit and reads the message back from the
real broker (the embedded file-system broker or Redis, whichever the run uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from adaptive.models import Deployment, Event, Job
from adaptive.services import dispatch, evaluation, ingest, monitoring, policy, registry, retraining
from tasks.celery import app
from tests.factories import WindowFactory, deployment_with_live_version, make_rows, model_artifacts
from tests.test_retraining import FAST
from tests.worker import private_queues

# The retrain trigger's alarm, as the monitoring service writes it on a window.
TRIGGERED = [{"kind": "retrain_trigger", "level": "drift", "calibrated": True, "reason": "compensated loss rose"}]


@pytest.fixture
def queue() -> Iterator[dict[str, str]]:
    """Every task of this process routed to fresh private queues ({real name: private name})."""
    with private_queues() as names:
        yield names
        _messages(names)


def _messages(names: dict[str, str]) -> list[tuple[str, str, list[Any]]]:
    """(task name, task id, args) of every message waiting on the private queues; consumes them."""
    found = []
    with app.connection_for_read() as conn:
        channel = conn.channel()
        try:
            for queue in names.values():
                # basic_get does not wait: the messages were published before this read.
                while (message := channel.basic_get(queue, no_ack=True)) is not None:
                    body = message.decode()
                    args = body[0] if isinstance(body, list) else []
                    found.append((message.headers["task"], message.headers["id"], list(args)))
        finally:
            channel.close()
    return found


def _sent_after_commit(
    capture: Callable[..., Any], queue: dict[str, str], action: Callable[[], Any]
) -> list[tuple[str, str, list[Any]]]:
    with capture(execute=True):
        action()
    return _messages(queue)


def test_the_tasks_app_registers_a_sender_for_every_kind_of_queued_work(db: None) -> None:
    assert set(dispatch.registered()) == {
        Job.Kind.COMPENSATION,
        Job.Kind.DRIFT_SCAN,
        Job.Kind.RETRAIN,
        Job.Kind.EVALUATION,
    }


def test_labels_recorded_by_the_service_itself_queue_the_memory_update(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()
    ingest.predict(deployment=dep, payload={"rows": [{"id": "e1", "features": make_rows(1)[0]}]})

    sent = _sent_after_commit(
        django_capture_on_commit_callbacks,
        queue,
        lambda: ingest.record_feedback(deployment=dep, payload={"labels": [{"id": "e1", "label": 1}]}),
    )

    job = Job.objects.get(kind=Job.Kind.COMPENSATION)
    assert sent == [("tasks.adaptation.update_memory", job.celery_task_id, [job.pk])]


def test_feedback_that_accepts_nothing_queues_nothing(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()

    sent = _sent_after_commit(
        django_capture_on_commit_callbacks,
        queue,
        lambda: ingest.record_feedback(deployment=dep, payload={"labels": [{"id": "nobody", "label": 1}]}),
    )

    assert sent == []
    assert not Job.objects.exists()


def test_feedback_through_the_api_gets_the_same_follow_up(
    operator_client: APIClient, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()
    rows = [{"id": "e1", "features": make_rows(1)[0]}]
    assert operator_client.post(f"/api/v1/deployments/{dep.slug}/predict", {"rows": rows}).status_code == 200

    sent = _sent_after_commit(
        django_capture_on_commit_callbacks,
        queue,
        lambda: operator_client.post(
            f"/api/v1/deployments/{dep.slug}/feedback", {"labels": [{"id": "e1", "label": 0}]}
        ),
    )

    assert [task for task, _, _ in sent] == ["tasks.adaptation.update_memory"]
    assert Event.objects.get(external_id="e1").label == 0


def test_a_retrain_requested_by_the_service_is_sent_and_a_rolled_back_one_is_not(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()

    def rolled_back() -> None:
        with transaction.atomic():
            retraining.request_retrain(deployment=dep, actor=None, reason="dry run", params=FAST)
            transaction.set_rollback(True)

    assert _sent_after_commit(django_capture_on_commit_callbacks, queue, rolled_back) == []

    sent = _sent_after_commit(
        django_capture_on_commit_callbacks,
        queue,
        lambda: retraining.request_retrain(deployment=dep, actor=None, reason="drift", params=FAST),
    )

    job = Job.objects.get(kind=Job.Kind.RETRAIN)
    assert sent == [("tasks.training.retrain", job.celery_task_id, [job.pk])]


def test_the_auto_policy_sends_the_retrain_it_requests(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy="auto")
    window = WindowFactory.create(deployment=dep, alarms=TRIGGERED)

    sent = _sent_after_commit(django_capture_on_commit_callbacks, queue, lambda: policy.act_on_window(dep, window))

    job = Job.objects.get(kind=Job.Kind.RETRAIN)
    assert sent == [("tasks.training.retrain", job.celery_task_id, [job.pk])]


def test_a_window_close_is_sent_by_its_service_once_while_queued(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()

    def twice() -> None:
        assert monitoring.request_close(dep) is not None
        assert monitoring.request_close(dep) is None  # coalesced: one queued at a time

    sent = _sent_after_commit(django_capture_on_commit_callbacks, queue, twice)

    scan = Job.objects.get(kind=Job.Kind.DRIFT_SCAN)
    assert sent == [("tasks.monitoring.close_window", scan.celery_task_id, [scan.pk])]


def test_an_evaluation_requested_by_the_service_is_sent(
    db: None, queue: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    dep = deployment_with_live_version()
    weights, spec = model_artifacts(seed=1)
    second, _ = registry.upload_version(deployment=dep, spec=spec, weights=weights, actor=None)

    sent = _sent_after_commit(
        django_capture_on_commit_callbacks,
        queue,
        lambda: evaluation.request_evaluation(deployment=dep, old_number=1, new_number=second.number, actor=None),
    )

    job = Job.objects.get(kind=Job.Kind.EVALUATION)
    assert sent == [("tasks.training.evaluate", job.celery_task_id, [job.pk])]
