"""Smoke test: the memory benchmark runs end to end on a tiny slice and prints its tables."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "memory.py"


def load_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the file itself. dataclasses look their
    # module up in sys.modules, so it is registered there for the length of the test.
    spec = importlib.util.spec_from_file_location("bench_memory", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_the_throughput_overhead_and_target_tables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_script(monkeypatch)
    threads = torch.get_num_threads()
    started = time.perf_counter()

    status = bench.main(["--quick"])

    out = capsys.readouterr().out
    assert status == 0
    assert time.perf_counter() - started < 10
    assert "| memory | entries | MB | fill s | add b=1 | add b=256 | estimate b=1 | estimate b=256 |" in out
    assert "| exact | 1,000 |" in out and "| sketch | 1,000 |" in out
    assert "| forward (predict_proba) |" in out
    assert "sketch/exact estimate speed, 1,000 entries, batch 256" in out
    # MISS is accepted: the speed-ratio target is set at 1,000,000 entries and the overhead target at
    # the full-size memory; --quick measures 1,000 entries, where fixed costs dominate both ratios.
    assert out.count("PASS") + out.count("MISS") == 4
    assert torch.get_num_threads() == threads  # --threads 1 is undone on the way out
    assert "| 32x10 first-order |" in out and "| 4x12 plain |" in out  # the overhead-by-shape table


def test_sketch_sizes_parse_and_reject_bad_items(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_script(monkeypatch)

    sizes = bench.parse_sketch_sizes("32x10, 8x12:plain")

    assert [(s.tables, s.bits, s.plain) for s in sizes] == [(32, 10, False), (8, 12, True)]
    assert sizes[1].params() == {"n_tables": 8, "n_bits": 12, "prior": None}
    for bad in ("32", "32x", "x10", "8x12:fast", "8y12"):
        with pytest.raises(ValueError, match="TABLESxBITS"):
            bench.parse_sketch_sizes(bad)
    for out_of_range, reason in (("0x10", "tables must be"), ("8x0", "bits 1-"), ("64x20", "above the limit")):
        with pytest.raises(ValueError, match=reason):
            bench.parse_sketch_sizes(out_of_range)
