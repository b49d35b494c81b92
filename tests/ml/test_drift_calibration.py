"""Calibrated drift: each column judged against the null of its own statistic at the window's size."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from adaptive.ml.drift.calibration import (
    HISTOGRAM_BINS,
    HISTOGRAM_CATEGORIES,
    NULL_RESAMPLES,
    CalibratedResult,
    NullDistribution,
    calibrated_drift,
    dataset_status,
    histogram,
    null_distribution,
    size_bucket,
)
from adaptive.ml.drift.reference import DriftReference, WindowColumn, assess_window
from adaptive.ml.drift.samples import ColumnSample, column_sample

Generator = Callable[[np.random.Generator, int], Any]

ZIPF_SHARES = 1.0 / np.arange(1, 101) ** 1.1
ZIPF_SHARES /= ZIPF_SHARES.sum()


def normal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=n)


def rounded_lognormal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Skewed, and rounded to one decimal as amounts often are: many ties on the support."""
    return np.round(rng.lognormal(0.0, 1.0, size=n), 1)


def zipf_categories(rng: np.random.Generator, n: int) -> list[str]:
    """100 categories with Zipf shares: the rarest are seen a few times in a window, if at all."""
    return [f"c{i}" for i in rng.choice(100, size=n, p=ZIPF_SHARES)]


def numeric_reference(values: Any) -> ColumnSample:
    return column_sample(values, kind="numeric", column="x")


def result(column: str, p_value: float, statistic: float, severity: float = 1.0) -> CalibratedResult:
    return CalibratedResult(
        column=column,
        method="wasserstein",
        statistic=statistic,
        p_value=p_value,
        threshold=0.1,
        level="ok",
        severity=severity,
        psi=0.0,
    )


# --- false alarms and power ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generator", "kind", "reference_size"),
    [
        (normal, "numeric", 2000),
        (rounded_lognormal, "numeric", 2000),
        (zipf_categories, "categorical", 2000),
        # A reference that misses some rare categories (about 10 of 100 here): the null's Good-Turing
        # share of unseen categories stands in for them.
        (zipf_categories, "categorical", 1000),
    ],
    ids=["normal", "rounded-lognormal", "zipf-100", "zipf-100-small-reference"],
)
def test_false_alarm_rate_on_one_distribution_stays_near_alpha(
    generator: Generator, kind: str, reference_size: int
) -> None:
    # Given references and windows of 512 rows (a grid size, so no rounding helps), all from one
    # distribution; the rate is averaged over references since each reference's own sampling error
    # stays in every window compared with it.
    alpha, references, windows, size = 0.01, 5, 120, 512
    assert size_bucket(size) == size
    rates = []
    for r in range(references):
        rng = np.random.default_rng(100 + r)
        reference = column_sample(generator(rng, reference_size), kind=kind, column="x")
        null = null_distribution(reference, size, seed=r)
        alarms = 0
        for _ in range(windows):
            outcome = calibrated_drift(
                reference,
                generator(rng, size),
                column="x",
                null=null,
                alpha=alpha,
                min_effect=0.0,
                with_histogram=False,
            )
            alarms += outcome.p_value < alpha
        rates.append(alarms / windows)
    assert float(np.mean(rates)) <= 0.03, rates


def test_one_standard_deviation_mean_shift_is_always_flagged() -> None:
    rng = np.random.default_rng(1)
    reference = numeric_reference(rng.normal(size=2000))
    null = null_distribution(reference, 1000)
    for _ in range(20):
        outcome = calibrated_drift(reference, rng.normal(1.0, 1.0, size=1000), column="x", null=null)
        assert outcome.level == "drift"
        assert outcome.drifted
        assert outcome.p_value < 1e-6
        assert outcome.severity > 1.0
        assert outcome.statistic > outcome.threshold


