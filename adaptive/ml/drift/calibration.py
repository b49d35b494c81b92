"""Calibrated drift thresholds: each column's distance judged against its own null distribution.

A fixed threshold on a distance (Evidently's 0.1) or on a p-value (0.05) does not mean the same
thing for every column and window size: a column with a hundred sparse categories shows a
Jensen-Shannon distance above 0.1 between two samples of one distribution, and a window of 5,000
rows makes any test significant. Here every column gets the null distribution of its own statistic
at the window's size, drawn from the reference itself:

* **The statistic** is an effect size that means the same at any size: the Wasserstein distance
  divided by the reference's standard deviation for numeric columns ("how many standard deviations
  the distribution moved"), the Jensen-Shannon distance (base 2, in [0, 1]) for categorical ones.
  The population stability index is computed beside it for operators used to it.
* **The null** is the statistic between two bootstrap samples of the reference, one of the
  reference's size and one of the window's: what two samples of one distribution look like at those
  sizes. :data:`NULL_RESAMPLES` of them are drawn (vectorised over the reference's support, 2-20
  milliseconds per column) and a gamma distribution is fitted to them by moments, so that p-values
  far in the tail (a family-wise test over twenty columns needs 0.0005) come from the fit instead of
  from a handful of resamples. Window sizes are rounded down to a geometric grid
  (:func:`size_bucket`) so a process calibrates a column a few times, not once per window: a
  smaller size has a wider null, so the rounding errs towards fewer alarms.
* **The level** of a column: ``drift`` when its p-value is below ``alpha`` (the column's false-alarm
  rate per window) *and* the statistic reaches ``min_effect`` (a shift too small to matter is not an
  alarm however significant); ``warn`` when p < 5 x ``alpha`` and the statistic reaches half of
  ``min_effect``. ``threshold`` is the statistic's drift boundary (the larger of the null's 1 - alpha
  quantile and ``min_effect``) and ``severity`` is statistic / threshold: 1 at the boundary, 3 for a
  shift three times as large as the boundary.
* **The dataset status** (:func:`dataset_status`) is ``drift`` when any column's p-value is below
  ``alpha_status`` divided by the number of columns tested (Bonferroni: at most ``alpha_status`` of
  windows raise it when nothing drifts) and its statistic reaches ``min_effect``; ``ok`` otherwise.

Production windows are autocorrelated, so the false-alarm rates are checked on time-shuffled
streams too (bench/alarms.py), not only on resamples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from adaptive.ml.drift.columns import Level
from adaptive.ml.drift.samples import ColumnSample, ColumnValues, sample_of
from adaptive.ml.drift.statistics import (
    JENSEN_SHANNON,
    MIN_REFERENCE_STD,
    WASSERSTEIN,
    categorical_statistic,
    numeric_statistic,
)

NULL_RESAMPLES: Final = 500
# Per-column false-alarm rate per window, and the family-wise rate of the dataset status.
DEFAULT_COLUMN_ALPHA: Final = 0.01
DEFAULT_STATUS_ALPHA: Final = 0.01
DEFAULT_MIN_EFFECT: Final = 0.1
WARN_ALPHA_FACTOR: Final = 5.0
# Window sizes are calibrated on the grid 16 * sqrt(2)^k.
SIZE_GRID_BASE: Final = 16
SIZE_GRID_FACTOR: Final = math.sqrt(2.0)
HISTOGRAM_BINS: Final = 20
HISTOGRAM_CATEGORIES: Final = 12
# A p-value is never reported below this: the fitted tail is not trusted further.
MIN_P_VALUE: Final = 1e-12


def effect_method(kind: str) -> str:
    """The effect-size statistic for a column kind: normalised Wasserstein or Jensen-Shannon."""
    return WASSERSTEIN if kind == "numeric" else JENSEN_SHANNON


def size_bucket(n: int) -> int:
    """The largest grid size (16, 22, 32, 45, 64, ...: ``int(16 * sqrt(2) ** k)``) at or below ``n``;
    ``n`` itself below 16."""
    if n <= SIZE_GRID_BASE:
        return max(1, n)
    k = math.floor(math.log(n / SIZE_GRID_BASE) / math.log(SIZE_GRID_FACTOR))
    # The float estimate of k can be one off either way next to a grid point: settle on integers.
    while int(SIZE_GRID_BASE * SIZE_GRID_FACTOR ** (k + 1)) <= n:
        k += 1
    while k > 0 and int(SIZE_GRID_BASE * SIZE_GRID_FACTOR**k) > n:
        k -= 1
    return int(SIZE_GRID_BASE * SIZE_GRID_FACTOR**k)


@dataclass(frozen=True, slots=True)
class NullDistribution:
    """A column's statistic between two samples of its reference, at one window size: a gamma
    fitted by moments to bootstrap resamples."""

    method: str
    size: int
    mean: float
    std: float

    @property
    def _shape_scale(self) -> tuple[float, float]:
        variance = max(self.std**2, 1e-18)
        mean = max(self.mean, 1e-12)
        return mean * mean / variance, variance / mean

    def p_value(self, statistic: float) -> float:
        """P(null statistic >= ``statistic``)."""
        shape, scale = self._shape_scale
        return max(float(stats.gamma.sf(statistic, shape, scale=scale)), MIN_P_VALUE)

    def quantile(self, alpha: float) -> float:
        """The statistic that the null exceeds with probability ``alpha``."""
        shape, scale = self._shape_scale
        return float(stats.gamma.isf(alpha, shape, scale=scale))


def null_distribution(
    reference: ColumnSample, size: int, *, resamples: int = NULL_RESAMPLES, seed: int = 0
) -> NullDistribution:
    """The null of :func:`effect_method`'s statistic for windows of ``size`` rows against ``reference``."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rng = np.random.default_rng(seed)
    method = effect_method(reference.kind)
    if reference.numbers is not None:
        values = _null_wasserstein(reference.numbers, size, resamples, rng)
    else:
        assert reference.counts is not None
        values = _null_jensen_shannon(np.array(list(reference.counts.values()), dtype=np.float64), size, resamples, rng)
    return NullDistribution(method, size, float(values.mean()), float(values.std(ddof=1)))


