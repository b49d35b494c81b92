"""Permutation importance: each feature's share of the rise in log loss when it is shuffled."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from adaptive.ml.importance import permutation_importance


def rows_and_labels(n: int = 400, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * a))).astype(np.int64)
    rows = [{"a": float(x), "b": float(y), "c": float(z)} for x, y, z in zip(a, b, c, strict=True)]
    return rows, labels


def uses_only_a(rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
    return np.array([1.0 / (1.0 + np.exp(-3.0 * row["a"])) for row in rows])


def uses_a_and_b(rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
    return np.array([1.0 / (1.0 + np.exp(-(3.0 * row["a"] + 0.5 * row["b"]))) for row in rows])


def ignores_everything(rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
    return np.full(len(rows), 0.4)


def test_the_only_used_column_takes_the_whole_share() -> None:
    rows, labels = rows_and_labels()
    shares = permutation_importance(uses_only_a, rows, labels, ["a", "b", "c"])
    assert shares == {"a": 1.0, "b": 0.0, "c": 0.0}


def test_shares_sum_to_one_and_follow_how_much_a_column_is_used() -> None:
    rows, labels = rows_and_labels()
    shares = permutation_importance(uses_a_and_b, rows, labels, ["a", "b", "c"])
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(share >= 0.0 for share in shares.values())
    assert shares["a"] > shares["b"] > shares["c"] == 0.0


def test_a_scorer_that_ignores_every_column_gives_equal_shares() -> None:
    rows, labels = rows_and_labels()
    shares = permutation_importance(ignores_everything, rows, labels, ["a", "b", "c"])
    assert shares == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_importance_is_reproducible_for_a_seed_and_leaves_rows_alone() -> None:
    rows, labels = rows_and_labels(n=100)
    before = [dict(row) for row in rows]
    one = permutation_importance(uses_a_and_b, rows, labels, ["a", "b"], seed=7)
    two = permutation_importance(uses_a_and_b, rows, labels, ["a", "b"], seed=7)
    assert one == two
    assert rows == before


def test_a_column_absent_from_the_rows_has_no_share() -> None:
    rows, labels = rows_and_labels(n=100)
    shares = permutation_importance(uses_only_a, rows, labels, ["a", "missing"])
    assert shares == {"a": 1.0, "missing": 0.0}
    assert permutation_importance(uses_only_a, rows, labels, []) == {}


@pytest.mark.parametrize(
    ("n_rows", "labels"),
    [(3, [0, 1]), (1, [1]), (0, [])],
    ids=["label-count-mismatch", "one-row", "no-rows"],
)
def test_bad_inputs_raise_value_error(n_rows: int, labels: list[int]) -> None:
    rows, _ = rows_and_labels(n=max(n_rows, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        permutation_importance(uses_only_a, rows[:n_rows], labels, ["a"])
