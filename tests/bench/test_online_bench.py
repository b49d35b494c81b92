"""Smoke test: the online benchmark runs end to end on a small memory and prints its tables.

PostgreSQL only (skipped when the server is unreachable): the benchmark measures the production
set-up. Every answer is checked inside the script (200 and its id), so a run that exits 0 served
every request it timed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests.bench.postgres import SERVER, database_exists, needs_postgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "online.py"
CELLS = ("sketch", "exact", "off", "compensate")


@needs_postgres
def test_every_cell_is_timed_beside_its_floor_and_the_database_is_dropped() -> None:
    name = f"bench_online_smoke_{uuid.uuid4().hex[:8]}"
    args = ["--memory-size", "2000", "--seconds", "0.5", "--clients", "1,2", "--servers", "sync:1,gthread:1:2"]

    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--floor-rows", "20", "--database-url", f"{SERVER}/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    out = completed.stdout
    assert completed.returncode == 0, completed.stderr[-3000:]
    number = r"[\d,.]+"
    for cell in CELLS:
        assert re.search(rf"^\| {cell} \| {number} \| {number} \| {number} \| {number} \|$", out, re.MULTILINE), out
        for server in ("sync 1", "gthread 1x2"):
            for clients in (1, 2):
                row = rf"^\| {server} \| {cell} \| {clients} \| {number} \|( {number} \|){{3}} {number}x \| "
                assert re.search(row + rf"{number} / {number} / {number} \|$", out, re.MULTILINE), out
    # The verdicts are printed either way: a smoke run on a busy machine proves nothing about them.
    assert len(re.findall(r"sketch, one client: p50 .* (MET|MISSED)$", out, re.MULTILINE)) == 2
    assert len(re.findall(r"per core the web server used .*: (MET|MISSED) / (MET|MISSED)$", out, re.MULTILINE)) == 2
    assert not database_exists(name)
