"""Smoke test: the vocabulary growth benchmark runs end to end on MovieLens 1995-1998."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import vocab_growth


def test_quick_run_scores_every_arm_on_every_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vocab.json"

    status = vocab_growth.main(["--quick", "--json", str(out)])

    assert status == 0
    printed = capsys.readouterr().out
    assert "| ratings of | n | users | v1 (before) | fixed (after) | grown (after) | grown - fixed |" in printed
    figures = json.loads(out.read_text())
    assert figures["added"]["user_id"] > 0  # users first seen after v1's period were added
    added = figures["groups"]["new, added"]
    assert added["n"] > 0 and added["users"] == figures["added"]["user_id"]
    for group in figures["groups"].values():
        for aucs in group["auc"].values():
            assert all(0.0 <= auc <= 1.0 for auc in aucs)


def test_each_users_later_ratings_are_scored_and_never_trained_on() -> None:
    stream = vocab_growth.load_stream("movielens")
    settings = vocab_growth.Settings(
        vocab_growth.QUICK_INITIAL_UNTIL["movielens"], vocab_growth.QUICK_UNTIL, vocab_growth.RETRAIN, 3
    )

    data = vocab_growth.split(stream, settings)

    assert set(data.train.tolist()).isdisjoint(data.scored.tolist())
    assert int(data.train.min()) >= data.n_initial and stream.times[data.n_initial] >= settings.initial_until
    for user in {stream.rows[i]["user_id"] for i in data.scored[:50]}:
        trained = [i for i in data.train if stream.rows[i]["user_id"] == user]
        scored = [i for i in data.scored if stream.rows[i]["user_id"] == user]
        assert max(trained) < min(scored)  # a user's first half trains, the later half is scored
        assert len(trained) - len(scored) in (0, 1)
    assert np.all(stream.times[data.scored] < settings.until)
