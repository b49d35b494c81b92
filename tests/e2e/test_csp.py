"""Every page renders in Chromium under its Content-Security-Policy: no violation, and the policy bites.

A violation shows as a console error (the session records those); an init script also reports each
``securitypolicyviolation`` event with its directive, so a failure names what was refused.
"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, Session, Users
from tests.e2e.seed import Seeded
from tests.e2e.test_deployment_page import wait_for_points

REPORT_VIOLATIONS = """document.addEventListener('securitypolicyviolation',
  e => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));"""

INJECT_INLINE_SCRIPT = """() => { const s = document.createElement('script');
  s.textContent = 'window.injected = true'; document.body.append(s); return window.injected === true; }"""


def _watch(session: Session) -> None:
    session.context.add_init_script(REPORT_VIOLATIONS)


def _policy(page: Page, path: str) -> str:
    response = page.goto(path)
    assert response is not None and response.ok, f"GET {path}: {response and response.status}"
    return response.headers["content-security-policy"]


def test_dashboard_pages_render_under_a_strict_policy(session: Session, users: Users, seeded: Seeded) -> None:
    _watch(session)
    slug = seeded.deployment.slug
    page = session.login("ada")
    expect(page.locator(f"table#deployments tr[data-slug={slug}] .health")).not_to_be_empty()

    assert "script-src 'self';" in _policy(page, f"/deployments/{slug}/")
    wait_for_points(page, seeded.n_windows)
    expect(page.locator("#memory-stats dd").first).to_be_visible()
    _policy(page, f"/deployments/{slug}/versions/")
    expect(page.locator("table#lineage tr[data-version]")).to_have_count(2)
    expect(page.locator("table#lineage .band.beside")).to_have_text("live")
    _policy(page, "/jobs/")
    expect(page.locator("table#jobs")).to_be_visible()
    _policy(page, "/audit/")
    expect(page.locator("table#audit tr[data-entry-id]").first).to_be_visible()
    session.screenshot(page, "audit")
    session.assert_no_script_errors()

    # The policy is enforced: a script injected into the page does not run.
    assert page.evaluate(INJECT_INLINE_SCRIPT) is False
    deadline = time.monotonic() + 5  # the violation report arrives as an event, after the call
    while not any("CSP violation: script-src" in error for error in session.errors) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert any("CSP violation: script-src" in error for error in session.errors), session.errors


def test_swagger_ui_renders_under_its_policy(session: Session, users: Users) -> None:
    _watch(session)
    page = session.login("victor")

    policy = _policy(page, "/api/docs/")

    assert "'nonce-" in policy and "'unsafe-inline'" not in policy
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Adaptive control room API")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    page.locator(".swagger-ui .opblock-summary").first.click()
    expect(page.locator(".swagger-ui .opblock-body").first).to_be_visible()
    session.screenshot(page, "docs")
    session.assert_no_script_errors()


def test_the_admin_renders_under_its_policy(session: Session, seeded: Seeded) -> None:
    _watch(session)
    get_user_model().objects.create_superuser("root-admin", password=PASSWORD)
    page = session.context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "root-admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()

    assert "style-src 'self' 'unsafe-inline'" in _policy(page, "/admin/adaptive/deployment/")
    expect(page.locator("#result_list")).to_be_visible()
    page.locator("#result_list tbody a").first.click()
    expect(page.locator("#deployment_form")).to_be_visible()
    # No bulk actions here: Django writes an inline <style> for that case.
    _policy(page, "/admin/adaptive/auditentry/")
    expect(page.locator("#result_list")).to_be_visible()
    session.screenshot(page, "admin")
    session.assert_no_script_errors()
