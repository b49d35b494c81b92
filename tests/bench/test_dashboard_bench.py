"""Smoke test: the dashboard benchmark seeds a tiny control room and prints a row per page and call.

On PostgreSQL only (the target is about PostgreSQL): the server of ``TEST_DATABASE_URL`` when it is
set, else the local one; skipped when it is unreachable. Timings are not asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from bench.dashboard import MAIN_SLUG, PAGES
from tests.bench.postgres import database_exists, database_url, needs_postgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "dashboard.py"
TINY = ["--events", "5000", "--windows", "50", "--requests", "2"]
FIGURES = r" +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +[\d.]+ +[\d,]+  (PASS|MISS)$"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def expected_rows() -> list[str]:
    """A pattern per page and call, in the table's order: pages flush left, their calls indented."""
    rows = []
    for page, calls in PAGES.items():
        for url, indent in [(page, ""), *((call, "  ") for call in calls)]:
            # The slug is known; the other names (an id, a time) are read from the database.
            parts = re.split(r"(\{\w+\})", url.replace("{slug}", MAIN_SLUG))
            rows.append(indent + "".join(r"\S+?" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts))
    return rows


@needs_postgres
def test_tiny_run_prints_every_page_and_call_and_drops_its_database() -> None:
    name = f"benchdash_smoke_{uuid.uuid4().hex[:8]}"

    completed = run_script(*TINY, "--database-url", database_url(name))

    out = completed.stdout
    # 0: every page under the target (3: one missed it or does not exist; 1: an error). The tiny data
    # set keeps every page far under 200 ms even on a loaded machine: a MISS is a regression.
    assert completed.returncode == 0, (completed.returncode, out, completed.stderr)
    assert re.search(r"^seeded in [\d.]+ s$", out, re.MULTILINE), out
    header = r"^dashboard benchmark: 5,000 events, 50 windows \(seeded in \d+ s\), 2 timed requests per page and call"
    assert re.search(header, out, re.MULTILINE), out
    table = out[out.index("page / call") :].splitlines()[1 : len(expected_rows()) + 1]
    for line, row in zip(table, expected_rows(), strict=True):
        assert re.fullmatch(rf"{row}{FIGURES}", line) and line.endswith("PASS"), (row, line)
    n = len(expected_rows())
    summary = rf"^{n} PASS, 0 MISS, 0 missing, 0 ERROR of {n} pages and calls"
    assert re.search(summary, out, re.MULTILINE), out
    assert not database_exists(name)


def test_a_bad_database_url_is_refused_before_anything_runs() -> None:
    completed = run_script("--database-url", database_url("postgres"))

    assert completed.returncode == 2
    assert "--database-url" in completed.stderr and "scratch database" in completed.stderr
