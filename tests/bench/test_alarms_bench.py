"""Smoke test: the alarm-quality benchmark runs end to end (``--quick``) on both dev streams."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _rates(stream: dict[str, Any]) -> list[float]:
    """Every alarm rate and detection share the report holds for one stream."""
    values: list[float] = []
    for replay in ("dev", "control"):
        rates = stream[replay]["rates"]
        values += rates["methods"].values()
        for rule in rates["columns"].values():
            values += [rule["max"], rule["mean"], *rule["per_column"].values()]
    for injection in stream["injections"].values():
        values += [summary["share"] for summary in injection["detection"].values()]
    return values


def test_quick_bench_prints_the_tables_and_detects_a_one_sd_shift(tmp_path: Path) -> None:
    out = tmp_path / "alarms.json"

    # A subprocess: the bench sets up Django itself (DJANGO_DEBUG for a script run without secrets).
    done = subprocess.run(
        [sys.executable, "bench/alarms.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "| rule | method | dev stream rate | control FAR |" in printed
    assert "CBPE estimate vs realised" in printed
    assert "### Targets (ISSUE 17" in printed
    assert "PASS" in printed or "MISS" in printed
    report = json.loads(out.read_text())
    assert set(report["streams"]) == {"flights", "movielens"}
    for name, stream in report["streams"].items():
        rates = _rates(stream)
        assert rates and all(0.0 <= r <= 1.0 for r in rates), name
        assert stream["control"]["rates"]["windows"] > 0
        shift = stream["injections"]["shift +1 sd"]
        # The calibrated dataset status, and the shifted column itself, alarm on the first shifted window.
        assert shift["detection"]["after:dataset status"]["share"] == 1.0, name
        assert shift["detection"]["after:column"]["delays"] == [0] * shift["runs"], name
        for figures in stream["dev"]["cbpe"].values():
            assert figures["windows"] > 0
            assert 0.0 <= figures["mae"] <= 1.0 and not math.isnan(figures["bias"])
    assert len(report["targets"]) == 12
