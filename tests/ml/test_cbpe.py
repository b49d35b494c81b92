"""Performance before labels: expected AUC and accuracy from calibrated scores."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.ml.cbpe import (
    MAX_BREAKPOINTS,
    calibrate,
    estimate,
    expected_accuracy,
    expected_auc,
    fit_calibration,
)
from adaptive.ml.flips import roc_auc


def realised(scores: np.ndarray, p: np.ndarray, threshold: float, draws: int, seed: int) -> tuple[float, float]:
    """Mean realised AUC and accuracy over label draws with P(y_i = 1) = p_i."""
    rng = np.random.default_rng(seed)
    aucs, accuracies = [], []
    for _ in range(draws):
        labels = (rng.random(p.size) < p).astype(np.int64)
        auc = roc_auc(scores, labels)
        assert auc is not None
        aucs.append(auc)
        accuracies.append(float(np.mean((scores >= threshold) == labels)))
    return float(np.mean(aucs)), float(np.mean(accuracies))


@pytest.mark.parametrize("rounding", [None, 1], ids=["distinct-scores", "tied-scores"])
def test_expected_metrics_match_the_mean_realised_metrics(rounding: int | None) -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(2.0, 3.0, size=400)
    # Scores rank like p but are not p (a monotone transform), and may tie.
    scores = p**0.5 if rounding is None else np.round(p**0.5, rounding)
    auc, accuracy = realised(scores, p, 0.6, draws=2000, seed=1)
    assert expected_auc(scores, p) == pytest.approx(auc, abs=0.005)
    assert expected_accuracy(scores, p, 0.6) == pytest.approx(accuracy, abs=0.005)


def test_expected_auc_of_all_equal_scores_is_one_half() -> None:
    p = np.random.default_rng(2).random(50)
    assert expected_auc(np.full(50, 0.3), p) == pytest.approx(0.5)


def test_expected_auc_of_a_perfect_ranking_with_certain_labels_is_one() -> None:
    p = np.r_[np.zeros(10), np.ones(10)]
    assert expected_auc(np.linspace(0.0, 1.0, 20), p) == pytest.approx(1.0)
    assert expected_auc(np.linspace(1.0, 0.0, 20), p) == pytest.approx(0.0)


def test_expected_metrics_are_undefined_without_pairs_or_rows() -> None:
    assert expected_auc([0.5], [0.5]) is None
    assert expected_auc([0.1, 0.9], [1.0, 1.0]) is None  # no possible negative
    assert expected_accuracy([], [], 0.5) is None


def test_calibration_is_monotone_and_recovers_a_miscalibrated_score() -> None:
    # The model says s, the truth is s^2: it is overconfident everywhere but at 0 and 1.
    rng = np.random.default_rng(3)
    scores = rng.random(20_000)
    labels = (rng.random(scores.size) < scores**2).astype(np.int64)
    calibration = fit_calibration(scores, labels)
    x, y = np.array(calibration["x"]), np.array(calibration["y"])
    assert np.all(np.diff(x) > 0)
    assert np.all(np.diff(y) >= 0)
    grid = np.linspace(0.1, 0.9, 17)
    assert np.max(np.abs(calibrate(calibration, grid) - grid**2)) < 0.05
    # The raw scores were far off at 0.5 (0.5 vs 0.25).
    assert abs(float(calibrate(None, [0.5])[0]) - 0.25) > 0.2


def test_calibration_thins_to_at_most_max_breakpoints_keeping_both_ends() -> None:
    rng = np.random.default_rng(4)
    scores = rng.random(5000)
    # Labels in [0, 1] that rise with the score make every row its own isotonic block.
    labels = np.sort(rng.random(5000))[np.argsort(np.argsort(scores))]
    labels[0], labels[-1] = 0.0, 1.0
    calibration = fit_calibration(scores, labels)
    assert len(calibration["x"]) == len(calibration["y"]) == MAX_BREAKPOINTS
    assert calibration["x"][0] == pytest.approx(scores.min(), abs=1e-6)
    assert calibration["x"][-1] == pytest.approx(scores.max(), abs=1e-6)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([], []),
        pytest.param([0.1] * 30, [1] * 30, id="all-positive"),
        ([0.2] * 30, [0] * 30),
        ([0.5] * 19, [0, 1] * 9 + [1]),
    ],
    ids=["empty", "all-positive", "all-negative", "under-20-rows"],
)
def test_calibration_is_the_identity_without_enough_data(scores: list[float], labels: list[int]) -> None:
    assert fit_calibration(scores, labels) == {}
    np.testing.assert_allclose(calibrate({}, [0.0, 0.3, 1.0]), [1e-6, 0.3, 1.0 - 1e-6])


def test_calibration_ignores_non_finite_scores() -> None:
    rng = np.random.default_rng(5)
    scores = np.r_[rng.random(100), [np.nan, np.inf]]
    labels = np.r_[(rng.random(100) < 0.5).astype(np.int64), [1, 0]]
    calibration = fit_calibration(scores, labels)
    assert calibration and all(np.isfinite(calibration["x"]))


def test_estimate_uses_the_calibration_for_accuracy_and_raw_scores_for_ranking() -> None:
    rng = np.random.default_rng(6)
    scores = rng.random(5000)
    labels = (rng.random(scores.size) < scores**2).astype(np.int64)
    calibration = fit_calibration(scores, labels)
    window = rng.random(1000)
    result = estimate(calibration, window, 0.5)
    p = calibrate(calibration, window)
    assert result == {"auc": expected_auc(window, p), "accuracy": expected_accuracy(window, p, 0.5)}
    # Identity calibration believes its overconfident scores: a higher expected accuracy.
    naive, calibrated = estimate({}, window, 0.5)["accuracy"], result["accuracy"]
    assert naive is not None and calibrated is not None
    assert naive > calibrated
