"""Logging in through the form and the overview of deployments."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import Session, Users
from tests.e2e.seed import LATEST_BASE_AUC, LATEST_COMPENSATED_AUC, N_RECENT_EVENTS, N_SAMPLES, Seeded

# Points of each sparkline: a polyline's points, or the M/L commands of a path.
POINTS_PER_LINE = """lines => lines.map(line => line.tagName === 'polyline'
    ? line.points.numberOfItems
    : (line.getAttribute('d').match(/[ML]/g) || []).length)"""


def test_login_form_leads_an_anonymous_visitor_to_the_overview(session: Session, users: Users, seeded: Seeded) -> None:
    page = session.context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "not her password")
    page.click("form.login button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    session.screenshot(page, "login-refused")

    page.fill("#id_username", "olivia")
    page.fill("#id_password", "pw-for-tests-123")
    page.click("form.login button[type=submit]")

    expect(page).to_have_url(f"{session.base_url}/")
    expect(page.locator("body")).to_have_attribute("data-role", "operator")
    expect(page.locator(f"table#deployments tr[data-slug={seeded.deployment.slug}]")).to_be_visible()
    session.screenshot(page, "overview")
    session.assert_no_script_errors()


def test_overview_shows_health_latest_auc_memory_and_sparklines(session: Session, seeded: Seeded) -> None:
    page = session.login("victor")
    row = page.locator(f"table#deployments tr[data-slug={seeded.deployment.slug}]")

    # The latest window has carrier in drift.
    expect(row.locator(".health")).to_have_text(re.compile(r"^\W*drift\s*$"))
    # The latest window's AUCs, however many places the page shows.
    expect(row.locator(".auc-base")).to_contain_text(f"{LATEST_BASE_AUC:.2f}")
    expect(row.locator(".auc-comp")).to_contain_text(f"{LATEST_COMPENSATED_AUC:.2f}")
    expect(row.locator(".epm")).to_have_text(re.compile(rf"^\s*{N_RECENT_EVENTS // 5}(\.0+)?\s*$"))
    # The promotion warmed v2 with the seeded labeled events, then N_SAMPLES more were written.
    assert seeded.memory_size > N_SAMPLES
    expect(row.locator(".memory-size")).to_have_text(re.compile(rf"^\s*{seeded.memory_size:,}\s*$"))
    # One line per series (base and compensated), each through one point per window. The contract
    # says "polyline"; a <path> of M/L segments draws the same line, so either element counts.
    lines = row.locator("svg.sparkline :is(polyline, path)")
    expect(lines).to_have_count(2)
    assert lines.evaluate_all(POINTS_PER_LINE) == [seeded.n_windows, seeded.n_windows]
    expect(page.locator("#running-jobs")).to_be_attached()

    overview = session.api("/api/v1/overview")
    [listed] = [d for d in overview["deployments"] if d["slug"] == seeded.deployment.slug]
    assert listed["latest_window"]["compensated_auc"] == LATEST_COMPENSATED_AUC
    session.screenshot(page, "overview")
    session.assert_no_script_errors()


def test_overview_without_deployments_shows_the_empty_state(session: Session, users: Users) -> None:
    page = session.login("ada")

    expect(page.locator(".empty")).to_be_visible()
    expect(page.locator("table#deployments tr[data-slug]")).to_have_count(0)
    session.screenshot(page, "overview-empty")
    session.assert_no_script_errors()
