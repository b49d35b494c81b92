"""The OpenAPI document and the interactive docs: complete, with examples, and served without a CDN."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from adaptive.models import Deployment, Event

V1_PATHS = [
    "/api/v1/overview",
    "/api/v1/audit",
    "/api/v1/deployments/{slug}/curve",
    "/api/v1/health",
    "/api/v1/loop",
    "/api/v1/deployments",
    "/api/v1/deployments/{slug}",
    "/api/v1/deployments/{slug}/versions",
    "/api/v1/deployments/{slug}/versions/{number}",
    "/api/v1/deployments/{slug}/keys",
    "/api/v1/deployments/{slug}/predict",
    "/api/v1/deployments/{slug}/compensate",
    "/api/v1/deployments/{slug}/feedback",
    "/api/v1/deployments/{slug}/windows",
    "/api/v1/deployments/{slug}/windows/{id}",
    "/api/v1/deployments/{slug}/drift",
    "/api/v1/deployments/{slug}/detectors",
    "/api/v1/deployments/{slug}/detectors/signals",
    "/api/v1/deployments/{slug}/memory",
    "/api/v1/deployments/{slug}/samples",
    "/api/v1/deployments/{slug}/promote",
    "/api/v1/deployments/{slug}/rollback",
    "/api/v1/deployments/{slug}/pause",
    "/api/v1/deployments/{slug}/resume",
    "/api/v1/deployments/{slug}/reset-memory",
    "/api/v1/deployments/{slug}/retrain",
    "/api/v1/deployments/{slug}/compare",
    "/api/v1/deployments/{slug}/releases",
    "/api/v1/deployments/{slug}/live",
    "/api/v1/deployments/{slug}/flip-reports",
    "/api/v1/deployments/{slug}/flip-reports/{id}",
    "/api/v1/jobs",
    "/api/v1/jobs/{id}",
    "/api/v1/jobs/{id}/cancel",
]


@pytest.fixture
def schema(viewer_client: APIClient) -> dict[str, Any]:
    r = viewer_client.get("/api/schema/", {"format": "json"})
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("application/vnd.oai.openapi+json")
    doc: dict[str, Any] = orjson.loads(r.content)
    return doc


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = doc["components"]["schemas"][name]
    return resolved


def test_schema_is_a_valid_openapi_document(schema: dict[str, Any]) -> None:
    validate_schema(schema)  # raises on an invalid document

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Adaptive control room API"


def test_schema_lists_every_v1_path(schema: dict[str, Any]) -> None:
    assert sorted(p for p in schema["paths"] if p.startswith("/api/v1/")) == sorted(V1_PATHS)
    assert set(schema["paths"]["/api/v1/deployments/{slug}/versions"]) == {"get", "post"}
    assert set(schema["paths"]["/api/v1/deployments/{slug}/keys"]) == {"get", "post"}


@pytest.mark.parametrize(
    ("action", "batch_key", "item_fields"),
    [("predict", "rows", {"id", "ts", "features"}), ("feedback", "labels", {"id", "label"})],
)
def test_ingestion_request_bodies_are_documented_with_examples(
    schema: dict[str, Any], action: str, batch_key: str, item_fields: set[str]
) -> None:
    operation = schema["paths"][f"/api/v1/deployments/{{slug}}/{action}"]["post"]
    body = operation["requestBody"]["content"]["application/json"]

    request = _resolve(schema, body["schema"])
    assert batch_key in request["required"]
    item = _resolve(schema, request["properties"][batch_key]["items"])
    assert set(item["properties"]) == item_fields
    (example,) = body["examples"].values()
    assert batch_key in example["value"] and example["value"][batch_key]
    assert {"200", "400"} <= set(operation["responses"])
    assert operation["description"]


def test_upload_is_documented_as_multipart_with_weights_and_spec(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/v1/deployments/{slug}/versions"]["post"]

    assert set(operation["requestBody"]["content"]) == {"multipart/form-data"}
    upload = _resolve(schema, operation["requestBody"]["content"]["multipart/form-data"]["schema"])
    assert upload["properties"]["weights"]["format"] == "binary"
    assert {"weights", "spec"} <= set(upload["required"])


def test_both_authentication_schemes_are_documented(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    predict = schema["paths"]["/api/v1/deployments/{slug}/predict"]["post"]
    health = schema["paths"]["/api/v1/health"]["get"]

    assert {"ingestionKey", "tokenAuth"} <= set(schemes)
    assert {"ingestionKey": []} in predict["security"]
    assert health["security"] == [{}]  # no authentication


@pytest.mark.parametrize("action", ["predict", "feedback"])
def test_ingestion_endpoints_document_only_the_json_body_they_accept(
    schema: dict[str, Any], operator_client: APIClient, deployment: Deployment, action: str
) -> None:
    # Given the endpoint really refuses a form-encoded body...
    r = operator_client.post(f"/api/v1/deployments/{deployment.slug}/{action}", {"rows": "x"}, format="multipart")
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert not Event.objects.exists()

    # ...the document must not offer it.
    content = schema["paths"][f"/api/v1/deployments/{{slug}}/{action}"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json"}


def test_docs_render_for_a_logged_in_user_without_a_cdn(viewer_client: APIClient) -> None:
    browser = APIClient()
    browser.force_login(viewer_client.user)  # type: ignore[attr-defined]

    r = browser.get("/api/docs/")

    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/html")
    html = r.content.decode()
    assert 'id="swagger-ui"' in html
    assert "/api/schema/" in html
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources)
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    # Every asset the page loads ships with the project (drf-spectacular-sidecar), so the docs work offline.
    for source in sources:
        assert source.startswith(
            settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL
        )
        assert finders.find(source.split("/static/", 1)[1]), source
