"""Users' API tokens: stored hashed, shown once, expiring, revocable; managed over /api/v1/tokens."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from adaptive import credential_cache
from adaptive.models import ApiToken, AuditEntry
from adaptive.services import tokens
from tests.clock import Clock
from tests.factories import UserFactory

TOKENS = "/api/v1/tokens"


def _bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def _stored_columns(token: ApiToken) -> list[str]:
    return [str(value) for value in ApiToken.objects.filter(pk=token.pk).values_list().get()]


def test_a_created_token_is_shown_once_stored_hashed_and_works(operator_client: APIClient) -> None:
    response = operator_client.post(TOKENS, {"name": "ci", "expires_in_days": 30}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["token"]
    assert raw.startswith("at_") and body["status"] == "active" and body["user"] == operator_client.user.username
    token = ApiToken.objects.get(pk=body["id"])
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert not any(raw in column for column in _stored_columns(token))
    assert token.expires_at is not None
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    entry = AuditEntry.objects.get(action=AuditEntry.Action.CREATE_TOKEN, details__token_id=token.pk)
    assert entry.actor == operator_client.user and raw not in str(entry.details)

    listed = _bearer(raw).get(TOKENS)
    assert listed.status_code == 200
    assert {row["name"] for row in listed.json()["results"]} == {"tests", "ci"}
    assert raw not in listed.content.decode()
    assert "token" not in listed.json()["results"][0]


def test_a_revoked_token_is_refused_at_once_and_revoking_again_changes_nothing(operator_client: APIClient) -> None:
    raw = operator_client.post(TOKENS, {"name": "laptop"}, format="json").json()["token"]
    token = tokens.find_token(raw)
    assert token is not None and _bearer(raw).get("/api/v1/deployments").status_code == 200

    first = operator_client.post(f"{TOKENS}/{token.pk}/revoke", {"reason": "laptop lost"}, format="json")
    again = operator_client.post(f"{TOKENS}/{token.pk}/revoke")

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "revoked" and first.json()["revoked_at"] == again.json()["revoked_at"]
    refused = _bearer(raw).get("/api/v1/deployments")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.REVOKE_TOKEN, details__token_id=token.pk)
    assert [entry.reason for entry in entries] == ["laptop lost"]
    assert operator_client.get("/api/v1/deployments").status_code == 200  # the other token still works


def test_an_expired_token_is_refused_saying_when_it_expired(viewer_client: APIClient) -> None:
    user = viewer_client.user
    token, raw = tokens.create_token(user=user, name="short", actor=user, expires_at=timezone.now() + timedelta(days=1))
    assert _bearer(raw).get("/api/v1/deployments").status_code == 200
    past = timezone.now() - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(created_at=past - timedelta(days=1), expires_at=past)
    # The row changed behind the process's back: the token it remembers is read again after
    # AUTH_CACHE_SECONDS (tests/api/test_credential_cache.py), here at once.
    credential_cache.clear_all()

    response = _bearer(raw).get("/api/v1/deployments")

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert tokens.find_active(raw) is None


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token", "expected 'Token <token>'"),
        ("Token a b", "expected 'Token <token>'"),
        ("Token at_0123456789_forged", "Invalid token"),
        ("Token " + "0f" * 20, "Invalid token"),
        ("Token not-even-a-token", "Invalid token"),
    ],
)
def test_malformed_or_unknown_tokens_are_401(db: None, header: str, detail: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/deployments")
    assert response.status_code == 401
    assert detail in response.json()["detail"]


def test_a_token_of_an_inactive_user_is_refused(viewer_client: APIClient) -> None:
    user = viewer_client.user
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert viewer_client.get("/api/v1/deployments").status_code == 401


BAD_BODIES = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": 123}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "ci", "expires_in_days": 0}, "expires_in_days"),
    ({"name": "ci", "expires_in_days": 3651}, "expires_in_days"),
    ({"name": "ci", "expires_in_days": "7"}, "expires_in_days"),
    ({"name": "ci", "expires_in_days": 1.5}, "expires_in_days"),
    ({"name": "ci", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "ci", "expires_at": "3000-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "ci", "expires_at": "tomorrow"}, "expires_at"),
    ({"name": "ci", "expires_in_days": 3, "expires_at": "2100-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "ci", "scope": "admin"}, "scope"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_create_bodies_are_400_naming_the_field_and_store_nothing(
    operator_client: APIClient, body: dict[str, Any], field: str
) -> None:
    before = (ApiToken.objects.count(), AuditEntry.objects.count())

    response = operator_client.post(TOKENS, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid" and response.json()["field"] == field
    assert (ApiToken.objects.count(), AuditEntry.objects.count()) == before


def test_a_user_holds_a_bounded_number_of_active_tokens(operator_client: APIClient, monkeypatch) -> None:
    monkeypatch.setattr(tokens, "MAX_ACTIVE_PER_USER", 2)  # the fixture's token is the first
    assert operator_client.post(TOKENS, {"name": "second"}, format="json").status_code == 201

    refused = operator_client.post(TOKENS, {"name": "third"}, format="json")

    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert ApiToken.objects.filter(user=operator_client.user).count() == 2


def test_users_revoke_only_their_own_tokens_and_admins_anyones(
    viewer_client: APIClient, operator_client: APIClient, admin_client: APIClient
) -> None:
    viewer = viewer_client.user
    token, raw = tokens.create_token(user=viewer, name="victim", actor=viewer)

    stranger = operator_client.post(f"{TOKENS}/{token.pk}/revoke", {"reason": "mine now"}, format="json")

    assert stranger.status_code == 404
    assert tokens.find_active(raw) is not None
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.REVOKE_TOKEN).exists()
    assert admin_client.post(f"{TOKENS}/{token.pk}/revoke", {"reason": "offboarding"}, format="json").status_code == 200
    assert _bearer(raw).get("/api/v1/deployments").status_code == 401
    entry = AuditEntry.objects.get(action=AuditEntry.Action.REVOKE_TOKEN)
    assert (entry.actor, entry.details["user"]) == (admin_client.user, viewer.username)


def test_lists_show_own_tokens_and_admins_may_ask_for_a_user(viewer_client: APIClient, admin_client: APIClient) -> None:
    viewer = viewer_client.user
    tokens.create_token(user=viewer, name="second", actor=viewer)

    own = viewer_client.get(TOKENS).json()
    assert own["count"] == 2 and {row["user"] for row in own["results"]} == {viewer.username}
    page = viewer_client.get(f"{TOKENS}?limit=1&offset=1").json()
    assert page["count"] == 2 and [row["name"] for row in page["results"]] == ["tests"]
    assert viewer_client.get(f"{TOKENS}?user={admin_client.user.username}").status_code == 403
    as_admin = admin_client.get(f"{TOKENS}?user={viewer.username}").json()
    assert [row["name"] for row in as_admin["results"]] == ["second", "tests"]
    unknown = admin_client.get(f"{TOKENS}?user=nobody")
    assert unknown.status_code == 400 and unknown.json()["field"] == "user"


def test_a_user_without_a_role_still_manages_their_own_tokens(norole_client: APIClient) -> None:
    assert norole_client.get("/api/v1/deployments").status_code == 403
    [own] = norole_client.get(TOKENS).json()["results"]
    assert norole_client.post(f"{TOKENS}/{own['id']}/revoke").status_code == 200
    assert norole_client.get(TOKENS).status_code == 401


def test_ingestion_keys_and_anonymous_clients_have_no_tokens(ingest_client: APIClient, anon_client: APIClient) -> None:
    before = ApiToken.objects.count()
    assert ingest_client.get(TOKENS).status_code == 403
    assert ingest_client.post(TOKENS, {"name": "escalate"}, format="json").status_code == 403
    assert anon_client.post(TOKENS, {"name": "anon"}, format="json").status_code == 401
    assert ApiToken.objects.count() == before


def test_authentication_reads_the_token_once_per_cache_period_and_writes_last_used_at_at_most_once_a_minute(
    viewer_client: APIClient, credential_clock: Clock, settings: Any
) -> None:
    token = ApiToken.objects.get(user=viewer_client.user)
    assert token.last_used_at is None

    with CaptureQueriesContext(connection) as first:
        assert viewer_client.get(TOKENS).status_code == 200
    used = ApiToken.objects.get(pk=token.pk).last_used_at
    with CaptureQueriesContext(connection) as second:
        assert viewer_client.get(TOKENS).status_code == 200
    credential_clock.now += settings.AUTH_CACHE_SECONDS
    with CaptureQueriesContext(connection) as third:
        assert viewer_client.get(TOKENS).status_code == 200

    def lookups(queries: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in queries.captured_queries if '"adaptive_apitoken"."prefix" = ' in q["sql"]]

    # One lookup by prefix; within AUTH_CACHE_SECONDS the process remembers the token; then reads it again.
    assert (len(lookups(first)), len(lookups(second)), len(lookups(third))) == (1, 0, 1)
    # No write within the minute.
    assert any(q["sql"].startswith("UPDATE") for q in first.captured_queries)
    for later in (second, third):
        assert not any(q["sql"].startswith("UPDATE") and "apitoken" in q["sql"] for q in later.captured_queries)
    assert used is not None and ApiToken.objects.get(pk=token.pk).last_used_at == used

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=used - timedelta(minutes=2))
    credential_clock.now += settings.AUTH_CACHE_SECONDS
    assert viewer_client.get(TOKENS).status_code == 200
    last_used_at = ApiToken.objects.get(pk=token.pk).last_used_at
    assert last_used_at is not None and last_used_at > used


def test_the_schema_documents_the_token_endpoints_and_scheme(admin_client: APIClient) -> None:
    schema = admin_client.get("/api/schema/?format=json").json()
    assert {"/api/v1/tokens", "/api/v1/tokens/{id}/revoke", "/api/v1/deployments/{slug}/keys/{id}/revoke"} <= set(
        schema["paths"]
    )
    assert "revoked" in schema["components"]["securitySchemes"]["tokenAuth"]["description"]


# --- management commands -----------------------------------------------------------------------------


def test_create_token_prints_a_working_token_once(db: None) -> None:
    user = UserFactory.create(username="olga", role="operator")
    out, err = io.StringIO(), io.StringIO()

    call_command("create_token", "olga", "--name", "deploy bot", "--expires-in-days", "7", stdout=out, stderr=err)

    raw = out.getvalue().strip()
    token = tokens.find_active(raw)
    assert token is not None and token.user == user and token.name == "deploy bot"
    assert token.expires_at is not None and "expires" in err.getvalue()
    assert _bearer(raw).get("/api/v1/deployments").status_code == 200


def test_ensure_admin_shows_the_same_token_until_it_is_revoked(db: None, settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path

    def run() -> str:
        out = io.StringIO()
        call_command("ensure_admin", stdout=out)
        return out.getvalue().split("API token for 'admin': ")[1].strip()

    first = run()
    assert run() == first
    assert (tmp_path / "admin-token").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "admin-password").stat().st_mode & 0o777 == 0o600
    token = tokens.find_active(first)
    assert token is not None
    tokens.revoke_token(token=token, actor=None)

    fresh = run()
    assert fresh != first and tokens.find_active(fresh) is not None
    assert _bearer(fresh).get("/api/v1/deployments").status_code == 200


# --- the migration from DRF's plain-text tokens ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_plain_text_drf_tokens_become_hashed_and_keep_working() -> None:
    user = UserFactory.create(username="legacy", role="operator")
    raw = "0123456789abcdef0123456789abcdef01234567"  # the shape of rest_framework.authtoken's keys
    created = timezone.now().replace(microsecond=0) - timedelta(days=100)
    executor = MigrationExecutor(connection)
    executor.migrate([("adaptive", "0005_event_received_index")])
    # The table and migration record that rest_framework.authtoken left in databases made before.
    timestamp = "datetime" if connection.vendor == "sqlite" else "timestamp with time zone"
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "authtoken_token" ("key" varchar(40) NOT NULL PRIMARY KEY, "created" {timestamp} NOT NULL, '
            '"user_id" integer NOT NULL UNIQUE)'
        )
        cursor.execute(
            'INSERT INTO "authtoken_token" ("key", "created", "user_id") VALUES (%s, %s, %s)',
            [raw, connection.ops.adapt_datetimefield_value(created), user.pk],
        )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["authtoken", "0001_initial", connection.ops.adapt_datetimefield_value(timezone.now())],
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest() and token.created_at == created
    assert not any(raw in column for column in _stored_columns(token))
    assert _bearer(raw).get("/api/v1/deployments").status_code == 200
    tokens.revoke_token(token=token, actor=None)
    assert _bearer(raw).get("/api/v1/deployments").status_code == 401
