"""Performance before labels arrive: confidence-based estimates of AUC and accuracy from scores alone.

Labels come back late (minutes for a click, days for a delay), so a window's realised AUC is known
late too. If the model's probabilities are calibrated, they say how often it is right: a score of
0.8 is a positive four times in five. Confidence-based performance estimation (CBPE, as NannyML
does for binary classifiers) turns that into expected metrics:

* calibrated probabilities ``p`` come from the version's isotonic map (:func:`fit_calibration`,
  fitted on its profile's scores and labels when it is registered; the identity without one);
* expected accuracy at the threshold ``t``: the mean of ``p`` over predicted positives (score >= t)
  and of ``1 - p`` over predicted negatives;
* expected ROC AUC: each row is a positive with weight ``p`` and a negative with weight ``1 - p``;
  AUC is the weighted share of (positive, negative) pairs that the *scores* rank correctly, ties
  counting one half. The ranking uses the raw scores, since the isotonic map merges scores into
  ties that the model does not make.

The estimate is only as good as the calibration under drift, so bench/alarms.py measures its error
against the realised values. Binary tasks only.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import optimize

# Breakpoints kept of an isotonic map (its blocks, thinned evenly beyond this).
MAX_BREAKPOINTS: Final = 200
_EPSILON: Final = 1e-6


def fit_calibration(scores: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, list[float]]:
    """An isotonic map from scores to P(y = 1), as breakpoints ``{"x": [...], "y": [...]}``.

    Empty (the identity) with fewer than 20 rows or a single class.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    if s.size < 20 or y.min() == y.max():
        return {}
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    fitted = optimize.isotonic_regression(y).x
    # One breakpoint per block of equal fitted values, at the block's mean score.
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    ends = np.r_[starts[1:], fitted.size]
    x = np.array([s[a:b].mean() for a, b in zip(starts, ends, strict=True)])
    v = fitted[starts]
    if x.size > MAX_BREAKPOINTS:
        pick = np.unique(np.linspace(0, x.size - 1, MAX_BREAKPOINTS).round().astype(int))
        x, v = x[pick], v[pick]
    return {"x": [round(float(a), 6) for a in x], "y": [round(float(b), 6) for b in v]}


def calibrate(calibration: dict[str, Any] | None, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Scores mapped through ``calibration`` (linear between breakpoints, flat beyond), in (0, 1)."""
    s = np.asarray(scores, dtype=np.float64)
    if calibration and calibration.get("x"):
        s = np.interp(s, calibration["x"], calibration["y"])
    return np.clip(s, _EPSILON, 1.0 - _EPSILON)


def expected_accuracy(scores: npt.ArrayLike, p: npt.ArrayLike, threshold: float) -> float | None:
    """Expected accuracy of predictions ``scores >= threshold`` when row i is positive w.p. ``p[i]``."""
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    if s.size == 0:
        return None
    return float(np.mean(np.where(s >= threshold, q, 1.0 - q)))


def expected_auc(scores: npt.ArrayLike, p: npt.ArrayLike) -> float | None:
    """Expected ROC AUC of ``scores`` when row i is positive w.p. ``p[i]`` (None when undefined)."""
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    positive, negative = q, 1.0 - q
    total = positive.sum() * negative.sum() - float(np.sum(positive * negative))  # pairs i != j
    if s.size < 2 or total <= 0:
        return None
    order = np.argsort(s, kind="stable")
    s, positive, negative = s[order], positive[order], negative[order]
    # Group equal scores: a positive beats every negative of a lower score, ties count one half.
    starts = np.flatnonzero(np.r_[True, np.diff(s) != 0])
    pos_groups = np.add.reduceat(positive, starts)
    neg_groups = np.add.reduceat(negative, starts)
    neg_below = np.cumsum(neg_groups) - neg_groups
    within = np.add.reduceat(positive * negative, starts)  # a row is not paired with itself
    wins = float(np.sum(pos_groups * neg_below) + 0.5 * np.sum(pos_groups * neg_groups - within))
    return wins / total


def estimate(calibration: dict[str, Any] | None, scores: npt.ArrayLike, threshold: float) -> dict[str, float | None]:
    """Expected ``auc`` and ``accuracy`` of binary ``scores`` under the version's ``calibration``."""
    p = calibrate(calibration, scores)
    return {"auc": expected_auc(scores, p), "accuracy": expected_accuracy(scores, p, threshold)}
