"""The deployment page: the adaptation curve, drift, detectors, samples, and a rollback from its dialog."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from adaptive.models import AuditEntry, Deployment, Release, Window
from tests.e2e.conftest import WAIT_MS, Session
from tests.e2e.seed import LATEST_COMPENSATED_AUC, Seeded
from tests.worker import wait_for

# Series of the curve chart: labels and lengths, and the newest value of each line. A point is a
# number or an {x, y} object, depending on how the page feeds Chart.js.
CHART_STATE = """canvas => {
  const chart = window.Chart && Chart.getChart(canvas);
  if (!chart) return null;
  const y = point => (point !== null && typeof point === 'object') ? point.y : point;
  const drawn = point => point !== null && point !== undefined && y(point) !== null && !Number.isNaN(y(point));
  return chart.data.datasets.map(ds => ({
    label: ds.label, n: ds.data.length, drawn: ds.data.filter(drawn).length, last: y(ds.data.at(-1)),
  }));
}"""


def rows(body: Any) -> list[dict[str, Any]]:
    """A list endpoint's rows, paginated ({"results": [...]}) or not."""
    return body["results"] if isinstance(body, dict) else body


def chart_state(page: Page) -> list[dict[str, Any]] | None:
    return page.locator("canvas#curve-chart").evaluate(CHART_STATE)


def wait_for_points(page: Page, n: int) -> list[dict[str, Any]]:
    """Wait until both curve lines have ``n`` points; returns the chart's series."""
    page.wait_for_function(
        """n => { const chart = window.Chart && Chart.getChart(document.querySelector('#curve-chart'));
                  return chart && chart.data.datasets.length >= 2
                      && chart.data.datasets[0].data.length === n && chart.data.datasets[1].data.length === n; }""",
        arg=n,
        timeout=WAIT_MS,
    )
    state = chart_state(page)
    assert state is not None
    return state


def test_curve_chart_has_one_point_per_window_for_every_metric(session: Session, seeded: Seeded) -> None:
    slug = seeded.deployment.slug
    n_windows = Window.objects.filter(deployment=seeded.deployment).count()
    page = session.login("olivia")

    page.goto(f"/deployments/{slug}/")

    series = wait_for_points(page, n_windows)
    assert [s["label"] for s in series[:2]] == ["Base", "Compensated"]
    assert series[1]["last"] == pytest.approx(LATEST_COMPENSATED_AUC)
    # Markers for the retrain and the promotion of v2, as the curve endpoint reports them. The contract
    # names one "Events" dataset; the page draws one dataset per kind of marker: count them all.
    markers = session.api(f"/api/v1/deployments/{slug}/curve")["markers"]
    assert {m["kind"] for m in markers} >= {"retrain", "promotion"}
    marker_series = [s for s in series if s["label"] in {"Retrain", "Promotion", "Rollback"}]
    assert sum(s["drawn"] for s in marker_series) == len(markers)
    session.screenshot(page, "deployment")

    page.select_option("select#metric", "log_loss")
    latest = Window.objects.filter(deployment=seeded.deployment).order_by("-end").first()
    assert latest is not None
    page.wait_for_function(
        """expected => { const chart = Chart.getChart(document.querySelector('#curve-chart'));
                         const last = chart.data.datasets[0].data.at(-1);
                         const y = (last !== null && typeof last === 'object') ? last.y : last;
                         return Math.abs(y - expected) < 1e-9; }""",
        arg=latest.base_log_loss,
        timeout=WAIT_MS,
    )
    assert [s["n"] for s in wait_for_points(page, n_windows)[:2]] == [n_windows, n_windows]
    session.screenshot(page, "deployment-log-loss")
    session.assert_no_script_errors()