def _null_wasserstein(reference: NDArray[np.float64], size: int, resamples: int, rng: np.random.Generator) -> Any:
    """Normalised W1 between bootstrap samples (the reference's size, and ``size``) of the reference.

    Both samples live on the reference's sorted support, so each is a vector of counts over it and
    W1 is the sum over the support's gaps of |F_a - F_b| times the gap.
    """
    support, inverse = np.unique(reference, return_inverse=True)
    scale = max(float(np.std(reference)), MIN_REFERENCE_STD)
    if support.size == 1:
        return np.zeros(resamples)
    gaps = np.diff(support)
    a = _bootstrap_cdfs(inverse, support.size, reference.size, resamples, rng)
    b = _bootstrap_cdfs(inverse, support.size, size, resamples, rng)
    return (np.abs(a - b) @ gaps) / scale


def _bootstrap_counts(
    rows: NDArray[np.int64], k: int, size: int, resamples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Counts over ``k`` bins of ``resamples`` draws of ``size`` rows with replacement from ``rows``
    (each row's bin index): one bincount for all."""
    drawn = rows[rng.integers(0, rows.size, size=(resamples, size))]
    offsets = (drawn + (np.arange(resamples) * k)[:, None]).ravel()
    return np.bincount(offsets, minlength=resamples * k).reshape(resamples, k).astype(np.float64)


def _bootstrap_cdfs(
    inverse: NDArray[np.int64], k: int, size: int, resamples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Empirical CDFs (at all but the last support point) of ``resamples`` draws of ``size`` rows
    with replacement from the rows whose support indexes are ``inverse``: one bincount for all."""
    counts = _bootstrap_counts(inverse, k, size, resamples, rng)
    return np.asarray(counts.cumsum(axis=1)[:, :-1] / size, dtype=np.float64)


def _null_jensen_shannon(counts: NDArray[np.float64], size: int, resamples: int, rng: np.random.Generator) -> Any:
    """Base-2 JS distance between bootstrap category counts of the reference's size and of ``size``.

    A window drawn from the reference's population also holds categories the reference never saw
    (a user, a film that had no row among the reference's 2,000). Their share is the Good-Turing
    estimate, the reference's share of categories seen exactly once; in the window's draw each such
    row is a category of its own. A category present in only one window adds half its share to the
    base-2 divergence, so those rows add ``0.5 * k / size`` for ``k`` of them. Without them, a
    column with many rare categories (an id) would sit above its null in every window.
    """
    total = int(counts.sum())
    k = counts.size
    rows = np.repeat(np.arange(k), counts.astype(np.int64))  # the reference, one category index per row
    unseen = float(np.count_nonzero(counts == 1)) / total
    a = _bootstrap_counts(rows, k, total, resamples, rng) / total
    new = rng.binomial(size, unseen, size=resamples) if unseen > 0 else np.zeros(resamples, dtype=np.int64)
    # The window's draws: rows of the reference, the last ``new`` of each resample moved to an extra
    # bin (the unseen categories), which is then dropped from the seen part.
    drawn = rows[rng.integers(0, total, size=(resamples, size))]
    drawn[np.arange(size)[None, :] >= (size - new)[:, None]] = k
    offsets = (drawn + (np.arange(resamples) * (k + 1))[:, None]).ravel()
    b = np.bincount(offsets, minlength=resamples * (k + 1)).reshape(resamples, k + 1)[:, :k] / size
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_a = np.where(a > 0, a * np.log(a / m), 0.0).sum(axis=1)
        kl_b = np.where(b > 0, b * np.log(b / m), 0.0).sum(axis=1)
    divergence = np.maximum(0.5 * (kl_a + kl_b) / math.log(2.0) + 0.5 * new / size, 0.0)
    return np.sqrt(divergence)


@dataclass(frozen=True, slots=True)
class CalibratedResult:
    """One column's calibrated drift test in one window."""

    column: str
    method: str
    statistic: float
    p_value: float
    threshold: float
    level: Level
    severity: float
    psi: float
    histogram: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.level == "drift"


def calibrated_drift(
    reference: ColumnSample,
    current: ColumnValues | ColumnSample,
    *,
    column: str,
    null: NullDistribution,
    alpha: float = DEFAULT_COLUMN_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    with_histogram: bool = True,
) -> CalibratedResult:
    """Test one column of ``current`` against ``reference`` with its calibrated ``null``.

    Raises ``ValueError`` as :func:`adaptive.ml.drift.column_drift` does (wrong values, nothing left),
    and for an ``alpha`` outside (0, 1) or a negative ``min_effect``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_effect < 0.0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    cur = sample_of(current, kind=reference.kind, column=column, window="current")
    if reference.numbers is not None and cur.numbers is not None:
        statistic, _ = numeric_statistic(WASSERSTEIN, reference.numbers, cur.numbers)
        psi, _ = numeric_statistic("psi", reference.numbers, cur.numbers)
    else:
        assert reference.counts is not None and cur.counts is not None
        statistic, _ = categorical_statistic(JENSEN_SHANNON, reference.counts, cur.counts)
        psi, _ = categorical_statistic("psi", reference.counts, cur.counts)
    p_value = null.p_value(statistic)
    threshold = max(null.quantile(alpha), min_effect)
    level: Level = "ok"
    if p_value < alpha and statistic >= min_effect:
        level = "drift"
    elif p_value < WARN_ALPHA_FACTOR * alpha and statistic >= min_effect / 2:
        level = "warn"
    return CalibratedResult(
        column=column,
        method=null.method,
        statistic=statistic,
        p_value=p_value,
        threshold=threshold,
        level=level,
        severity=statistic / threshold if threshold > 0 else 0.0,
        psi=psi,
        histogram=histogram(reference, cur) if with_histogram else {},
    )


def dataset_status(
    results: Sequence[CalibratedResult],
    *,
    alpha_status: float = DEFAULT_STATUS_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> tuple[Level, list[CalibratedResult]]:
    """The window's status over its columns, with the columns that raise it (most severe first).

    ``drift`` when some column's p-value is below ``alpha_status / len(results)`` with an effect of
    at least ``min_effect``, else ``ok``. A column in its own drift band without passing this cut is
    a flag on the grid, not a deployment alarm: with twenty columns at 1% each, one of them is in
    its band in about a fifth of the windows of a stream that does not change.
    """
    if not results:
        return "ok", []
    cut = alpha_status / len(results)
    raising = [r for r in results if r.p_value < cut and r.statistic >= min_effect]
    if raising:
        return "drift", sorted(raising, key=lambda r: -r.severity)
    return "ok", []


def histogram(reference: ColumnSample, current: ColumnSample) -> dict[str, Any]:
    """Both windows' distributions on shared bins, as shares, for the dashboard's drill-down.

    Numeric: :data:`HISTOGRAM_BINS` bins of equal width over the reference's 1st to 99th percentile,
    with open outer bins (``edges`` has one more entry than the counts; the first and last bins also
    hold everything beyond them). Categorical: the :data:`HISTOGRAM_CATEGORIES` most frequent
    categories of either window, the rest summed as ``(other)``.
    """
    if reference.numbers is not None and current.numbers is not None:
        low, high = np.quantile(reference.numbers, [0.01, 0.99])
        if not high > low:
            low, high = float(reference.numbers.min()) - 0.5, float(reference.numbers.max()) + 0.5
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        inner = edges[1:-1]
        ref_counts = np.bincount(np.searchsorted(inner, reference.numbers, side="right"), minlength=HISTOGRAM_BINS)
        cur_counts = np.bincount(np.searchsorted(inner, current.numbers, side="right"), minlength=HISTOGRAM_BINS)
        return {
            "kind": "numeric",
            "edges": [round(float(e), 6) for e in edges],
            "reference": _shares(ref_counts),
            "current": _shares(cur_counts),
        }
    assert reference.counts is not None and current.counts is not None
    ref_total, cur_total = reference.counts.total(), current.counts.total()
    combined = {
        key: reference.counts[key] / ref_total + current.counts[key] / cur_total
        for key in reference.counts | current.counts
    }
    top = sorted(combined, key=lambda key: (-combined[key], key))[:HISTOGRAM_CATEGORIES]
    ref_shares = [reference.counts[key] / ref_total for key in top]
    cur_shares = [current.counts[key] / cur_total for key in top]
    labels = list(top)
    if len(combined) > len(top):
        labels.append("(other)")
        ref_shares.append(1.0 - sum(ref_shares))
        cur_shares.append(1.0 - sum(cur_shares))
    return {
        "kind": "categorical",
        "categories": labels,
        "reference": [round(max(v, 0.0), 6) for v in ref_shares],
        "current": [round(max(v, 0.0), 6) for v in cur_shares],
    }


def _shares(counts: NDArray[np.int64]) -> list[float]:
    total = max(int(counts.sum()), 1)
    return [round(float(c) / total, 6) for c in counts]
