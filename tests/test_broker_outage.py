"""A broker that cannot be reached: requests still succeed, the job waits, the sweeper re-sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive.models import Event, Job
from adaptive.services.keys import create_key
from tasks.celery import app
from tests.factories import deployment_with_live_version, make_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unreachable_broker() -> Iterator[None]:
    """Point the Celery app at a port where nothing listens (a real connection failure)."""
    saved = {k: app.conf[k] for k in ("broker_url", "broker_transport_options", "task_publish_retry")}
    _drop_connections()
    app.conf.update(broker_url="redis://127.0.0.1:9/0", broker_transport_options={}, task_publish_retry=False)
    yield
    _drop_connections()
    app.conf.update(saved)
    _drop_connections()


def _drop_connections() -> None:
    """Make the app look its pools up again for the current broker URL.

    Pools live in kombu's process-wide registry, keyed by URL: closing one would break every later
    use of that broker in this process, so they are only forgotten here, never closed.
    """
    app._pool = None
    app.amqp._producer_pool = None


def test_feedback_succeeds_while_the_broker_is_down_and_the_job_stays_queued(unreachable_broker: Any) -> None:
    # An ingestion key, not a role client: transactional tests flush the role groups.
    deployment = deployment_with_live_version()
    _, raw = create_key(deployment=deployment, name="outage", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    rows = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(5))]
    url = f"/api/v1/deployments/{deployment.slug}"
    assert client.post(f"{url}/predict", {"rows": rows}, format="json").status_code == 200

    r = client.post(f"{url}/feedback", {"labels": [{"id": "r0", "label": 1}]}, format="json")

    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert Event.objects.get(external_id="r0").label == 1
    job = Job.objects.get(deployment=deployment, kind=Job.Kind.COMPENSATION)
    assert job.status == Job.Status.QUEUED  # tasks.adaptation.sweep re-sends it once the broker is back
