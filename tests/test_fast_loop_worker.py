"""The fast loop with a real Celery worker on the configured broker and database.

Feedback through the API queues a compensation update; the worker writes ErrorSamples and bumps
the memory revision; a later predict, in this process or in a separate web server process,
reflects it. Every test sends to and consumes private queues (tests.worker.private_queues).
Runs on both passes of bin/test (SQLite + file broker, PostgreSQL + Redis).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.models import Deployment, ErrorSample, Event, Job
from adaptive.services.keys import create_key
from tests.factories import DeploymentFactory, deployment_with_live_version, make_rows
from tests.worker import ROOT, celery_worker, private_queues, routed_command, wait_for
from tests.worker import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _private_queues() -> Iterator[None]:
    # For the whole test, not only while the worker runs: feedback sent before the worker starts
    # must wait for it in the test's own queue (and never reach a developer's worker on "default").
    runtime.clear_cache()
    with private_queues():
        yield
    runtime.clear_cache()


@pytest.fixture
def client_and_deployment() -> tuple[APIClient, Deployment]:
    dep = deployment_with_live_version()
    _, raw = create_key(deployment=dep, name="worker-test", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client, dep


def _predict(client: Any, slug: str, rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    body = {"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    r = (
        client.post(f"/api/v1/deployments/{slug}/predict", json=body)
        if isinstance(client, httpx.Client)
        else (client.post(f"/api/v1/deployments/{slug}/predict", body, format="json"))
    )
    assert r.status_code == 200, r.content
    out: list[dict[str, Any]] = r.json()["predictions"]
    return out


def _feedback(client: Any, slug: str, labels: list[tuple[str, int]]) -> None:
    body = {"labels": [{"id": i, "label": y} for i, y in labels]}
    r = (
        client.post(f"/api/v1/deployments/{slug}/feedback", json=body)
        if isinstance(client, httpx.Client)
        else (client.post(f"/api/v1/deployments/{slug}/feedback", body, format="json"))
    )
    assert r.status_code == 200, r.content


def _revision(dep: Deployment) -> int:
    return Deployment.objects.values_list("memory_revision", flat=True).get(pk=dep.pk)


def test_feedback_reaches_the_memory_and_changes_later_predictions(
    client_and_deployment: tuple[APIClient, Deployment],
) -> None:
    client, dep = client_and_deployment
    rows = make_rows(200, seed=11)
    first = _predict(client, dep.slug, rows, "a")

    with celery_worker(["default"]):
        _feedback(client, dep.slug, [(p["id"], 1) for p in first])
        wait_for(lambda: ErrorSample.objects.filter(deployment=dep).count() == 200, timeout=60)

    assert _revision(dep) >= 1
    again = _predict(client, dep.slug, rows, "b")
    assert all(p["score"] > p["base_score"] + 0.05 for p in again)
    job = Job.objects.filter(deployment=dep, kind=Job.Kind.COMPENSATION).latest("created_at")
    assert job.status == Job.Status.SUCCEEDED and job.metrics["applied"] == 200


def test_labels_sent_while_the_worker_is_down_coalesce_into_one_job_and_none_is_lost(
    client_and_deployment: tuple[APIClient, Deployment],
) -> None:
    client, dep = client_and_deployment
    out = _predict(client, dep.slug, make_rows(60, seed=12), "a")
    for start in range(0, 60, 3):  # twenty feedback calls, no worker running
        _feedback(client, dep.slug, [(p["id"], start % 2) for p in out[start : start + 3]])

    jobs = Job.objects.filter(deployment=dep, kind=Job.Kind.COMPENSATION)
    assert [j.status for j in jobs] == [Job.Status.QUEUED]
    assert not ErrorSample.objects.exists()

    with celery_worker(["default"]):
        wait_for(lambda: ErrorSample.objects.filter(deployment=dep).count() == 60, timeout=60)
        wait_for(lambda: not Job.objects.filter(deployment=dep, status__in=Job.ACTIVE_STATUSES).exists())

    assert jobs.count() == 1 and jobs.get().metrics["applied"] == 60
    assert not Event.objects.filter(deployment=dep, label__isnull=False, memory_revision__isnull=True).exists()


def test_feedback_during_updates_gives_bounded_jobs_and_applies_every_label(
    client_and_deployment: tuple[APIClient, Deployment],
) -> None:
    client, dep = client_and_deployment
    out = _predict(client, dep.slug, make_rows(150, seed=13), "a")

    with celery_worker(["default"]):
        for p in out:  # 150 feedback calls of one label each, while the worker applies them
            _feedback(client, dep.slug, [(p["id"], 1)])
        wait_for(lambda: ErrorSample.objects.filter(deployment=dep).count() == 150, timeout=90)
        wait_for(lambda: not Job.objects.filter(deployment=dep, status__in=Job.ACTIVE_STATUSES).exists())

    jobs = Job.objects.filter(deployment=dep, kind=Job.Kind.COMPENSATION)
    assert 1 <= jobs.count() < 150
    assert sum(j.metrics["applied"] for j in jobs) == 150
    assert {j.status for j in jobs} == {Job.Status.SUCCEEDED}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web_server() -> Iterator[str]:
    """gunicorn serving the test database in its own process."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "SECRET_KEY": "test-secret",
        "HTTPS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = Path(settings.VAR_DIR) / f"gunicorn-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            # Routed like this process: its feedback messages go to the test's private queue.
            routed_command("gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(url) or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, log_path.read_text()
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    log_path.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/v1/health", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_a_separate_web_process_picks_up_new_revisions_without_a_restart(web_server: str) -> None:
    dep = deployment_with_live_version()
    _, raw = create_key(deployment=dep, name="web", actor=None)
    rows = make_rows(100, seed=14)
    with httpx.Client(base_url=web_server, headers={"Authorization": f"Key {raw}"}, timeout=30) as http:
        first = _predict(http, dep.slug, rows, "a")
        assert {p["memory_revision"] for p in first} == {0}
        with celery_worker(["default"]):
            _feedback(http, dep.slug, [(p["id"], 1) for p in first])
            wait_for(lambda: _revision(dep) >= 1, timeout=60)
        deadline = time.monotonic() + 10
        again = _predict(http, dep.slug, rows, "b")
        while again[0]["memory_revision"] < 1 and time.monotonic() < deadline:
            again = _predict(http, dep.slug, rows, f"b{time.monotonic_ns()}")

    assert {p["memory_revision"] for p in again} == {_revision(dep)}
    assert all(p["score"] > p["base_score"] + 0.05 for p in again)


def test_an_external_deployment_learns_from_feedback_on_its_own_scores() -> None:
    dep = DeploymentFactory.create(serving=Deployment.Serving.EXTERNAL, key_dim=4, feature_schema=[])
    _, raw = create_key(deployment=dep, name="ext", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    keys = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    rows = [{"id": f"e{i}", "score": 0.2, "key": keys[i % 2]} for i in range(40)]
    r = client.post(f"/api/v1/deployments/{dep.slug}/compensate", {"rows": rows}, format="json")
    assert r.status_code == 200, r.content
    assert all(
        p["score"] == p["base_score"] == pytest.approx(0.2) and p["version"] is None for p in r.json()["predictions"]
    )

    with celery_worker(["default"]):
        # Rows near the first key turned out positive, near the second negative.
        _feedback(client, dep.slug, [(f"e{i}", 1 - i % 2) for i in range(40)])
        wait_for(lambda: ErrorSample.objects.filter(deployment=dep, version__isnull=True).count() == 40, timeout=60)

    probe = [
        {"id": "p0", "score": 0.2, "key": [0.9, 0.1, 0.0, 0.0]},
        {"id": "p1", "score": 0.2, "key": [0.1, 0.9, 0, 0]},
    ]
    out = client.post(f"/api/v1/deployments/{dep.slug}/compensate", {"rows": probe}, format="json").json()[
        "predictions"
    ]
    assert out[0]["score"] > 0.5 > 0.2 >= out[1]["score"]
