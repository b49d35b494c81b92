"""The jobs page follows a real retrain run by a real Celery worker, and cancels it from its dialog."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from adaptive.models import Job
from adaptive.services import retraining
from tests.e2e.conftest import WAIT_MS, Session, Users
from tests.e2e.seed import Seeded
from tests.worker import celery_worker, wait_for

pytestmark = pytest.mark.worker

# Far more epochs than the test watches (tens of seconds on one core for the seed's 300 events):
# the progress moves between the page's polls, and the test cancels the round long before the end.
SLOW = {"epochs": 10_000, "batch_size": 8, "patience": None}
# The value of one job row's progress bar once it exceeds a floor (false until then), read from the
# live DOM: the page may re-render its rows at every poll.
PROGRESS_ABOVE = """([id, floor]) => {
  const bar = document.querySelector(`table#jobs tr[data-job-id='${id}'] progress`);
  return bar !== null && bar.value > floor ? bar.value : false;
}"""


@pytest.fixture(autouse=True)
def _worker_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The worker inherits the environment: this test's artifact folder, the CPU, one thread.
    monkeypatch.setenv("ARTIFACT_ROOT", str(settings.ARTIFACT_ROOT))
    monkeypatch.setenv("ADAPTIVE_DEVICE", "cpu")
    monkeypatch.setenv("TORCH_NUM_THREADS", "1")
    yield


def test_jobs_page_shows_a_real_retrain_progressing_and_cancels_it(
    session: Session, users: Users, seeded: Seeded
) -> None:
    # The worker starts (a few seconds) while the browser logs in.
    with celery_worker(["default", "gpu"]):
        page = session.login("olivia")
        page.goto("/jobs/")
        # Set on the loaded page: still there at the end means the values came from polls, not reloads.
        page.evaluate("window.e2eSamePage = true")
        job = retraining.request_retrain(
            deployment=seeded.deployment, actor=users.operator, reason="e2e: watch the progress", params=SLOW
        )
        row = page.locator(f"table#jobs tr[data-job-id='{job.pk}']")
        expect(row).to_be_visible()
        # The worker needs a few seconds to start and load the data; then epochs tick.
        seen = [_progress_above(page, job.pk, 0.0, timeout=60_000)]
        for _ in range(2):
            seen.append(_progress_above(page, job.pk, seen[-1], timeout=WAIT_MS))
        expect(row.locator(".status")).to_contain_text("running")
        session.screenshot(page, "jobs-running")
        running = Job.objects.get(pk=job.pk)
        assert (running.status, running.device) == (Job.Status.RUNNING, "cpu") and running.progress >= seen[-1]

        row.locator(f"button[data-cancel='{job.pk}']").click()
        dialog = page.locator("dialog#action-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("textarea[name=reason]").fill("e2e: seen enough")
        dialog.locator("button[type=submit]").click()

        expect(row.locator(".status")).to_contain_text("cancelled")
        expect(row.locator(f"button[data-cancel='{job.pk}']")).to_have_count(0)
        cancelled = wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.CANCELLED).first())
        assert cancelled.message == "cancelled by olivia: e2e: seen enough"
        assert cancelled.progress < 0.9  # stopped mid-round, long before the last epoch
        assert page.evaluate("window.e2eSamePage") is True
        session.screenshot(page, "jobs-cancelled")
    session.assert_no_script_errors()


def _progress_above(page: Page, job_id: int, floor: float, *, timeout: float) -> float:
    """Wait for the page to show the job's progress above ``floor``; returns the value shown."""
    shown = page.wait_for_function(PROGRESS_ABOVE, arg=[job_id, floor], timeout=timeout).json_value()
    assert isinstance(shown, int | float)
    return float(shown)
