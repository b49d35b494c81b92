"""Browser tests: Debian's Chromium, headless, driven by Playwright against pytest-django's live server.

The live server runs in a thread of this process on the test database (a SQLite file on the
embedded pass, PostgreSQL on the second), so rows created here are what the pages show, and a real
Celery worker (tests/worker.py) can work on the same database. One browser serves the whole
package; every test gets a fresh context (cookies, storage) and logs in through the login form.
Screenshots of every page go to artifacts/e2e/<test>-<page>.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group

from adaptive import runtime
from adaptive.roles import GROUP_ROLES
from tests.e2e.seed import Seeded, seed
from tests.factories import UserFactory

CHROMIUM = Path("/usr/bin/chromium")
# bin/setup --dev installs both; without one of them the whole package is skipped, with the reason.
pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (bin/setup --dev installs it)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (bin/setup --dev installs Debian's chromium)", allow_module_level=True)

from playwright.sync_api import (  # noqa: E402  (only importable once the check above passed)
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

# Without the background-networking flags Chromium keeps opening connections to Google services,
# which the closed test network refuses; QUIC and the sandbox are off for containers.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
PASSWORD = "pw-for-tests-123"  # UserFactory's
# Pages poll the API every few seconds; allow a few rounds.
WAIT_MS = 15_000


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an asyncio event loop running in this thread while the browser is
    # up, and Django refuses ORM calls from a thread with a running loop (SynchronousOnlyOperation).
    # The tests call the ORM from this thread between browser steps (seeding, checking rows), never
    # from inside the loop, so it is safe; the variable is set only while the browser runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        expect.set_options(timeout=WAIT_MS)
        yield launched
        launched.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def roles(transactional_db: None) -> None:
    """The role groups: created by a migration, but flushed after every transactional test."""
    for name in GROUP_ROLES:
        Group.objects.get_or_create(name=name)


@dataclass(frozen=True)
class Users:
    admin: Any
    operator: Any
    viewer: Any


@pytest.fixture
def users(roles: None) -> Users:
    return Users(
        admin=UserFactory.create(username="ada", role="admin"),
        operator=UserFactory.create(username="olivia", role="operator"),
        viewer=UserFactory.create(username="victor", role="viewer"),
    )


@pytest.fixture(autouse=True)
def _cpu_and_fresh_models(settings: Any) -> Iterator[None]:
    # The live server runs in this process: drop models cached by an earlier test's server requests.
    settings.ADAPTIVE_DEVICE = "cpu"
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def seeded(users: Users) -> Seeded:
    return seed(admin=users.admin, operator=users.operator)


@dataclass
class Session:
    """A fresh browser context on the live server, with helpers for logging in and screenshots."""

    context: BrowserContext
    base_url: str
    test_name: str
    errors: list[str] = field(default_factory=list)

    def login(self, username: str) -> Page:
        """Log in through the real login form; returns the page, on the overview."""
        page = self.context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("form.login button[type=submit]")
        page.wait_for_url(f"{self.base_url}/")
        return page

    def screenshot(self, page: Page, name: str) -> Path:
        path = ARTIFACTS / f"{self.test_name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def api(self, path: str) -> Any:
        """GET an API path with the context's session cookie; returns the JSON body."""
        response = self.context.request.get(f"{self.base_url}{path}")
        assert response.ok, f"GET {path}: {response.status} {response.text()[:500]}"
        return response.json()

    def record_console(self, message: ConsoleMessage) -> None:
        # The pages log failed polls with console.error; the browser logs failed loads the same way.
        # A missing favicon is the one failed load that says nothing about the pages.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.errors.append(f"console: {message.text} at {message.location.get('url')}")

    def assert_no_script_errors(self) -> None:
        assert not self.errors, f"errors in the pages' scripts or loads: {self.errors}"


@pytest.fixture
def session(browser: Browser, live_server: Any, roles: None, request: pytest.FixtureRequest) -> Iterator[Session]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{request.node.name}-*.png"):
        old.unlink()
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    current = Session(context=context, base_url=live_server.url, test_name=request.node.name)
    context.on("weberror", lambda error: current.errors.append(f"uncaught: {error.error}"))
    context.on("console", current.record_console)
    yield current
    # Closed before the database is flushed, so that no poll from a page races the flush.
    context.close()
