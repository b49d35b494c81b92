"""The versions page: lineage, the flip report of the retrain, and a comparison requested from its form."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from adaptive.models import FlipReport, Job
from tests.e2e.conftest import Session
from tests.e2e.seed import Seeded


def test_versions_page_shows_lineage_and_flip_report_and_queues_a_comparison(session: Session, seeded: Seeded) -> None:
    slug = seeded.deployment.slug
    report = FlipReport.objects.get(deployment=seeded.deployment)
    page = session.login("olivia")

    page.goto(f"/deployments/{slug}/versions/")

    lineage = page.locator("table#lineage")
    expect(lineage.locator("tr[data-version]")).to_have_count(2)
    v2 = lineage.locator("tr[data-version='2']")
    expect(v2).to_contain_text("live")
    expect(v2).to_contain_text(re.compile(r"\bv?1\b"))  # its parent
    expect(v2).to_contain_text(re.compile("retrain", re.IGNORECASE))
    expect(lineage.locator("tr[data-version='1']")).to_contain_text("retired")
    article = page.locator(f"#flip-reports article.flip-report[data-report-id='{report.pk}']")
    expect(article).to_contain_text("NFR")
    expect(article).to_contain_text(re.compile("gate passed", re.IGNORECASE))
    expect(article.locator("canvas.per-class-chart")).to_be_attached()
    session.screenshot(page, "versions")

    form = page.locator("form#compare-form")
    form.locator("select[name=old]").select_option("2")
    form.locator("select[name=new]").select_option("1")
    form.locator("[name=reason]").fill("e2e: how would v1 do today?")
    form.locator("button[type=submit]").click()

    link = page.locator("#compare-result a")
    expect(link).to_be_visible()
    job = Job.objects.get(deployment=seeded.deployment, kind=Job.Kind.EVALUATION, status=Job.Status.QUEUED)
    assert (job.params["old"], job.params["new"]) == (2, 1)
    expect(link).to_have_attribute("href", re.compile(rf"/jobs/\S*\b{job.pk}$"))
    session.screenshot(page, "versions-compare")
    session.assert_no_script_errors()
