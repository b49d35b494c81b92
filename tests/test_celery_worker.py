"""A real worker on the real broker: a task round-trips, and health sees the worker."""

from __future__ import annotations

import pytest
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


def test_health_lists_a_live_worker_and_reports_ok():
    client = APIClient()
    with celery_worker() as (name, _):
        body = wait_for(lambda: (b := client.get("/api/v1/health").json())["workers"]["count"] and b, timeout=90)
        assert name in body["workers"]["names"]
        assert body["status"] == "ok"
        assert body["database"]["ok"] and body["broker"]["ok"]
