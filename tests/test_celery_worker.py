"""A real worker on the real broker: a task round-trips, and health sees the worker."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tasks.celery import app
from tasks.system import ping
from tests.worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_task_round_trips_through_broker_and_worker():
    with celery_worker() as (_, queue):
        result = ping.apply_async(args=[{"n": 42}], queue=queue)
        reply = result.get(timeout=90)
    assert reply["pong"] == {"n": 42}
    assert reply["database"] is True
    assert reply["vendor"] in ("sqlite", "postgresql")


def test_tasks_are_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_health_lists_a_live_worker_and_reports_ok_once_every_loop_queue_has_a_consumer(settings, viewer_client):
    client = viewer_client  # anonymous callers get the status only
    with celery_worker() as (name, queue):
        body = wait_for(lambda: (b := client.get("/api/v1/health").json())["workers"]["count"] and b, timeout=90)
        assert name in body["workers"]["names"]
        # The worker consumes a private queue: the loop's own queues still have no consumer.
        assert body["status"] == "degraded"
        assert body["workers"]["queues_without_consumer"] == ["default", "gpu", "monitoring"]
        assert body["database"]["ok"] and body["broker"]["ok"]

        settings.LOOP_QUEUES = [queue]
        cache.delete("loop:workers")
        body = client.get("/api/v1/health").json()
        assert body["status"] == "ok", body
        assert body["workers"]["queues"] == {queue: {"consumers": [name]}}
        assert "last_error" not in body["workers"]["workers"][name]  # no error text, not even to viewers
        assert APIClient().get("/api/v1/health").json() == {"status": "ok"}
