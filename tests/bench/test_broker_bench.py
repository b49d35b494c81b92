"""Smoke test: the broker benchmark measures the hardened file-system transport on tiny sizes with
real workers, and it passes the robustness checks (nothing lost or repeated, bad files quarantined)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "broker.py"
# CPU is read in 10 ms ticks: over 2 s on a shared machine the budget is not the point here.
TINY = ["--samples", "4", "--idle-seconds", "2", "--cpu-budget", "100"]
TINY += ["--backlog", "200", "--producers", "2", "--messages", "15", "--intervals", "0.05"]


def test_hardened_transport_row_reports_latency_cpu_and_passes_robustness() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--no-baseline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert re.search(
        r"^broker benchmark: 4 latency samples, idle CPU over 2 s, 2 producers x 15 messages to 2 workers, "
        r"4 bad files; workers prefork x1 on default,monitoring,gpu",
        out,
        re.MULTILINE,
    ), out
    row = re.search(
        r"^hardened 50 ms +(?P<p50>[\d.]+) +(?P<p95>[\d.]+) +[\d.]+ +(?P<idle>[\d.]+) +(?P<backlog>[\d.]+) +\d+ +\d+ +"
        r"(?P<ran>\d+)/(?P<sent>\d+) +(?P<queued>\d+) +(?P<lost>\d+) +(?P<dup>\d+) +(?P<consumers>\d+) +"
        r"yes / 4 of 4 / yes$",
        out,
        re.MULTILINE,
    )
    assert row is not None, out
    assert row["ran"] == row["sent"] == "30" and row["queued"] == row["lost"] == row["dup"] == "0"
    assert 0 < float(row["p50"]) <= float(row["p95"])
    assert re.search(r"^choice: hardened 50 ms: lowest latency p95", out, re.MULTILINE), out