def test_swapping_two_categories_frequencies_is_flagged() -> None:
    # Same categories, same set of shares: only which category holds which share changed.
    shares = {"a": 0.4, "b": 0.1, "c": 0.2, "d": 0.15, "e": 0.15}
    swapped = {**shares, "a": 0.1, "b": 0.4}
    rng = np.random.default_rng(2)

    def draw(table: dict[str, float], n: int) -> list[str]:
        return list(rng.choice(list(table), size=n, p=list(table.values())))

    reference = column_sample(draw(shares, 2000), kind="categorical", column="k")
    null = null_distribution(reference, 500)
    outcome = calibrated_drift(reference, draw(swapped, 500), column="k", null=null)
    assert outcome.method == "jensenshannon"
    assert outcome.level == "drift"
    assert outcome.severity > 1.0
    unchanged = calibrated_drift(reference, draw(shares, 500), column="k", null=null)
    assert unchanged.level == "ok"


def test_tiny_but_significant_shift_on_a_huge_window_is_not_drift() -> None:
    # Rounded to cents so the reference's support stays small and the null cheap.
    rng = np.random.default_rng(3)
    reference = numeric_reference(np.round(rng.normal(size=50_000), 2))
    null = null_distribution(reference, 32_768)
    window = np.round(rng.normal(0.04, 1.0, size=32_768), 2)
    floored = calibrated_drift(reference, window, column="x", null=null, min_effect=0.1, with_histogram=False)
    assert floored.p_value < 1e-6  # significant...
    assert floored.statistic < 0.05  # ...but a 0.04-sd move
    assert floored.level == "ok"
    assert floored.threshold == pytest.approx(0.1)
    assert floored.severity < 1.0
    unfloored = calibrated_drift(reference, window, column="x", null=null, min_effect=0.0, with_histogram=False)
    assert unfloored.level == "drift"


def test_warn_band_sits_between_ok_and_drift() -> None:
    # A statistic whose p-value lies between alpha and 5 x alpha, with a floor of zero.
    null = NullDistribution("wasserstein", 500, mean=0.05, std=0.015)
    statistic = null.quantile(0.02)
    values = np.linspace(-1.0, 1.0, 201)
    reference = numeric_reference(values)
    window = values + statistic * float(np.std(values))  # W1 of a pure shift = the shift
    outcome = calibrated_drift(reference, window, column="x", null=null, alpha=0.01, min_effect=0.0)
    assert 0.01 < outcome.p_value < 0.05
    assert outcome.level == "warn"


# --- the null --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_null_at_a_smaller_window_is_wider(kind: str) -> None:
    rng = np.random.default_rng(4)
    values = normal(rng, 2000) if kind == "numeric" else zipf_categories(rng, 2000)
    reference = column_sample(values, kind=kind, column="x")
    small, big = null_distribution(reference, 64), null_distribution(reference, 1024)
    assert small.quantile(0.01) > big.quantile(0.01)
    assert small.mean > big.mean


@pytest.mark.parametrize(("generator", "size"), [(normal, 512), (rounded_lognormal, 128)], ids=["normal", "lognormal"])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_gamma_quantile_is_close_to_a_direct_bootstrap(generator: Generator, size: int, alpha: float) -> None:
    # The direct bootstrap: scipy's W1 between resamples of the reference, 3000 of them.
    rng = np.random.default_rng(5)
    values = generator(rng, 1000)
    null = null_distribution(numeric_reference(values), size, resamples=3000, seed=1)
    direct = np.array(
        [stats.wasserstein_distance(rng.choice(values, values.size), rng.choice(values, size)) for _ in range(3000)]
    ) / np.std(values)
    empirical = float(np.quantile(direct, 1.0 - alpha))
    assert null.quantile(alpha) == pytest.approx(empirical, rel=0.10)


def test_numeric_null_equals_scipy_wasserstein_on_the_same_resamples() -> None:
    # The null draws row indexes with replacement and counts them over the sorted support; the same
    # draws as samples, measured with scipy, must give the same distances.
    values = np.round(np.random.default_rng(6).lognormal(size=300), 1)
    reference = numeric_reference(values)
    size, resamples, seed = 40, 50, 7
    null = null_distribution(reference, size, resamples=resamples, seed=seed)

    rng = np.random.default_rng(seed)
    a = values[rng.integers(0, values.size, size=(resamples, values.size))]
    b = values[rng.integers(0, values.size, size=(resamples, size))]
    direct = np.array([stats.wasserstein_distance(a[i], b[i]) / np.std(values) for i in range(resamples)])
    assert null.mean == pytest.approx(direct.mean(), rel=1e-9)
    assert null.std == pytest.approx(direct.std(ddof=1), rel=1e-9)


