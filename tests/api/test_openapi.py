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

from adaptive.models import AuditEntry, Deployment, Event, Job

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
    "/api/v1/deployments/{slug}/keys/{id}/revoke",
    "/api/v1/tokens",
    "/api/v1/tokens/{id}/revoke",
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
    assert {} in health["security"]  # no authentication needed (viewers who send it see more)


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
    browser.force_login(viewer_client.user)

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


# --- who may read the schema and the docs -----------------------------------------------------------


def test_the_schema_is_a_json_401_for_anonymous_callers(anon_client: APIClient) -> None:
    r = anon_client.get("/api/schema/")

    assert r.status_code == 401
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "not_authenticated"
    assert "WWW-Authenticate" in r
    assert b"openapi" not in r.content


@pytest.mark.parametrize("client_fixture", ["norole_client", "ingestion_key_client"])
def test_the_schema_is_a_json_403_without_a_viewer_role(request: pytest.FixtureRequest, client_fixture: str) -> None:
    client: APIClient = request.getfixturevalue(client_fixture)

    r = client.get("/api/schema/")

    assert r.status_code == 403
    assert r["Content-Type"].startswith("application/json")
    assert b"openapi" not in r.content


@pytest.fixture
def ingestion_key_client(ingest_client: APIClient) -> APIClient:
    return ingest_client


def test_the_schema_is_served_to_a_viewer_by_session(viewer_client: APIClient) -> None:
    browser = APIClient()
    browser.force_login(viewer_client.user)

    r = browser.get("/api/schema/", {"format": "json"})

    assert r.status_code == 200
    assert orjson.loads(r.content)["openapi"].startswith("3.")


def test_the_docs_send_an_anonymous_browser_to_the_login_page(anon_client: APIClient) -> None:
    r = anon_client.get("/api/docs/")

    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")
    assert "next=/api/docs/" in r["Location"]


def test_the_docs_render_for_a_viewer_token(viewer_client: APIClient) -> None:
    r = viewer_client.get("/api/docs/")

    assert r.status_code == 200
    assert 'id="swagger-ui"' in r.content.decode()


# --- the schema's promises, kept by the validators ---------------------------------------------------


def test_nullable_fields_are_marked(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]

    assert components["Deployment"]["properties"]["live_version"].get("nullable") is True
    assert components["ModelVersion"]["properties"]["parent"].get("nullable") is True


def test_request_bodies_are_closed_and_errors_documented(schema: dict[str, Any]) -> None:
    pause = schema["paths"]["/api/v1/deployments/{slug}/pause"]["post"]
    body = _resolve(schema, pause["requestBody"]["content"]["application/json"]["schema"])

    assert body["additionalProperties"] is False
    assert {"400", "401", "403", "404", "409", "413", "415", "429"} <= set(pause["responses"])
    assert "404" in schema["paths"]["/api/v1/deployments/{slug}/versions/{number}"]["get"]["responses"]
    assert "400" in schema["paths"]["/api/v1/deployments/{slug}/keys"]["post"]["responses"]
    limit = next(p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] == 1 and limit["schema"]["maximum"] == 500


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("pause", {"reason": 123}, "reason"),
        ("pause", {"reason": "x", "reson": "typo"}, "reson"),
        ("promote", {"version": "1", "reason": "x"}, "version"),
        ("retrain", {"reason": True}, "reason"),
    ],
)
def test_action_bodies_take_json_types_only(
    operator_client: APIClient, deployment: Deployment, path: str, body: dict[str, Any], field: str
) -> None:
    audited = AuditEntry.objects.count()

    r = operator_client.post(f"/api/v1/deployments/{deployment.slug}/{path}", body, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["field"] == field
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.ACTIVE
    assert AuditEntry.objects.count() == audited
    assert not Job.objects.exists()


def test_a_numeric_deployment_name_is_refused_not_turned_into_a_string(admin_client: APIClient, db: None) -> None:
    body = {"slug": "numbers", "name": 123, "task": "binary", "feature_schema": [{"name": "x", "type": "numeric"}]}

    r = admin_client.post("/api/v1/deployments", body, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["field"] == "name"
    assert not Deployment.objects.filter(slug="numbers").exists()


def test_a_settings_patch_refuses_a_number_for_a_switch(operator_client: APIClient, deployment: Deployment) -> None:
    url = f"/api/v1/deployments/{deployment.slug}"

    r = operator_client.patch(url, {"compensation_enabled": 0, "reason": 5}, format="json")

    assert r.status_code == 400, r.content
    assert r.json()["field"] in ("compensation_enabled", "reason")
    deployment.refresh_from_db()
    assert deployment.compensation_enabled is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2024-06-02T00:00:00Z&until=2024-06-01T00:00:00Z", "until"),
        ("since=2024-06-01T00:00:00Z&until=2024-06-01T00:00:00Z", "until"),
        ("until=", "until"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("offset=null", "offset"),
    ],
)
def test_bad_query_strings_are_a_400_naming_the_parameter(
    operator_client: APIClient, deployment: Deployment, query: str, field: str
) -> None:
    for endpoint in ("releases", "windows", "samples", "drift"):
        r = operator_client.get(f"/api/v1/deployments/{deployment.slug}/{endpoint}?{query}")

        assert r.status_code == 400, (endpoint, r.content)
        assert r.json()["field"] == field
