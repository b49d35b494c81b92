"""The lists' query parameters (api.filters): documented in the schema as the server validates them.

Each list's FilterSet declares its parameters once; drf-spectacular documents them from the same
DRF fields that validate them, so a bound, an enum or a repeated parameter is stated in the schema
and enforced by the server alike.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment, Job
from tests.factories import DriftMetricFactory, WindowFactory

LISTS = {
    "/api/v1/deployments/{slug}/windows": {"since", "until", "version", "order"},
    "/api/v1/deployments/{slug}/drift": {"since", "until", "version", "order", "column", "column_kind", "level"},
    "/api/v1/deployments/{slug}/detectors/signals": {"since", "until", "version", "order"},
    "/api/v1/deployments/{slug}/samples": {"since", "until", "version", "active", "label"},
    "/api/v1/deployments/{slug}/releases": {"since", "until"},
    "/api/v1/deployments/{slug}/flip-reports": {"new", "old"},
    "/api/v1/jobs": {"deployment", "kind", "status"},
    "/api/v1/audit": {"since", "until", "deployment", "actor", "action"},
}


@pytest.fixture
def schema(viewer_client: APIClient) -> dict[str, Any]:
    r = viewer_client.get("/api/schema/", {"format": "json"})
    assert r.status_code == 200, r.content
    doc: dict[str, Any] = orjson.loads(r.content)
    return doc


def _query_parameters(schema: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"}


@pytest.mark.parametrize(("path", "names"), LISTS.items())
def test_every_list_documents_its_filters_once_next_to_the_page_parameters(
    schema: dict[str, Any], path: str, names: set[str]
) -> None:
    documented = [p["name"] for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"]

    assert names | {"limit", "offset"} <= set(documented)
    assert len(documented) == len(set(documented)), documented


def test_the_schema_states_the_filters_types_bounds_and_choices(schema: dict[str, Any]) -> None:
    windows = _query_parameters(schema, "/api/v1/deployments/{slug}/windows")
    drift = _query_parameters(schema, "/api/v1/deployments/{slug}/drift")
    jobs = _query_parameters(schema, "/api/v1/jobs")

    assert windows["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert "later than `since`" in windows["until"]["description"]
    assert windows["version"]["schema"] == {"type": "integer", "minimum": 1}
    assert windows["order"]["schema"]["enum"] == ["asc", "desc"]
    assert drift["column"]["schema"]["type"] == "array"
    assert drift["column"].get("explode", True) is True  # ?column=a&column=b
    assert set(drift["level"]["schema"]["items"]["enum"]) == {"ok", "warn", "drift"}
    assert set(jobs["status"]["schema"]["enum"]) == set(Job.Status.values)


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/audit", "since=soon", "since"),
        ("/api/v1/audit", "until=", "until"),
        ("/api/v1/audit", "since=2024-06-02T00:00:00Z&until=2024-06-01T00:00:00Z", "until"),
        ("/api/v1/audit", "deployment=nope", "deployment"),
        ("/api/v1/audit", "action=explode", "action"),
        ("/api/v1/jobs", "deployment=", "deployment"),
        ("/api/v1/jobs", "kind=x", "kind"),
        ("/api/v1/deployments/{slug}/flip-reports", "new=0", "new"),
        ("/api/v1/deployments/{slug}/flip-reports", "old=x", "old"),
        ("/api/v1/deployments/{slug}/drift", "column=" + "c" * 129, "column"),
        ("/api/v1/deployments/{slug}/drift", "level=ok&level=bad", "level"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    operator_client: APIClient, deployment: Deployment, path: str, query: str, field: str
) -> None:
    r = operator_client.get(f"{path.format(slug=deployment.slug)}?{query}")

    assert r.status_code == 400, r.content
    body = r.json()
    assert (body["error"], body["field"]) == ("invalid", field)
    assert body["detail"].startswith(f"{field}: ")


def test_the_audit_log_filters_by_deployment_actor_and_action(
    viewer_client: APIClient, deployment: Deployment, other_deployment: Deployment
) -> None:
    mine = AuditEntry.objects.create(deployment=deployment, actor_label="alice", action=AuditEntry.Action.PAUSE)
    AuditEntry.objects.create(deployment=deployment, actor_label="bob", action=AuditEntry.Action.PAUSE)
    AuditEntry.objects.create(deployment=other_deployment, actor_label="alice", action=AuditEntry.Action.PAUSE)
    AuditEntry.objects.create(deployment=deployment, actor_label="alice", action=AuditEntry.Action.RESUME)

    r = viewer_client.get("/api/v1/audit", {"deployment": deployment.slug, "actor": "alice", "action": "pause"})

    assert r.status_code == 200, r.content
    assert [row["id"] for row in r.json()["results"]] == [mine.pk]


def test_newest_first_drift_keeps_columns_in_order_within_a_window(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    # `order=desc` reverses the windows, not the columns of each window.
    older = WindowFactory.create(deployment=deployment)
    newer = WindowFactory.create(deployment=deployment, start=older.start + timedelta(hours=2))
    for window in (older, newer):
        for column in ("b", "a"):
            DriftMetricFactory.create(window=window, column=column)

    r = viewer_client.get(f"/api/v1/deployments/{deployment.slug}/drift", {"order": "desc"})

    assert r.status_code == 200, r.content
    rows = [(row["window"], row["column"]) for row in r.json()["results"]]
    assert rows == [(newer.pk, "a"), (newer.pk, "b"), (older.pk, "a"), (older.pk, "b")]
