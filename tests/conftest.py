"""Shared fixtures: users per role with API clients, a deployment with a live version."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from adaptive.models import ApiToken, Deployment
from adaptive.services import tokens
from adaptive.services.keys import create_key
from tests.clock import Clock
from tests.factories import UserFactory, deployment_with_live_version


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(settings: Any, tmp_path: Any) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """config.ratelimit's clock, moved by hand (tests/clock.py)."""
    from config import ratelimit

    fake = Clock()
    monkeypatch.setattr(ratelimit, "clock", fake)
    return fake


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # The workers' state is cached for a few seconds per process (api.views.health): not across tests.
    cache.clear()


def _client_for(role: str | None) -> APIClient:
    user = UserFactory(role=role)
    # The token row as create_token makes it, without its audit entry: tests count audit entries.
    prefix, raw = tokens.new_secret()
    ApiToken.objects.create(user=user, name="tests", prefix=prefix, key_hash=tokens.hash_token(raw))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def admin_client(db: None) -> APIClient:
    return _client_for("admin")


@pytest.fixture
def operator_client(db: None) -> APIClient:
    return _client_for("operator")


@pytest.fixture
def viewer_client(db: None) -> APIClient:
    return _client_for("viewer")


@pytest.fixture
def norole_client(db: None) -> APIClient:
    return _client_for(None)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def deployment(db: None) -> Deployment:
    """A binary deployment whose first uploaded version (v1) is live."""
    return deployment_with_live_version()


@pytest.fixture
def ingest_client(deployment: Deployment) -> APIClient:
    _, raw = create_key(deployment=deployment, name="test-key", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client
