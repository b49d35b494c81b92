"""Shared fixtures (users per role with API clients, a deployment with a live version) and the tiers.

Tiers, as markers set here from the lists below (pyproject.toml declares them):

- ``slow``: browser, benchmark, demo and fuzzing tests, and tests that start worker processes or
  wait on real time. ``bin/test --fast`` leaves them out; ``bin/test`` runs them.
- ``postgres``: tests whose behaviour can differ with the database or the broker. ``bin/test`` runs
  the whole suite on the embedded defaults (SQLite + file-system broker) and then only these on
  PostgreSQL + Redis. A test is one of them unless its module is listed in ``DATABASE_NEUTRAL``:
  a new test module runs on both until someone shows it need not.
- ``fuzz``: the schemathesis run. When ``bin/test`` runs both passes it fuzzes once, on PostgreSQL,
  the stricter of the two (it refuses NUL characters in text and out-of-range values that SQLite
  stores).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from adaptive import credential_cache
from adaptive.models import ApiToken, Deployment
from adaptive.services import tokens
from adaptive.services.keys import create_key
from tests.clock import Clock
from tests.factories import UserFactory, deployment_with_live_version

# Paths relative to the repository root: a folder (ending in "/"), a module, or a module's test
# ("module::test", parametrized cases included). tests/test_tiers.py checks that each one exists.
SLOW = (
    "tests/e2e/",  # a real Chromium per package
    "tests/bench/",  # each benchmark script runs end to end in a subprocess
    "tests/test_demo.py",  # bin/up with its web server, worker and beat
    "tests/api/test_schemathesis.py",  # fuzzes every operation against the live server
    # Real Celery workers (tests/worker.py) or other processes, and waits for them.
    "tests/test_broker_outage.py",
    "tests/test_celery_worker.py",
    "tests/test_embedded_broker.py",
    "tests/test_evaluation_kill.py",
    "tests/test_fast_loop_worker.py",
    "tests/test_monitoring_worker.py",
    "tests/test_runtime_venv.py",  # builds a runtime-only virtual environment
    "tests/test_slow_loop_worker.py",
    "tests/test_sweeper.py",
    "tests/test_worker_health.py",
    "tests/test_shared_cache.py::test_counters_from_several_processes_lose_no_count",
    # manage.py in a subprocess; bin/test runs the deploy checks itself as well.
    "tests/test_settings.py::test_production_settings_pass_check_deploy",
    "tests/test_settings.py::test_debug_runs_without_secret_key",
)

FUZZ = ("tests/api/test_schemathesis.py",)

# Modules whose behaviour cannot depend on the database or the broker: they run once, on the
# embedded pass. Everything else (raw SQL and COPY in ingestion and the memory, row locks, races
# and transactions, constraints, JSON field lookups, bulk writes, health of the database and
# broker, workers and messages) also runs on PostgreSQL + Redis.
DATABASE_NEUTRAL = (
    "tests/ml/",  # tensors in, tensors out: no database (adaptive/ml imports no Django)
    "tests/bench/",  # each smoke test picks its databases itself (SQLite, and PostgreSQL when reachable)
    "tests/e2e/",  # pages drawn from the same API answers, which the API tests check on both
    "tests/test_demo.py",  # bin/up brings its own embedded defaults
    "tests/test_docs_links.py",
    "tests/test_password_hashing.py",  # reads the settings module
    "tests/test_tiers.py",  # these lists
    "tests/test_layering.py",  # imports between packages
    "tests/api/test_openapi.py",  # the schema document
    "tests/api/test_roles.py",  # who may call what: decided before any database-specific code runs
    "tests/api/test_json_errors.py",  # the shape of error answers
    "tests/api/test_throttling.py",  # counters in the cache, which is the file cache on both passes
    "tests/api/test_key_revoke.py",  # a revoked key is refused: one lookup by prefix
    "tests/api/test_lookups.py",  # one lookup by slug behind every entry point
    "tests/test_login_lockout.py",  # counters in the cache
    "tests/test_shared_cache.py",  # the cache itself
    "tests/test_content_security_policy.py",  # response headers
    "tests/test_dashboard.py",  # server-rendered pages
    "tests/test_admin.py",  # Django's admin pages
    "tests/test_settings.py",  # settings read from the environment
    "tests/test_file_permissions.py",  # modes of files under VAR_DIR, the SQLite file among them
    "tests/test_runtime_venv.py",  # skips itself off the embedded pass
    "tests/test_embedded_broker.py",  # likewise
)


def _listed(nodeid: str, entries: tuple[str, ...]) -> bool:
    module = nodeid.split("::", 1)[0]
    return any(
        nodeid.startswith(entry) if entry.endswith("/") or "::" in entry else module == entry for entry in entries
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _listed(item.nodeid, SLOW):
            item.add_marker(pytest.mark.slow)
        if _listed(item.nodeid, FUZZ):
            item.add_marker(pytest.mark.fuzz)
        if not _listed(item.nodeid, DATABASE_NEUTRAL):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True, scope="session")
def _cheap_start_ups() -> Iterator[None]:
    """Settings that make each test user and test client cheap, for the whole session.

    PBKDF2's work factor is the point in production and the bulk of a test that makes a user
    (tests/test_password_hashing.py checks what production uses). WhiteNoise reads and stats every
    collected static file whenever a client builds its middleware chain, so once per test client;
    with autorefresh (its DEBUG mode) it looks a file up when one is asked for.
    """
    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"], WHITENOISE_AUTOREFRESH=True
    ):
        yield


@pytest.fixture
def cpu_and_fresh_runtime(settings: Any) -> Iterator[None]:
    """Training on the CPU, and no model or memory cached by an earlier test (adaptive.runtime)."""
    from adaptive import runtime

    settings.ADAPTIVE_DEVICE = "cpu"
    runtime.clear_cache()
    yield
    runtime.clear_cache()


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
    # So are the credentials the API found valid (adaptive.credential_cache).
    credential_cache.clear_all()


@pytest.fixture
def credential_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """adaptive.credential_cache's clock, moved by hand."""
    fake = Clock()
    monkeypatch.setattr(credential_cache, "clock", fake)
    return fake


def _client_for(role: str | None) -> APIClient:
    user = UserFactory.create(role=role)
    # The token row as create_token makes it, without its audit entry: tests count audit entries.
    prefix, raw = tokens.new_secret()
    ApiToken.objects.create(user=user, name="tests", prefix=prefix, key_hash=tokens.hash_token(raw))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    client.user = user
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
