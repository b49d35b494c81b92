"""The statistics behind the batch drift tests, per method.

Where these depart from Evidently, on purpose:

* ``chisquare`` is the two-sample test of homogeneity on the 2 x K table of counts (reference and
  current rows, one column per category in the union of both windows). Evidently runs a
  goodness-of-fit test that treats the reference proportions as exact; when both windows are
  samples of similar size that roughly doubles the statistic, and on 500 vs 500 rows from one
  distribution it flags drift about 30% of the time at p < 0.05 instead of 5%. The homogeneity
  test needs no smoothing for categories seen in only one window: its expected counts come from
  the pooled column totals, which are positive for every category in the union.
* ``jensenshannon`` is the Jensen-Shannon *distance* (the square root of the divergence, as
  Evidently and ``scipy.spatial.distance.jensenshannon`` return) with base-2 logarithms, so it lies
  in [0, 1]. Evidently uses natural logarithms (range [0, sqrt(ln 2)] = [0, 0.83]); the base-2
  value is 1/sqrt(ln 2) = 1.20 times larger, so the shared 0.1 threshold is equivalent to
  Evidently's 0.083, slightly more sensitive.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats
from scipy.stats import contingency

KS: Final = "ks"
CHISQUARE: Final = "chisquare"
WASSERSTEIN: Final = "wasserstein"
JENSEN_SHANNON: Final = "jensenshannon"
PSI: Final = "psi"

# Methods that return a p-value (drift when it is *below* the threshold); the others return a
# distance (drift when it is *at or above* the threshold).
P_VALUE_METHODS: Final = frozenset({KS, CHISQUARE})
METHODS_BY_KIND: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "numeric": (KS, WASSERSTEIN, PSI),
        "categorical": (CHISQUARE, JENSEN_SHANNON, PSI),
    }
)

PSI_BINS: Final = 30
# Stands in for an empty bin's share in PSI, whose log ratio is infinite otherwise. 1e-4 is the
# usual choice (and Evidently's): an empty bin then adds at most about 0.001 * share to the index.
PSI_EPSILON: Final = 1e-4
# Floor on the reference std that normalises the Wasserstein distance (Evidently's 0.001): a
# constant reference column would otherwise divide by zero.
MIN_REFERENCE_STD: Final = 0.001


def population_stability_index(reference_shares: NDArray[np.float64], current_shares: NDArray[np.float64]) -> float:
    """PSI = sum over bins of (current - reference) * ln(current / reference).

    Shares are per-bin fractions of each window; empty bins count as :data:`PSI_EPSILON` (without
    renormalising, the usual convention) so that the log ratio stays finite.
    """
    ref = np.where(reference_shares > 0, reference_shares, PSI_EPSILON)
    cur = np.where(current_shares > 0, current_shares, PSI_EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon_distance(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """sqrt(JSD(p || q)) with base-2 logarithms, in [0, 1]; ``p`` and ``q`` are probability vectors.

    Computed from ``rel_entr`` rather than with ``scipy.spatial.distance.jensenshannon`` so that
    rounding on identical inputs (a divergence of -1e-17) gives 0 instead of NaN.
    """
    m = 0.5 * (p + q)
    divergence = 0.5 * (np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))) / math.log(2.0)
    return math.sqrt(max(float(divergence), 0.0))


def numeric_statistic(
    method: str, reference: NDArray[np.float64], current: NDArray[np.float64]
) -> tuple[float, float | None]:
    """``method``'s statistic (or distance) and p-value (``None`` for a distance) on numeric windows."""
    if method == KS:
        result = stats.ks_2samp(reference, current, _no_deco=True)  # see _chi2_homogeneity
        return float(result.statistic), float(result.pvalue)
    if method == WASSERSTEIN:
        scale = max(float(np.std(reference)), MIN_REFERENCE_STD)
        return float(stats.wasserstein_distance(reference, current)) / scale, None
    # PSI on PSI_BINS bins of equal reference mass. Ties make some quantiles equal; np.unique merges
    # those bins. The outer bins are open so current values outside the reference range still count.
    inner_edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, PSI_BINS + 1)[1:-1]))
    n_bins = inner_edges.size + 1
    ref_counts = np.bincount(np.searchsorted(inner_edges, reference, side="right"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(inner_edges, current, side="right"), minlength=n_bins)
    return population_stability_index(ref_counts / reference.size, cur_counts / current.size), None


def categorical_statistic(method: str, reference: Counter[str], current: Counter[str]) -> tuple[float, float | None]:
    """``method``'s statistic (or distance) and p-value (``None`` for a distance) on category counts."""
    categories = list(reference | current)
    ref_counts = np.array([reference[c] for c in categories], dtype=np.float64)
    cur_counts = np.array([current[c] for c in categories], dtype=np.float64)
    if method == CHISQUARE:
        if len(categories) == 1:
            return 0.0, 1.0  # one category on both sides: identical distributions, and zero degrees of freedom
        return _chi2_homogeneity(np.vstack([ref_counts, cur_counts]))
    ref_shares = ref_counts / ref_counts.sum()
    cur_shares = cur_counts / cur_counts.sum()
    if method == JENSEN_SHANNON:
        return jensen_shannon_distance(ref_shares, cur_shares), None
    return population_stability_index(ref_shares, cur_shares), None


def _chi2_homogeneity(observed: NDArray[np.float64]) -> tuple[float, float]:
    """``stats.chi2_contingency(observed, correction=False)``'s statistic and p-value, computed as it does.

    No Yates correction: it only applies to two categories, where it makes the test conservative.
    SciPy's tests sit behind its axis and NaN-policy decorator, which inspects signatures on every
    call, at a cost above that of the test itself on a thousand rows, for nothing here (the inputs
    are 1-D and free of NaN already). ``_no_deco=True`` is SciPy's own switch that skips it (scipy is
    pinned; tests/ml/test_drift.py checks that the results equal the public calls').
    """
    expected = contingency.expected_freq(observed)
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    result = stats.power_divergence(observed, expected, ddof=observed.size - 1 - dof, axis=None, _no_deco=True)
    return float(result[0]), float(result[1])
