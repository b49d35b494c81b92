"""Smoke test: the soak benchmark, at bin/up --fast's size on the embedded defaults, with its faults
(the fast worker SIGKILLed, a promotion and a rollback mid-run) and a core kept busy: every check
passes and the report names each figure. The full year on both backends is a manual run (README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "soak.py"


@pytest.mark.worker
def test_soak_fast_on_the_embedded_defaults_passes_every_check(tmp_path: Path) -> None:
    from tests.test_demo import _runtime_setup_is_done

    _runtime_setup_is_done()  # bin/up's bin/setup: the dev venv holds the runtime requirements
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "embedded", "--fast", "--out", str(tmp_path), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "soak: every check PASS" in run.stdout
    [result] = json.loads(out.read_text())
    assert result["backend"] == "embedded"
    assert any("SIGKILL to the fast worker" in fault for fault in result["faults"]), result["faults"]
    assert result["actions"]["promote_status"] == result["actions"]["rollback_status"] == 200, result["faults"]
    assert [name for name, _ in result["worker_exits"]] == ["worker"]
    assert result["end"]["pending_labels"] == 0
    for figure in ("label-to-memory lag: p50", "window lag: max", "retrain queue wait:", "client calls p50"):
        assert figure in run.stdout
