"""Training ranges on upload: a spec's optional data_start/data_end are checked, stored, compared on
retries and shown by the versions API and the lineage page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from adaptive.models import Deployment, ModelVersion
from tests.factories import UserFactory, model_artifacts, upload_payload

NONE = "\N{EN DASH}"  # how the lineage table shows a missing end


def _upload(client: APIClient, deployment: Deployment, spec: dict[str, Any], *, seed: int = 0) -> Any:
    weights, base = model_artifacts(seed=seed)
    url = f"/api/v1/deployments/{deployment.slug}/versions"
    return client.post(url, upload_payload(weights, {**base, **spec}), format="multipart")


def _lineage_html(deployment: Deployment) -> str:
    client = Client()
    user = UserFactory.create(role="viewer")
    assert client.login(username=user.username, password="pw-for-tests-123")
    response = client.get(f"/deployments/{deployment.slug}/versions/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_range_is_stored_in_utc_and_shown_by_the_api_and_the_lineage_page(
    operator_client: APIClient, empty_deployment: Deployment
) -> None:
    r = _upload(
        operator_client,
        empty_deployment,
        {"data_start": "2024-01-01T02:00:00+02:00", "data_end": "2024-03-01T00:00:00Z"},
    )

    assert r.status_code == 201, r.content
    assert (r.json()["data_start"], r.json()["data_end"]) == ("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z")
    version = ModelVersion.objects.get(deployment=empty_deployment, number=1)
    assert version.data_start == datetime(2024, 1, 1, tzinfo=UTC)
    assert version.data_end == datetime(2024, 3, 1, tzinfo=UTC)
    listed = operator_client.get(f"/api/v1/deployments/{empty_deployment.slug}/versions").json()["results"]
    assert (listed[0]["data_start"], listed[0]["data_end"]) == ("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z")
    html = _lineage_html(empty_deployment)
    assert (
        '<time datetime="2024-01-01T00:00:00+00:00">2024-01-01 00:00</time> → '
        '<time datetime="2024-03-01T00:00:00+00:00">2024-03-01 00:00</time> UTC'
    ) in html


def test_either_end_may_be_given_alone_and_null_means_not_given(
    operator_client: APIClient, empty_deployment: Deployment
) -> None:
    only_end = _upload(operator_client, empty_deployment, {"data_start": None, "data_end": "2024-03-01T12:30:00Z"})
    only_start = _upload(operator_client, empty_deployment, {"data_start": "2024-01-01T00:00:00Z"}, seed=1)
    neither = _upload(operator_client, empty_deployment, {}, seed=2)

    assert [r.status_code for r in (only_end, only_start, neither)] == [201, 201, 201]
    assert (only_end.json()["data_start"], only_end.json()["data_end"]) == (None, "2024-03-01T12:30:00Z")
    assert (only_start.json()["data_start"], only_start.json()["data_end"]) == ("2024-01-01T00:00:00Z", None)
    assert (neither.json()["data_start"], neither.json()["data_end"]) == (None, None)
    html = _lineage_html(empty_deployment)
    assert f'{NONE} → <time datetime="2024-03-01T12:30:00+00:00">2024-03-01 12:30</time> UTC' in html
    assert f'<time datetime="2024-01-01T00:00:00+00:00">2024-01-01 00:00</time> → {NONE} UTC' in html


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"data_start": "2024-01-01T00:00:00"}, "spec.data_start", "has no timezone"),
        ({"data_end": "2024-01-01"}, "spec.data_end", "has no timezone"),
        ({"data_start": "yesterday"}, "spec.data_start", "ISO 8601"),
        ({"data_start": "2024-02-30T00:00:00Z"}, "spec.data_start", "ISO 8601"),
        ({"data_end": 1704067200}, "spec.data_end", "ISO 8601"),
        ({"data_end": ["2024-01-01T00:00:00Z"]}, "spec.data_end", "ISO 8601"),
        ({"data_start": "2024-01-01T00:00:00Z" + " " * 100}, "spec.data_start", "ISO 8601"),
        ({"data_start": "0001-01-01T00:00:00+01:00"}, "spec.data_start", "out of range"),
        (
            {"data_start": "2024-03-01T00:00:00Z", "data_end": "2024-03-01T01:59:00+02:00"},
            "spec.data_end",
            "before spec.data_start",
        ),
    ],
)
def test_a_bad_range_is_a_400_naming_the_field_and_registers_nothing(
    operator_client: APIClient, empty_deployment: Deployment, spec: dict[str, Any], field: str, reason: str
) -> None:
    r = _upload(operator_client, empty_deployment, spec)

    assert r.status_code == 400, r.content
    body = r.json()
    assert (body["error"], body["field"]) == ("invalid", field)
    assert reason in body["detail"]
    assert not ModelVersion.objects.filter(deployment=empty_deployment).exists()


def test_an_empty_range_is_allowed(operator_client: APIClient, empty_deployment: Deployment) -> None:
    instant = "2024-03-01T00:00:00Z"
    r = _upload(operator_client, empty_deployment, {"data_start": instant, "data_end": "2024-03-01T01:00:00+01:00"})

    assert r.status_code == 201, r.content
    assert r.json()["data_start"] == r.json()["data_end"] == instant


def test_a_retry_with_the_same_range_is_idempotent_and_a_new_range_is_a_new_version(
    operator_client: APIClient, empty_deployment: Deployment
) -> None:
    spec = {"data_start": "2024-01-01T00:00:00Z", "data_end": "2024-03-01T00:00:00Z"}
    first = _upload(operator_client, empty_deployment, spec)
    retry = _upload(operator_client, empty_deployment, spec)
    # The same instants written with an offset are the same range.
    same_instants = _upload(
        operator_client, empty_deployment, {"data_start": "2024-01-01T01:00:00+01:00", "data_end": spec["data_end"]}
    )
    other_end = _upload(operator_client, empty_deployment, {**spec, "data_end": "2024-04-01T00:00:00Z"})
    no_range = _upload(operator_client, empty_deployment, {})

    assert (first.status_code, retry.status_code, same_instants.status_code) == (201, 200, 200)
    assert first.json()["number"] == retry.json()["number"] == same_instants.json()["number"] == 1
    assert (other_end.status_code, other_end.json()["number"]) == (201, 2)
    assert (no_range.status_code, no_range.json()["number"]) == (201, 3)
    assert _upload(operator_client, empty_deployment, {}).json()["number"] == 3
    assert ModelVersion.objects.filter(deployment=empty_deployment).count() == 3