def test_categorical_null_equals_scipy_jensen_shannon_on_the_same_resamples() -> None:
    # The null draws reference rows by index; the window's last k draws of each resample stand for
    # categories the reference never saw (Good-Turing: the share of categories seen once), each a
    # category of its own. Rebuilt here as samples and measured with scipy: the same distances.
    values = zipf_categories(np.random.default_rng(8), 500)
    reference = column_sample(values, kind="categorical", column="k")
    size, resamples, seed = 60, 50, 9
    null = null_distribution(reference, size, resamples=resamples, seed=seed)

    assert reference.counts is not None
    counts = np.array(list(reference.counts.values()), dtype=np.int64)
    rows = np.repeat(np.arange(counts.size), counts)
    unseen = np.count_nonzero(counts == 1) / counts.sum()
    assert unseen > 0
    rng = np.random.default_rng(seed)
    a = rows[rng.integers(0, rows.size, size=(resamples, rows.size))]
    new = rng.binomial(size, unseen, size=resamples)
    b = rows[rng.integers(0, rows.size, size=(resamples, size))]
    direct = []
    for i in range(resamples):
        seen = np.bincount(b[i, : size - new[i]], minlength=counts.size)
        p = np.r_[np.bincount(a[i], minlength=counts.size), np.zeros(new[i])]
        q = np.r_[seen, np.ones(new[i])]
        direct.append(distance.jensenshannon(p, q, base=2))
    assert null.method == "jensenshannon"
    assert null.mean == pytest.approx(np.mean(direct), rel=1e-9)
    assert null.std == pytest.approx(np.std(direct, ddof=1), rel=1e-9)


def test_constant_reference_has_a_zero_null_and_any_move_is_drift() -> None:
    reference = numeric_reference([3.0] * 100)
    null = null_distribution(reference, 64)
    assert null.mean == 0.0 and null.std == 0.0
    outcome = calibrated_drift(reference, [3.0] * 63 + [4.0], column="x", null=null)
    assert outcome.level == "drift"


def test_null_distribution_rejects_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="size"):
        null_distribution(numeric_reference([1.0, 2.0]), 0)


def test_null_distribution_default_resample_count_is_used() -> None:
    # Guards the speed budget: the default is the documented count, not a larger one.
    assert NULL_RESAMPLES == 500


# --- size buckets -------------------------------------------------------------------------------


GRID = sorted({int(16 * np.sqrt(2.0) ** k) for k in range(30)})


def test_size_bucket_is_at_most_n_monotone_and_on_the_grid() -> None:
    assert GRID[:6] == [16, 22, 32, 45, 64, 90]
    buckets = [size_bucket(n) for n in range(1, 20_001)]
    for n, bucket in enumerate(buckets, start=1):
        assert bucket <= n
        if n < 16:
            assert bucket == n
        else:
            assert bucket in GRID
            # At most one grid step below n.
            assert bucket * np.sqrt(2.0) > n
    assert all(a <= b for a, b in itertools.pairwise(buckets))
    assert [size_bucket(n) for n in (512, 1000, 1024, 1447, 1449)] == [512, 724, 1024, 1024, 1448]


def test_size_bucket_of_a_grid_size_is_that_size() -> None:
    assert [size_bucket(n) for n in GRID] == GRID


def test_size_bucket_keeps_tiny_and_empty_sizes_positive() -> None:
    assert size_bucket(0) == 1
    assert size_bucket(1) == 1


# --- status and levels --------------------------------------------------------------------------


