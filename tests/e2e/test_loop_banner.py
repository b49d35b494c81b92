"""The loop's banner in a real browser: with no worker running, the overview and the deployment page
say which queues have no consumer, and the deployment page shows its labels' lags."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import Session
from tests.e2e.seed import Seeded


def test_banner_names_the_queues_without_a_consumer_and_the_page_shows_its_lags(
    session: Session, seeded: Seeded
) -> None:
    # No Celery worker runs for this test: every queue the loop needs lacks a consumer.
    page = session.login("victor")
    banner = page.locator("#loop-alerts")
    expect(banner).to_be_visible(timeout=15000)
    for queue in ("default", "monitoring", "gpu"):
        expect(banner.locator(f"li[data-topic='queue:{queue}']")).to_contain_text(f"'{queue}' queue")
    session.screenshot(page, "overview-loop-banner")

    page.goto(f"/deployments/{seeded.deployment.slug}/")
    expect(page.locator("#loop-alerts li[data-topic='queue:default']")).to_be_visible(timeout=15000)
    loop = session.api("/api/v1/loop")
    [lag] = [d for d in loop["deployments"] if d["slug"] == seeded.deployment.slug]
    expected = "none" if not lag["pending_labels"] else re.compile(r"^[\d,]+ \(oldest ")
    expect(page.locator("#lag-pending")).to_have_text(expected)
    expect(page.locator("#lag-unwindowed")).not_to_have_text("\u2013")  # the placeholder, an en dash
    session.screenshot(page, "deployment-loop-lags")
    session.assert_no_script_errors()
