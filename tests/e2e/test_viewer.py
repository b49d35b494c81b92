"""A viewer reads every page but gets no controls, and a POST forged from their page is refused."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from adaptive.models import AuditEntry, Deployment, Job, Release
from adaptive.services import retraining
from tests.e2e.conftest import Session, Users
from tests.e2e.seed import Seeded
from tests.e2e.test_deployment_page import wait_for_points

# What a script on the viewer's page could send: the rollback endpoint, with or without the CSRF
# token read from the csrftoken cookie.
FORGED_ROLLBACK = """async ({slug, withToken}) => {
  const token = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1] || '';
  const headers = {'Content-Type': 'application/json'};
  if (withToken) headers['X-CSRFToken'] = token;
  const response = await fetch(`/api/v1/deployments/${slug}/rollback`, {
    method: 'POST', headers, credentials: 'same-origin',
    body: JSON.stringify({version: 1, reason: 'forged by a viewer'}),
  });
  return {status: response.status, body: await response.text(), hadToken: token !== ''};
}"""


def assert_no_controls(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-role", "viewer")
    expect(page.locator("[data-action]")).to_have_count(0)
    expect(page.locator("[data-cancel]")).to_have_count(0)


def test_a_viewer_sees_every_page_without_controls(session: Session, users: Users, seeded: Seeded) -> None:
    slug = seeded.deployment.slug
    # An active job, so that the jobs page would offer a cancel button to an operator.
    job = retraining.request_retrain(deployment=seeded.deployment, actor=users.operator, reason="queued, no worker")
    page = session.login("victor")

    expect(page.locator(f"table#deployments tr[data-slug={slug}] .health")).not_to_be_empty()
    assert_no_controls(page)
    session.screenshot(page, "overview")

    page.goto(f"/deployments/{slug}/")
    wait_for_points(page, seeded.n_windows)
    expect(page.locator("table#samples tbody tr").first).to_be_visible()
    assert_no_controls(page)
    expect(page.locator("form#settings-form [type=submit]")).to_have_count(0)
    session.screenshot(page, "deployment")

    page.goto(f"/deployments/{slug}/versions/")
    expect(page.locator("table#lineage tr[data-version]")).to_have_count(2)
    expect(page.locator("#flip-reports article.flip-report")).to_have_count(1)
    assert_no_controls(page)
    session.screenshot(page, "versions")

    page.goto("/jobs/")
    expect(page.locator(f"table#jobs tr[data-job-id='{job.pk}'] .status")).to_contain_text("queued")
    assert_no_controls(page)
    session.screenshot(page, "jobs")

    page.goto("/audit/")
    expect(page.locator("table#audit tr[data-entry-id]").first).to_be_visible()
    assert_no_controls(page)
    session.screenshot(page, "audit")
    session.assert_no_script_errors()


def _state(deployment: Deployment) -> tuple[Any, ...]:
    return (
        Deployment.objects.get(pk=deployment.pk).live_version_id,
        Release.objects.filter(deployment=deployment).count(),
        AuditEntry.objects.filter(deployment=deployment).count(),
        Job.objects.filter(deployment=deployment).count(),
    )


def test_a_rollback_forged_from_a_viewer_page_is_refused_and_changes_nothing(session: Session, seeded: Seeded) -> None:
    slug = seeded.deployment.slug
    before = _state(seeded.deployment)
    page = session.login("victor")
    page.goto(f"/deployments/{slug}/")
    wait_for_points(page, seeded.n_windows)
    session.assert_no_script_errors()

    with_token = page.evaluate(FORGED_ROLLBACK, {"slug": slug, "withToken": True})
    without_token = page.evaluate(FORGED_ROLLBACK, {"slug": slug, "withToken": False})

    assert with_token["hadToken"], "the csrftoken cookie is missing: the forged request would not be a fair test"
    # With a valid token the CSRF check passes and the role check refuses; without one, the CSRF check.
    assert with_token["status"] == 403 and "csrf" not in with_token["body"].lower(), with_token
    assert without_token["status"] == 403 and "csrf" in without_token["body"].lower(), without_token
    assert _state(seeded.deployment) == before
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ROLLBACK).exists()
    session.screenshot(page, "deployment")
    # The browser logs the two refused requests, and nothing else went wrong.
    assert [error for error in session.errors if "/rollback" not in error or "403" not in error] == []