def test_dataset_status_uses_bonferroni_over_the_columns() -> None:
    # Four columns at alpha_status 0.01: the cut is 0.0025.
    between = [result("a", 0.005, 0.5), result("b", 0.5, 0.01), result("c", 0.9, 0.0), result("d", 0.2, 0.02)]
    assert dataset_status(between, alpha_status=0.01) == ("ok", [])
    below = [result("a", 0.001, 0.5, severity=2.0), *between[1:]]
    status, raising = dataset_status(below, alpha_status=0.01)
    assert status == "drift"
    assert [r.column for r in raising] == ["a"]


def test_dataset_status_needs_the_effect_floor_and_sorts_by_severity() -> None:
    tiny = [result("a", 1e-9, 0.05)]
    assert dataset_status(tiny, min_effect=0.1) == ("ok", [])
    both = [result("a", 1e-6, 0.3, severity=1.5), result("b", 1e-6, 0.9, severity=4.0)]
    status, raising = dataset_status(both)
    assert status == "drift"
    assert [r.column for r in raising] == ["b", "a"]
    assert dataset_status([]) == ("ok", [])


@pytest.mark.parametrize(("alpha", "min_effect"), [(0.0, 0.1), (1.0, 0.1), (-0.1, 0.1), (1.5, 0.1), (0.01, -0.1)])
def test_calibrated_drift_rejects_invalid_alpha_or_min_effect(alpha: float, min_effect: float) -> None:
    reference = numeric_reference(np.arange(100.0))
    null = null_distribution(reference, 50)
    with pytest.raises(ValueError, match=r"alpha|min_effect"):
        calibrated_drift(reference, np.arange(50.0), column="x", null=null, alpha=alpha, min_effect=min_effect)


# --- histograms -----------------------------------------------------------------------------------


