"""Smoke test: the stream replay benchmark runs end to end on a tiny slice of both dev streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import stream_replay


def test_quick_replay_scores_every_arm_and_checks_the_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "replay.json"

    status = stream_replay.main(["--quick", "--arms", *stream_replay.ALL_ARMS, "--json", str(out)])

    assert status == 0
    printed = capsys.readouterr().out
    assert "### Targets (ISSUE 3)" in printed
    report = json.loads(out.read_text())
    assert set(report["streams"]) == {"flights", "movielens"}
    for stream in report["streams"].values():
        (run,) = stream["runs"]
        assert set(run) == set(stream_replay.ALL_ARMS)
        assert all(len(scores) == stream_replay.QUICK_SLOTS for scores in run.values())
        assert all(0.0 < s["log_loss"] < 5.0 and 0.0 <= s["auc"] <= 1.0 for scores in run.values() for s in scores)
        (control,) = stream["control_runs"]
        assert set(control) == set(stream_replay.CONTROL_ARMS)
    checks = {(t["stream"], t["what"]) for t in report["targets"]}
    assert ("flights", "static+exact AUC vs static") in checks
    assert ("movielens-shuffled", "static+sketch AUC vs static") in checks
    # Quality, not speed: seeded, the same run to run, and every target is met on the slice.
    assert [t for t in report["targets"] if not t["passed"]] == []


def test_memory_is_read_before_the_chunk_that_writes_it() -> None:
    import torch

    memory = stream_replay.MemorySettings(k=5, capacity=100).memory("exact", dim=2, seed=0)
    keys = torch.nn.functional.normalize(torch.ones(4, 2), dim=1)
    labels = torch.tensor([1.0, 1.0, 1.0, 1.0])
    p_base = torch.full((4,), 0.2)

    readout = stream_replay.replay_memory(memory, keys, p_base, labels, chunk=2)

    # The first chunk finds an empty memory; the second sees the first chunk's labels only.
    assert readout.support[:2].tolist() == [0.0, 0.0]
    assert (readout.support[2:] > 0).all()
    assert readout.y_bar[2:].tolist() == pytest.approx([1.0, 1.0])
    assert len(memory) == 4
