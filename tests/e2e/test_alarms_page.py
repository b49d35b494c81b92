"""The deployment page's calibrated alarms: severity grid, drill-down, estimated curve and alarm timeline."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import WAIT_MS, Session, Users
from tests.e2e.seed_alarms import (
    CARRIER_HISTOGRAM,
    N_WINDOWS,
    NEWEST_ALARMS,
    NEWEST_SEVERITY,
    ORDER_BY_PRIORITY,
    THRESHOLD,
    AlarmsSeeded,
    seed_alarms,
)

# Severity and the background's relative luminance (WCAG) of every coloured cell of the drift grid.
CELL_SHADES = """table => [...table.querySelectorAll('td[data-severity]:not([data-severity=""])')].map(td => {
  const [r, g, b] = getComputedStyle(td).backgroundColor.match(/[\\d.]+/g).map(Number)
    .map(c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
  return { severity: Number(td.dataset.severity), luminance: 0.2126 * r + 0.7152 * g + 0.0722 * b,
           shade: [...td.classList].find(c => c.startsWith('sev-')) };
})"""
# Every dataset of a chart: its label, points drawn (not null), x and y of each point.
DATASETS = """canvas => {
  const chart = window.Chart && Chart.getChart(canvas);
  if (!chart) return null;
  const y = p => (p !== null && typeof p === 'object') ? p.y : p;
  const x = (p, i) => (p !== null && typeof p === 'object') ? p.x : i;
  return { labels: chart.data.labels || [], legend: (chart.legend?.legendItems || []).map(item => item.text),
    datasets: chart.data.datasets.map(ds => ({ label: ds.label, xs: ds.data.map(x), ys: ds.data.map(y),
      drawn: ds.data.filter(p => p !== null && y(p) !== null && y(p) !== undefined).length })) };
}"""


@pytest.fixture
def alarms(users: Users) -> AlarmsSeeded:
    return seed_alarms(admin=users.admin)


def _open(session: Session, alarms: AlarmsSeeded) -> Page:
    page = session.login("victor")  # a viewer sees all of it
    page.goto(f"/deployments/{alarms.deployment.slug}/")
    expect(page.locator("#drift-grid tbody tr[data-column]")).to_have_count(len(NEWEST_SEVERITY))
    return page


def _newest_cell(page: Page, column: str) -> Any:
    return page.locator(f"#drift-grid tr[data-column='{column}'] td").last


def test_drift_cells_darken_with_severity_and_rows_sort_by_severity_times_importance(
    session: Session, alarms: AlarmsSeeded
) -> None:
    page = _open(session, alarms)

    rows = page.locator("#drift-grid tbody tr[data-column]")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.column)") == ORDER_BY_PRIORITY
    shades = sorted(page.locator("#drift-grid").evaluate(CELL_SHADES), key=lambda cell: cell["severity"])
    assert len(shades) == N_WINDOWS * len(NEWEST_SEVERITY)
    # Colour order follows severity: never lighter for a higher severity, strictly darker for a darker step.
    for lower, higher in itertools.pairwise(shades):
        assert higher["luminance"] <= lower["luminance"] + 1e-9, (lower, higher)
        if higher["shade"] != lower["shade"]:
            assert higher["luminance"] < lower["luminance"], (lower, higher)
    newest = {column: _newest_cell(page, column).get_attribute("class") or "" for column in NEWEST_SEVERITY}
    assert "sev-0" in newest["prediction"] and "sev-3" not in newest["prediction"]
    assert "sev-4" in newest["distance"] and "sev-5" in newest["carrier"]
    assert "band-drift" in newest["carrier"] and "band-warn" in newest["dep_delay"]

    # The tooltip gives the test in figures, the calibrated threshold among them.
    title = _newest_cell(page, "carrier").get_attribute("title") or ""
    assert "jensenshannon" in title
    assert f"calibrated threshold {THRESHOLD['carrier']:.4f}" in title
    assert "severity 5.00" in title and "importance 10.0%" in title and "p-value 0.0098" in title
    session.screenshot(page, "severity-grid")
    session.assert_no_script_errors()


def test_clicking_a_cell_draws_the_reference_and_current_distributions(session: Session, alarms: AlarmsSeeded) -> None:
    page = _open(session, alarms)
    panel = page.locator("#drift-detail")
    expect(panel).to_be_hidden()

    _newest_cell(page, "carrier").locator("button").click()

    expect(panel).to_be_visible()
    expect(page.locator("#drift-detail-title")).to_contain_text(f"carrier in window #{alarms.windows[-1].pk}")
    expect(page.locator("#drift-detail-summary")).to_contain_text("calibrated threshold of 0.1000")
    page.wait_for_function(
        "() => { const c = window.Chart && Chart.getChart(document.querySelector('#drift-histogram')); "
        "return c && c.data.datasets.length === 2; }",
        timeout=WAIT_MS,
    )
    chart = page.locator("canvas#drift-histogram").evaluate(DATASETS)
    assert chart["labels"] == CARRIER_HISTOGRAM["categories"]
    assert [d["ys"] for d in chart["datasets"]] == [CARRIER_HISTOGRAM["reference"], CARRIER_HISTOGRAM["current"]]
    assert [d["label"] for d in chart["datasets"]] == ["Reference (training)", "Current (this window)"]
    session.screenshot(page, "drill-down-categorical")

    # Another cell replaces the chart: a numeric column's 20 bins from its 21 edges.
    _newest_cell(page, "distance").locator("button").click()
    expect(page.locator("#drift-detail-title")).to_contain_text("distance")
    page.wait_for_function(
        "() => { const c = Chart.getChart(document.querySelector('#drift-histogram')); "
        "return c && c.data.labels.length === 20; }",
        timeout=WAIT_MS,
    )
    chart = page.locator("canvas#drift-histogram").evaluate(DATASETS)
    assert len(chart["datasets"]) == 2 and all(d["drawn"] == 20 for d in chart["datasets"])
    assert sum(chart["datasets"][0]["ys"]) == pytest.approx(1.0, abs=1e-3)
    session.screenshot(page, "drill-down-numeric")

    page.click("#drift-detail-close")
    expect(panel).to_be_hidden()
    session.assert_no_script_errors()


def test_the_curve_draws_the_label_free_estimates_and_the_pending_windows(
    session: Session, alarms: AlarmsSeeded
) -> None:
    page = _open(session, alarms)
    curve = session.api(f"/api/v1/deployments/{alarms.deployment.slug}/curve")
    pending = curve["pending"]["estimated_compensated_auc"]
    assert len(pending) == 2  # two full chunks; the third, still filling, is left out

    page.wait_for_function(
        """() => { const c = window.Chart && Chart.getChart(document.querySelector('#curve-chart'));
                   return c && c.data.datasets.some(
                       d => d.label === 'estimated (no labels yet)' && d.data.length === 2); }""",
        timeout=WAIT_MS,
    )
    chart = page.locator("canvas#curve-chart").evaluate(DATASETS)
    by_label = {d["label"]: d for d in chart["datasets"]}
    estimated = by_label["Estimated compensated"]
    assert estimated["drawn"] == N_WINDOWS
    assert estimated["ys"] == curve["windows"]["estimated_compensated_auc"]
    assert by_label["Estimated base"]["drawn"] == N_WINDOWS
    beyond = by_label["estimated (no labels yet)"]
    # Beyond the last realised window (x = N_WINDOWS - 1), one point per pending chunk.
    assert beyond["xs"] == [N_WINDOWS, N_WINDOWS + 1] and beyond["ys"] == pending
    assert "estimated (no labels yet)" in chart["legend"]
    expect(page.locator("#curve-summary")).to_contain_text("2 pending (no labels yet)")
    session.screenshot(page, "estimated-curve")

    # Accuracy has estimates too; log loss has none, and its estimated series are empty.
    page.select_option("select#metric", "accuracy")
    page.wait_for_function(
        """expected => { const c = Chart.getChart(document.querySelector('#curve-chart'));
                         const d = c.data.datasets.find(d => d.label === 'estimated (no labels yet)');
                         return d.data.length === 2 && Math.abs(d.data[1].y - expected) < 1e-9; }""",
        arg=curve["pending"]["estimated_compensated_accuracy"][1],
        timeout=WAIT_MS,
    )
    page.select_option("select#metric", "log_loss")
    page.wait_for_function(
        """() => { const c = Chart.getChart(document.querySelector('#curve-chart'));
                   return c.data.datasets.filter(d => d.label.toLowerCase().startsWith('estimated'))
                            .every(d => d.data.length === 0); }""",
        timeout=WAIT_MS,
    )
    session.assert_no_script_errors()


def test_the_alarm_timeline_shows_each_windows_alarms_with_their_reasons(
    session: Session, alarms: AlarmsSeeded
) -> None:
    page = _open(session, alarms)
    timeline = page.locator("#alarm-timeline > li.alarm-window")
    expect(timeline).to_have_count(N_WINDOWS)

    newest = timeline.first
    expect(newest).to_have_attribute("data-window", str(alarms.windows[-1].pk))
    expect(newest).to_have_class(re.compile(r"\blevel-drift\b"))
    expect(newest.locator(".band-drift")).to_have_text("drift")
    expect(newest).to_contain_text("loss CUSUM 3.50")
    entries = newest.locator("ul.alarms > li")
    expect(entries).to_have_count(len(NEWEST_ALARMS))
    # Calibrated alarms first and emphasised; the detector's signal after them, as uncalibrated info.
    calibrated = [a for a in NEWEST_ALARMS if a["calibrated"]]
    for i, alarm in enumerate(calibrated):
        expect(entries.nth(i)).to_have_class(re.compile(r"\balarm-calibrated\b"))
        expect(entries.nth(i).locator(".alarm-reason")).to_have_text(alarm["reason"])
        expect(entries.nth(i).locator("strong")).to_be_visible()
    info = entries.last
    expect(info).to_have_class(re.compile(r"\balarm-info\b"))
    expect(info).to_contain_text("ADWIN flagged a change in the raw error stream")
    expect(info.locator(".alarm-level")).to_have_text("info")
    expect(info).to_contain_text("(uncalibrated)")
    # A quiet window says so; the oldest window's KSWIN note is the only alarm of its window.
    expect(timeline.nth(2)).to_contain_text("no alarm")
    expect(timeline.nth(N_WINDOWS - 2)).to_contain_text("KSWIN noted window 1")
    session.screenshot(page, "alarm-timeline")
    session.assert_no_script_errors()