def test_deployment_page_shows_drift_detectors_memory_samples_and_controls(session: Session, seeded: Seeded) -> None:
    page = session.login("olivia")

    page.goto(f"/deployments/{seeded.deployment.slug}/")

    grid = page.locator("table#drift-grid")
    # The seed puts carrier in drift and distance in warning over the last three windows.
    expect(grid.locator("tr", has_text="carrier").locator(".band-drift").first).to_be_visible()
    expect(grid.locator("tr", has_text="distance").locator(".band-warn").first).to_be_visible()
    expect(grid.locator("tr", has_text="dep_delay").locator(".band-drift")).to_have_count(0)
    expect(page.locator("#detectors")).to_contain_text(re.compile("adwin", re.IGNORECASE))
    expect(page.locator("#memory-stats")).to_have_text(re.compile(r"\d"))
    # The compensation gate: what share of the correction is served, and why.
    gate_on = Deployment.objects.values_list("compensation_gate", flat=True).get(pk=seeded.deployment.pk)
    served = "learning: 0 of 200 labels" if gate_on else "100% (gate off: full correction)"
    expect(page.locator("#memory-stats")).to_contain_text("Correction served")
    expect(page.locator("#memory-stats")).to_contain_text(served)

    # The newest samples a page at a time (the contract says 20; any page smaller than the memory will do).
    samples = page.locator("table#samples tbody tr")
    expect(samples.first).to_contain_text("v2")
    per_page = samples.count()
    assert 0 < per_page < seeded.memory_size
    newest = samples.first.text_content() or ""
    page.click("#samples-next")
    expect(samples.first).not_to_have_text(newest)
    expect(samples).to_have_count(min(per_page, seeded.memory_size - per_page))
    page.click("#samples-prev")
    expect(samples.first).to_have_text(newest)
    expect(samples).to_have_count(per_page)

    actions = page.locator("#controls button[data-action]")
    expect(actions.first).to_be_visible()
    shown = set(actions.evaluate_all("buttons => buttons.map(b => b.dataset.action)"))
    assert {"promote", "rollback", "retrain", "reset-memory"} <= shown and shown & {"pause", "resume"}
    expect(page.locator("form#settings-form [type=submit]")).to_be_visible()
    session.screenshot(page, "deployment")
    session.assert_no_script_errors()


def test_rollback_from_the_dialog_shows_in_the_audit_log_and_the_rest_api(session: Session, seeded: Seeded) -> None:
    slug = seeded.deployment.slug
    reason = "e2e: v2 flips on-time UA flights"
    page = session.login("olivia")
    page.goto(f"/deployments/{slug}/")

    page.click("#controls button[data-action=rollback]")
    dialog = page.locator("dialog#action-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("select[name=version]").select_option("1")
    # Without a reason the dialog stays open and nothing is sent.
    dialog.locator("button[type=submit]").click()
    expect(dialog.locator("textarea[name=reason]:invalid")).to_have_count(1)
    expect(dialog).to_be_visible()
    assert Deployment.objects.get(pk=seeded.deployment.pk).live_version_id == seeded.v2.pk
    dialog.locator("textarea[name=reason]").fill(reason)
    session.screenshot(page, "rollback-dialog")
    # The contract names the button "Confirm"; the page labels it with the action ("Roll back").
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()

    expect(page.locator("#action-result")).to_have_text(re.compile(r"\bv1\b"))
    expect(page.locator("#action-result")).not_to_have_text(re.compile(r"Refused|Failed"))
    expect(page.locator("#recent-audit")).to_contain_text(reason)
    assert wait_for(lambda: Deployment.objects.get(pk=seeded.deployment.pk).live_version_id == seeded.v1.pk)
    entry = AuditEntry.objects.get(deployment=seeded.deployment, action=AuditEntry.Action.ROLLBACK)
    assert (entry.actor_label, entry.reason, entry.from_version_id, entry.to_version_id) == (
        "olivia",
        reason,
        seeded.v2.pk,
        seeded.v1.pk,
    )
    open_release = Release.objects.get(deployment=seeded.deployment, ended_at__isnull=True)
    assert (open_release.kind, open_release.version_id) == (Release.Kind.ROLLBACK, seeded.v1.pk)
    session.screenshot(page, "deployment-after-rollback")

    page.goto("/audit/")
    row = page.locator(f"table#audit tr[data-entry-id='{entry.pk}']")
    expect(row).to_contain_text(reason)
    expect(row).to_contain_text("olivia")
    session.screenshot(page, "audit")
    # Filtering by deployment and action narrows the log to the rollback and shows the release
    # timeline: initial v1, promotion to v2, rollback to v1 (newest first).
    filters = page.locator("form#audit-filters")
    filters.locator("select[name=deployment]").select_option(slug)
    filters.locator("select[name=action]").select_option("rollback")
    filters.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"[?&]action=rollback"))
    expect(page.locator("table#audit tr[data-entry-id]")).to_have_count(1)
    expect(row).to_be_visible()
    timeline = page.locator("#releases li")
    expect(timeline).to_have_count(3)
    expect(timeline.first).to_contain_text(re.compile(r"v1\b.*\brollback\b", re.IGNORECASE))
    expect(timeline.first).to_contain_text(reason)
    session.screenshot(page, "audit-filtered")

    newest_release = rows(session.api(f"/api/v1/deployments/{slug}/releases"))[0]
    assert (newest_release["kind"], newest_release["version"]) == ("rollback", 1)
    assert (newest_release["actor"], newest_release["reason"], newest_release["ended_at"]) == ("olivia", reason, None)
    [audited] = rows(session.api(f"/api/v1/audit?deployment={slug}&action=rollback"))
    assert audited["id"] == entry.pk
    assert (audited["from_version"], audited["to_version"], audited["reason"]) == (2, 1, reason)
    session.assert_no_script_errors()