def test_numeric_histogram_shares_sum_to_one_with_open_outer_bins() -> None:
    rng = np.random.default_rng(10)
    reference = numeric_reference(rng.normal(size=1000))
    current = numeric_reference(np.r_[rng.normal(size=500), [-100.0, 100.0]])
    drill = histogram(reference, current)
    assert drill["kind"] == "numeric"
    assert len(drill["edges"]) == HISTOGRAM_BINS + 1
    assert len(drill["reference"]) == len(drill["current"]) == HISTOGRAM_BINS
    assert sum(drill["reference"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(drill["current"]) == pytest.approx(1.0, abs=1e-5)
    # Values far outside the reference's range land in the outer bins, not nowhere.
    assert drill["current"][0] >= 1 / 502 and drill["current"][-1] >= 1 / 502


def test_categorical_histogram_sums_other_categories_beyond_twelve() -> None:
    rng = np.random.default_rng(11)
    reference = column_sample(zipf_categories(rng, 2000), kind="categorical", column="k")
    current = column_sample(zipf_categories(rng, 500), kind="categorical", column="k")
    drill = histogram(reference, current)
    assert drill["kind"] == "categorical"
    assert len(drill["categories"]) == HISTOGRAM_CATEGORIES + 1
    assert drill["categories"][-1] == "(other)"
    assert drill["categories"][0] == "c0"  # the most frequent first
    assert sum(drill["reference"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(drill["current"]) == pytest.approx(1.0, abs=1e-5)


def test_categorical_histogram_has_no_other_bucket_with_few_categories() -> None:
    reference = column_sample(["a"] * 5 + ["b"] * 3, kind="categorical", column="k")
    current = column_sample(["b"] * 2 + ["c"], kind="categorical", column="k")
    drill = histogram(reference, current)
    assert drill["categories"] == ["b", "a", "c"]
    assert drill["reference"] == pytest.approx([0.375, 0.625, 0.0])
    assert drill["current"] == pytest.approx([2 / 3, 0.0, 1 / 3], abs=1e-6)


# --- the reference and a window's assessment ------------------------------------------------------


def reference_source(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "features": {"amount": rng.normal(size=2000).tolist(), "city": zipf_categories(rng, 2000)},
        "prediction": rng.random(2000).tolist(),
        "label": None,
    }


def test_assess_window_reports_untestable_columns_in_skipped() -> None:
    rng = np.random.default_rng(12)
    reference = DriftReference(reference_source(rng))
    columns = [
        WindowColumn("amount", ("features", "amount"), "numeric", rng.normal(size=300).tolist()),
        WindowColumn("missing", ("features", "missing"), "numeric", [1.0, 2.0]),
        WindowColumn("label", ("label", ""), "categorical", [0, 1, 1]),
        WindowColumn("city", ("features", "city"), "categorical", [None] * 50),
        WindowColumn("prediction", ("prediction", ""), "numeric", ["high", "low"]),
        WindowColumn("empty", ("features", "amount"), "numeric", []),
    ]
    assessment = assess_window(reference, columns)
    assert [r.column for r in assessment.results] == ["amount"]
    assert set(assessment.skipped) == {"missing", "label", "city", "prediction", "empty"}
    assert "no values" in assessment.skipped["city"]
    assert "non-numeric" in assessment.skipped["prediction"]
    assert assessment.status == "ok"


def test_assess_window_raises_the_status_for_a_shifted_column() -> None:
    rng = np.random.default_rng(13)
    reference = DriftReference(reference_source(rng))
    columns = [
        WindowColumn("amount", ("features", "amount"), "numeric", rng.normal(1.5, 1.0, size=400).tolist()),
        WindowColumn("city", ("features", "city"), "categorical", zipf_categories(rng, 400)),
    ]
    assessment = assess_window(reference, columns, with_histograms=False)
    assert assessment.status == "drift"
    assert [r.column for r in assessment.raising] == ["amount"]
    assert [r.column for r in assessment.results] == ["amount", "city"]
    assert all(r.histogram == {} for r in assessment.results)


def test_reference_caches_one_null_per_size_bucket() -> None:
    reference = DriftReference(reference_source(np.random.default_rng(14)))
    path = ("features", "amount")
    first = reference.null(path, kind="numeric", column="amount", size=1030)
    assert reference.null(path, kind="numeric", column="amount", size=1100) is first
    assert first.size == 1024
    other = reference.null(path, kind="numeric", column="amount", size=1500)
    assert other is not first and other.size == 1448


def test_reference_is_reproducible_for_a_seed() -> None:
    source = reference_source(np.random.default_rng(15))
    path = ("features", "city")
    one = DriftReference(source, seed=3).null(path, kind="categorical", column="city", size=100)
    two = DriftReference(source, seed=3).null(path, kind="categorical", column="city", size=100)
    assert one == two


def test_reference_remembers_a_column_that_cannot_be_cleaned() -> None:
    reference = DriftReference({"features": {"amount": ["a", "b"]}})
    for _ in range(2):
        with pytest.raises(ValueError, match="non-numeric"):
            reference.sample(("features", "amount"), kind="numeric", column="amount")


def test_counter_order_does_not_change_the_statistic() -> None:
    # The categorical null depends on the reference's counts only, not on the order they were seen.
    one = column_sample(["a", "b", "b", "c"] * 30, kind="categorical", column="k")
    two = ColumnSample("categorical", counts=Counter({"c": 30, "b": 60, "a": 30}))
    window = ["a", "a", "b", "c"] * 10
    null = null_distribution(one, 40)
    assert calibrated_drift(one, window, column="k", null=null).statistic == pytest.approx(
        calibrated_drift(two, window, column="k", null=null).statistic
    )


def test_a_numeric_indicator_is_tested_as_categories() -> None:
    # A 0/1 flag's shift in standard deviations says little about a rare flag: like Evidently, the
    # indicator is compared as two categories, its histogram as bars.
    rng = np.random.default_rng(21)
    reference = DriftReference({"features": {"flag": (rng.random(2000) < 0.2).astype(float).tolist()}})
    window = (rng.random(1000) < 0.5).astype(float).tolist()

    assessment = assess_window(reference, [WindowColumn("flag", ("features", "flag"), "numeric", window)])

    (result,) = assessment.results
    assert result.method == "jensenshannon" and result.level == "drift"
    assert result.histogram["kind"] == "categorical" and set(result.histogram["categories"]) == {"0", "1"}
