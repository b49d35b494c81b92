"""Drift: batch column tests with their bands, and stream detectors with JSON save/restore."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from adaptive.ml.drift import (
    DETECTOR_KINDS,
    DetectorBank,
    DriftResult,
    StreamDetector,
    choose_method,
    column_drift,
    dataset_drift,
    drift_level,
    jensen_shannon_distance,
)

SHIFT_AT = 2000

# --- streams -------------------------------------------------------------------------------------


def low_errors(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Errors of a model that fits: |y - p| ~ Beta(2, 8) (mean 0.2), or a 10% misclassification rate."""
    if kind == "ddm":
        return (rng.random(n) < 0.1).astype(np.float64)
    return rng.beta(2, 8, size=n)


def high_errors(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Errors after a concept change: Beta(5, 5) (mean 0.5), or a 30% misclassification rate."""
    if kind == "ddm":
        return (rng.random(n) < 0.3).astype(np.float64)
    return rng.beta(5, 5, size=n)


def shifted_stream(kind: str, seed: int = 0) -> list[float]:
    """SHIFT_AT low errors, then 1000 high ones."""
    rng = np.random.default_rng(seed)
    return np.concatenate([low_errors(rng, SHIFT_AT, kind), high_errors(rng, 1000, kind)]).tolist()


def two_shift_stream(kind: str, seed: int = 0) -> list[float]:
    """Low, high, low, high: every kind detects something after each of the save points below."""
    rng = np.random.default_rng(seed)
    parts = [low_errors(rng, 1000, kind), high_errors(rng, 700, kind), low_errors(rng, 700, kind)]
    parts.append(high_errors(rng, 700, kind))
    return np.concatenate(parts).tolist()


def json_round_trip(state: dict) -> dict:
    return json.loads(json.dumps(state, allow_nan=False))


# --- method choice and bands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "n_reference", "expected"),
    [
        ("numeric", 10, "ks"),
        ("numeric", 1000, "ks"),
        ("numeric", 1001, "wasserstein"),
        ("categorical", 1000, "chisquare"),
        ("categorical", 1001, "jensenshannon"),
    ],
)
def test_choose_method_switches_from_test_to_distance_above_1000_reference_rows(
    kind: str, n_reference: int, expected: str
) -> None:
    assert choose_method(kind, n_reference) == expected


def test_choose_method_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        choose_method("text", 10)


@pytest.mark.parametrize(
    ("p_value", "level"),
    [(0.0, "drift"), (0.0499, "drift"), (0.05, "warn"), (0.0999, "warn"), (0.1, "ok"), (1.0, "ok")],
)
def test_p_value_bands_warn_below_twice_the_threshold(p_value: float, level: str) -> None:
    assert drift_level(p_value, 0.05, is_p_value=True) == level


@pytest.mark.parametrize(
    ("value", "level"),
    [(0.0, "ok"), (0.0499, "ok"), (0.05, "warn"), (0.0999, "warn"), (0.1, "drift"), (3.0, "drift")],
)
def test_distance_bands_warn_from_half_the_threshold(value: float, level: str) -> None:
    assert drift_level(value, 0.1, is_p_value=False) == level


def test_result_band_follows_its_threshold() -> None:
    # 50/50 against 60/40: JS distance (base 2) is 0.0854, between half the threshold and the threshold.
    result = column_drift(["a"] * 1000 + ["b"] * 1000, ["a"] * 600 + ["b"] * 400, kind="categorical", column="c")
    assert result.method == "jensenshannon"
    assert result.statistic == pytest.approx(distance.jensenshannon([0.5, 0.5], [0.6, 0.4], base=2))
    assert result.level == "warn"
    assert not result.drifted
    strict = column_drift(
        ["a"] * 1000 + ["b"] * 1000,
        ["a"] * 600 + ["b"] * 400,
        kind="categorical",
        column="c",
        distance_threshold=0.08,
    )
    assert strict.level == "drift"
    assert strict.threshold == 0.08


# --- batch tests flag a shifted column, not an identical one --------------------------------------


@pytest.mark.parametrize(("n", "method"), [(500, "ks"), (3000, "wasserstein")])
def test_numeric_shift_is_flagged_and_same_distribution_is_not(n: int, method: str) -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(10.0, 2.0, size=n)

    identical = column_drift(reference, reference, kind="numeric", column="x")
    same = column_drift(reference, rng.normal(10.0, 2.0, size=n), kind="numeric", column="x")
    shifted = column_drift(reference, rng.normal(11.0, 2.0, size=n), kind="numeric", column="x")

    assert identical.method == same.method == shifted.method == method
    assert identical.statistic == 0.0
    assert identical.level == "ok"
    assert same.level == "ok"
    assert shifted.level == "drift"
    assert (shifted.p_value is None) == (method == "wasserstein")


@pytest.mark.parametrize(("n", "method"), [(500, "chisquare"), (3000, "jensenshannon")])
def test_categorical_shift_is_flagged_and_same_distribution_is_not(n: int, method: str) -> None:
    rng = np.random.default_rng(2)
    carriers = np.array(["AA", "DL", "UA", "WN"])
    usual = [0.4, 0.3, 0.2, 0.1]
    reference = rng.choice(carriers, size=n, p=usual)

    identical = column_drift(reference, reference, kind="categorical", column="carrier")
    same = column_drift(reference, rng.choice(carriers, size=n, p=usual), kind="categorical", column="carrier")
    shifted = column_drift(
        reference, rng.choice(carriers, size=n, p=[0.1, 0.2, 0.3, 0.4]), kind="categorical", column="carrier"
    )

    assert identical.method == same.method == shifted.method == method
    assert identical.statistic == pytest.approx(0.0, abs=1e-12)
    assert identical.level == "ok"
    assert same.level == "ok"
    assert shifted.level == "drift"


def test_category_unseen_in_reference_counts_as_drift_when_common_and_not_when_rare() -> None:
    reference = ["a"] * 300 + ["b"] * 200
    common_new = ["a"] * 200 + ["b"] * 150 + ["c"] * 150
    one_new = ["a"] * 300 + ["b"] * 199 + ["c"]

    common = column_drift(reference, common_new, kind="categorical", column="c")
    rare = column_drift(reference, one_new, kind="categorical", column="c")

    assert common.method == rare.method == "chisquare"
    assert common.level == "drift"
    assert rare.level == "ok"
    assert rare.p_value is not None
    assert math.isfinite(rare.statistic)


def test_chisquare_false_alarm_rate_matches_its_threshold_on_equal_windows() -> None:
    # Both windows are samples: a goodness-of-fit test that takes the reference shares as exact
    # would flag about 30% of these; the two-sample test should stay near 5%.
    rng = np.random.default_rng(3)
    categories = np.array(["a", "b", "c", "d", "e"])
    shares = [0.4, 0.3, 0.15, 0.1, 0.05]
    flagged = sum(
        column_drift(
            rng.choice(categories, size=500, p=shares),
            rng.choice(categories, size=500, p=shares),
            kind="categorical",
            column="c",
        ).drifted
        for _ in range(200)
    )
    assert flagged <= 20  # 5% of 200 is 10; 20 is far beyond binomial noise


def test_ks_and_chisquare_give_scipys_public_results() -> None:
    # The module skips SciPy's per-call decorator (see adaptive.ml.drift.statistics._chi2_homogeneity): same numbers.
    rng = np.random.default_rng(4)
    for _ in range(50):
        ref = np.round(rng.normal(size=int(rng.integers(5, 1000))), 1)
        cur = np.round(rng.normal(0.1, 1, size=int(rng.integers(5, 1000))), 1)
        ks = stats.ks_2samp(ref, cur)
        result = column_drift(ref, cur, kind="numeric", column="x", method="ks")
        assert (result.statistic, result.p_value) == (float(ks.statistic), float(ks.pvalue))

        ref_cat = rng.choice(list("abcdefg"), size=int(rng.integers(20, 1000))).tolist()
        cur_cat = rng.choice(list("abcdefgh"), size=int(rng.integers(20, 1000))).tolist()
        categories = sorted(set(ref_cat) | set(cur_cat))
        table = [[row.count(c) for c in categories] for row in (ref_cat, cur_cat)]
        chi2 = stats.chi2_contingency(table, correction=False)
        result = column_drift(ref_cat, cur_cat, kind="categorical", column="c", method="chisquare")
        assert result.statistic == pytest.approx(float(chi2.statistic), rel=1e-12)
        assert result.p_value == pytest.approx(float(chi2.pvalue), rel=1e-12, abs=1e-300)


def test_wasserstein_on_constant_reference_is_finite() -> None:
    reference = [3.0] * 2000

    same = column_drift(reference, [3.0] * 100, kind="numeric", column="x")
    moved = column_drift(reference, [3.01] * 100, kind="numeric", column="x")

    assert same.method == moved.method == "wasserstein"
    assert same.statistic == 0.0
    # 0.01 away over the 0.001 std floor.
    assert moved.statistic == pytest.approx(10.0)
    assert moved.level == "drift"


# --- PSI and Jensen-Shannon on hand-checked cases -------------------------------------------------


def test_psi_on_categories_matches_hand_computation() -> None:
    result = column_drift(
        ["a"] * 50 + ["b"] * 50, ["a"] * 75 + ["b"] * 25, kind="categorical", column="c", method="psi"
    )
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5)
    assert result.statistic == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2.0))
    assert result.p_value is None
    assert result.level == "drift"


def test_psi_replaces_an_empty_bin_by_epsilon() -> None:
    result = column_drift(["a"] * 50 + ["b"] * 50, ["a"] * 100, kind="categorical", column="c", method="psi")
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert result.statistic == pytest.approx(expected)


def test_numeric_psi_uses_30_bins_of_equal_reference_mass() -> None:
    reference = np.arange(3000, dtype=np.float64)  # 100 values in each of the 30 bins
    current = np.arange(1000, dtype=np.float64)  # the lowest 10 bins only, 100 values each

    result = column_drift(reference, current, kind="numeric", column="x", method="psi")

    filled = 10 * (0.1 - 1 / 30) * math.log(0.1 * 30)
    empty = 20 * (1e-4 - 1 / 30) * math.log(1e-4 * 30)
    assert result.statistic == pytest.approx(filled + empty)
    assert column_drift(reference, reference, kind="numeric", column="x", method="psi").statistic == 0.0


def test_jensen_shannon_distance_is_base_2_square_root_of_divergence() -> None:
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.1, 0.3, 0.6])
    assert jensen_shannon_distance(p, q) == pytest.approx(distance.jensenshannon(p, q, base=2))
    assert jensen_shannon_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert jensen_shannon_distance(p, p) == 0.0


# --- inputs ---------------------------------------------------------------------------------------


def test_missing_and_infinite_values_are_dropped_before_testing() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=1200)
    current = rng.normal(size=300)
    dirty_reference = [*reference[:900].tolist(), *([None, float("nan"), np.inf, -np.inf] * 75)]
    dirty_current = np.concatenate([current, [np.nan] * 50])

    result = column_drift(dirty_reference, dirty_current, kind="numeric", column="x")

    # 900 reference rows remain, so KS is chosen, as on the clean values.
    assert result == column_drift(reference[:900], current, kind="numeric", column="x")
    assert result.method == "ks"


def test_missing_categories_are_dropped_and_keys_follow_the_encoder() -> None:
    reference = ["AA", 7, True, None, float("nan"), 3.0, np.int64(5)]
    current = ["AA", "7", "true", "3", "5"]

    result = column_drift(reference, current, kind="categorical", column="c")

    assert result.statistic == pytest.approx(0.0)
    assert result.level == "ok"


def test_numpy_string_arrays_are_categories() -> None:
    reference = np.array(["x", "y"] * 100)
    result = column_drift(reference, np.array(["x"] * 100), kind="categorical", column="c")
    assert result.level == "drift"


@pytest.mark.parametrize("current", [[], [None, float("nan")], np.array([np.nan, np.inf])])
def test_empty_current_window_is_an_error(current: list) -> None:
    with pytest.raises(ValueError, match="current window has no values"):
        column_drift([1.0, 2.0, 3.0], current, kind="numeric", column="x")


def test_empty_categorical_current_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="'c': the current window has no values"):
        column_drift(["a"], [None], kind="categorical", column="c")


@pytest.mark.parametrize(
    ("kind", "method", "reference", "current"),
    [
        ("categorical", "ks", ["a"], ["a"]),
        ("numeric", "chisquare", [1.0], [1.0]),
        ("numeric", "median", [1.0], [1.0]),
        ("numeric", None, ["a", "b"], [1.0]),
        ("categorical", None, [1.5], ["a"]),
        ("numeric", None, [[1.0, 2.0], [3.0, 4.0]], [1.0]),
    ],
)
def test_bad_methods_and_values_are_errors(kind: str, method: str | None, reference: list, current: list) -> None:
    with pytest.raises(ValueError, match="'col'"):
        column_drift(reference, current, kind=kind, column="col", method=method)


def test_dataset_drift_tests_each_named_column_in_order() -> None:
    rng = np.random.default_rng(5)
    reference = {
        "delay": rng.normal(size=400),
        "carrier": rng.choice(["AA", "UA"], size=400),
        "ignored": np.zeros(400),
    }
    current = {
        "delay": rng.normal(3.0, 1.0, size=400),
        "carrier": rng.choice(["AA", "UA"], size=400),
        "ignored": np.ones(400),
    }

    results = dataset_drift(
        reference, current, {"carrier": "categorical", "delay": "numeric"}, methods={"delay": "psi"}
    )

    assert [r.column for r in results] == ["carrier", "delay"]
    assert [r.method for r in results] == ["chisquare", "psi"]
    assert [r.level for r in results] == ["ok", "drift"]
    assert all(isinstance(r, DriftResult) for r in results)


def test_dataset_drift_rejects_a_missing_column() -> None:
    with pytest.raises(ValueError, match="'delay' is missing from the current window"):
        dataset_drift({"delay": [1.0]}, {}, {"delay": "numeric"})


# --- stream detectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_detector_flags_an_abrupt_rise_in_errors(kind: str) -> None:
    detector = StreamDetector(kind)

    detections = detector.update_many(shifted_stream(kind))

    after_shift = [i for i in detections if i >= SHIFT_AT]
    assert after_shift, f"{kind} missed the shift"
    assert after_shift[0] < SHIFT_AT + 300  # median delays measured over 30 seeds: 20 to 176 events
    assert detector.n_seen == SHIFT_AT + 1000
    assert detector.n_detections == len(detections)
    assert detector.last_detection_at == detections[-1]


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_detector_rarely_fires_on_a_stationary_stream(kind: str) -> None:
    # 10,000 stationary errors over two fixed seeds. Measured over 10 to 30 seeds of 5,000 events at
    # these defaults: ADWIN and Page-Hinkley raised none, KSWIN 0.2 and DDM 0.33 on average, 2 at most.
    false_alarms = 0
    for seed in (10, 11):
        detector = StreamDetector(kind)
        false_alarms += len(detector.update_many(low_errors(np.random.default_rng(seed), 5000, kind).tolist()))
    assert false_alarms <= 2


def test_update_returns_the_detection_and_counts_in_the_whole_stream() -> None:
    stream = shifted_stream("adwin")
    detector = StreamDetector("adwin")
    flags = [detector.update(x) for x in stream]
    batch = StreamDetector("adwin")

    first_half = batch.update_many(stream[:2500])
    second_half = batch.update_many(stream[2500:])

    assert [i for i, flag in enumerate(flags) if flag] == first_half + [2500 + i for i in second_half]
    assert detector.last_detection_at == batch.last_detection_at


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_restored_detector_matches_the_original_on_future_inputs(kind: str) -> None:
    stream = two_shift_stream(kind)
    original = StreamDetector(kind, seed=7)
    all_detections = original.update_many(stream)
    assert len(all_detections) >= 2, f"{kind}: the stream should give detections to compare"
    first = all_detections[0]

    # Save at the start, mid-stream, and just after the first detection (River resets on the next input).
    for save_at in (0, 1200, first + 1):
        before = StreamDetector(kind, seed=7)
        before.update_many(stream[:save_at])
        restored = StreamDetector.from_state(json_round_trip(before.state_dict()))
        assert restored.restore_is_exact
        assert restored.drift_detected == before.drift_detected

        future_original = before.update_many(stream[save_at:])
        future_restored = restored.update_many(stream[save_at:])

        expected = [i - save_at for i in all_detections if i >= save_at]
        assert future_restored == future_original == expected, f"{kind} saved at {save_at}"
        assert restored.state_dict() == before.state_dict() == original.state_dict()


def test_restored_ddm_keeps_its_warning_zone() -> None:
    stream = two_shift_stream("ddm")
    original = StreamDetector("ddm")
    warned_at = next(i for i, x in enumerate(stream) if original.update(x) or original.warning_detected)
    assert original.warning_detected
    restored = StreamDetector.from_state(json_round_trip(original.state_dict()))
    assert restored.warning_detected
    assert restored.update_many(stream[warned_at + 1 :]) == original.update_many(stream[warned_at + 1 :])


def test_adwin_state_keeps_at_most_history_inputs_and_restores_approximately_beyond() -> None:
    kind, history = "adwin", 300
    stream = shifted_stream(kind, seed=1)
    detector = StreamDetector(kind, history=history)
    detector.update_many(stream[:SHIFT_AT])
    state = json_round_trip(detector.state_dict())

    assert len(state["stream"]) <= history
    assert len(json.dumps(state)) < 30 * history + 500
    assert not detector.restore_is_exact  # 2000 inputs, or more than `history` since a false alarm
    assert len(state["stream"]) == history
    restored = StreamDetector.from_state(state)

    # Whatever it forgot, the restored detector still sees the rise, and keeps the saved counters.
    assert restored.n_seen == SHIFT_AT
    assert restored.n_detections == detector.n_detections
    detections = restored.update_many(stream[SHIFT_AT:])
    assert detections
    assert detections[0] < 300


@pytest.mark.parametrize("kind", ["page_hinkley", "ddm"])
def test_page_hinkley_and_ddm_keep_their_numbers_and_restore_exactly_beyond_history(kind: str) -> None:
    # Their whole state is a handful of numbers, saved as they are: no replay, nothing forgotten.
    stream = two_shift_stream(kind, seed=5)
    uninterrupted = StreamDetector(kind).update_many(stream)
    assert len(uninterrupted) >= 2, f"{kind}: the stream should give detections to compare"
    for save_at in (SHIFT_AT - 1000, uninterrupted[0] + 1, uninterrupted[0] + 400):
        detector = StreamDetector(kind, history=300)
        detector.update_many(stream[:save_at])
        state = json_round_trip(detector.state_dict())
        assert len(state["stream"]) <= 300 and len(json.dumps(state)) < 30 * 300 + 800
        assert detector.restore_is_exact

        restored = StreamDetector.from_state(state)

        assert restored.state_dict() == detector.state_dict()
        assert restored.warning_detected == detector.warning_detected
        expected = [i - save_at for i in uninterrupted if i >= save_at]
        assert restored.update_many(stream[save_at:]) == detector.update_many(stream[save_at:]) == expected


def test_kswin_keeps_history_inputs_and_its_sampler_and_restores_exactly_beyond() -> None:
    # Its window (100 inputs) is all the data KSWIN holds; with the random generator's state kept
    # too, the restored detector draws the same subsamples as the original, however long the run.
    stream = two_shift_stream("kswin", seed=3)
    detector = StreamDetector("kswin", history=150, seed=4)
    detector.update_many(stream[:1500])
    assert detector.since_reset > 150
    state = json_round_trip(detector.state_dict())

    assert len(state["stream"]) == 150
    assert len(json.dumps(state)) < 30 * 150 + 4000  # the sampler: 625 words in base64
    assert detector.restore_is_exact
    restored = StreamDetector.from_state(state)

    assert restored.state_dict() == detector.state_dict()
    future = detector.update_many(stream[1500:])
    assert future, "the stream should give detections to compare"
    assert restored.update_many(stream[1500:]) == future
    assert restored.state_dict() == detector.state_dict()


def test_kswin_state_without_a_sampler_restores_its_window_and_reseeds() -> None:
    # What River's KSWIN saved (before the sampler was kept): the window comes back, the subsamples
    # restart from the seed; a state within history is replayed exactly.
    stream = shifted_stream("kswin", seed=2)
    detector = StreamDetector("kswin", history=100, seed=1)
    detector.update_many(stream[:1000])
    legacy = json_round_trip(detector.state_dict())
    del legacy["sampler"]

    restored = StreamDetector.from_state(legacy)

    assert restored.state_dict()["stream"] == legacy["stream"]
    reseeded = StreamDetector("kswin", seed=1)
    reseeded._detector = reseeded._build(window=legacy["stream"])
    assert restored.update_many(stream[1000:]) == reseeded.update_many(stream[1000:])

    short = StreamDetector("kswin", seed=1)
    short.update_many(stream[:60])
    replayed = json_round_trip(short.state_dict())
    del replayed["sampler"]
    assert StreamDetector.from_state(replayed).state_dict() == short.state_dict()


def test_long_stationary_run_makes_restore_approximate() -> None:
    stream = shifted_stream("adwin", seed=2)
    detector = StreamDetector("adwin", history=500)
    detector.update_many(stream[:SHIFT_AT])
    assert detector.n_detections == 0
    assert not detector.restore_is_exact

    restored = StreamDetector.from_state(json_round_trip(detector.state_dict()))
    # Saving the restored detector gives the same state back, so restores do not drift apart.
    assert restored.state_dict() == detector.state_dict()

    assert restored.since_reset == SHIFT_AT
    assert not restored.restore_is_exact
    # ADWIN checks for change every 32 inputs since its reset; the restored one keeps that phase.
    original_first = detector.update_many(stream[SHIFT_AT:])[0]
    restored_first = restored.update_many(stream[SHIFT_AT:])[0]
    assert (SHIFT_AT + original_first + 1) % 32 == 0
    assert (SHIFT_AT + restored_first + 1) % 32 == 0


def test_detection_raised_by_a_truncated_replay_resets_the_restored_detector_without_counting() -> None:
    # Against its long high-error past, the original sees the rise from 0.2 to 0.35 as no rise at all;
    # the last 400 inputs alone (100 x 0.2, then 300 x 0.35) do show one.
    # (A state without Page-Hinkley's numbers: one saved before they were kept, replayed.)
    stream = [0.5] * 1500 + [0.2] * 200 + [0.35] * 300
    detector = StreamDetector("page_hinkley", {"threshold": 10.0}, history=400)
    assert detector.update_many(stream) == []
    legacy = json_round_trip(detector.state_dict())
    del legacy["native"]

    restored = StreamDetector.from_state(legacy)

    assert restored.n_detections == 0
    assert restored.n_seen == len(stream)
    assert restored.since_reset < 300  # only the inputs after the replayed detection remain
    assert restored.restore_is_exact
    again = StreamDetector.from_state(json_round_trip(restored.state_dict()))
    assert again.state_dict() == restored.state_dict()
    assert again.update_many([0.35] * 50) == restored.update_many([0.35] * 50)


# --- detector inputs and state validation ---------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.3", None])
def test_invalid_error_is_rejected_and_leaves_the_detector_unchanged(bad: object) -> None:
    detector = StreamDetector("page_hinkley")
    detector.update_many([0.1, 0.2])
    before = detector.state_dict()

    with pytest.raises(ValueError, match="page_hinkley"):
        detector.update_many([0.3, bad])  # type: ignore[list-item]

    assert detector.state_dict() == before


def test_ddm_takes_misclassifications_only() -> None:
    detector = StreamDetector("ddm")
    assert detector.update_many([True, False, 1, 0.0, np.bool_(True)]) == []  # type: ignore[list-item]
    with pytest.raises(ValueError, match="0/1"):
        detector.update(0.4)


@pytest.mark.parametrize(
    ("kind", "params", "history", "match"),
    [
        ("cusum", None, 10, "kind"),
        ("adwin", {"deltaa": 0.01}, 10, "unknown parameters"),
        ("kswin", {"seed": 3}, 200, "unknown parameters"),
        ("adwin", {"delta": [0.01]}, 10, "number or a string"),
        ("adwin", None, 0, "history"),
        ("kswin", {"window_size": 200, "stat_size": 30}, 150, "window_size"),
    ],
)
def test_bad_detector_settings_are_errors(kind: str, params: dict | None, history: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StreamDetector(kind, params, history=history)


def test_params_override_defaults_and_survive_the_round_trip() -> None:
    detector = StreamDetector("kswin", {"window_size": 60, "stat_size": 20}, history=100, seed=3)
    restored = StreamDetector.from_state(json_round_trip(detector.state_dict()))
    assert restored.params == {"alpha": 0.0001, "window_size": 60, "stat_size": 20}
    assert (restored.seed, restored.history) == (3, 100)


# DDM's numbers before its first input.
_DDM_NATIVE = {"_p_min": None, "_s_min": None, "_ps_min": None, "_warning_detected": False, "mean_n": 0.0, "mean": 0.0}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s.update(format=99),
        lambda s: s.pop("since_reset"),
        lambda s: s.update(stream=[*s["stream"], 0.5]),
        lambda s: s.update(n_seen=-1),
        lambda s: s.update(last_detection_at=None),
        lambda s: s.update(drift_detected=True),
        lambda s: s.update(sampler="not base64!"),
        lambda s: s.update(sampler="AAAA"),
        lambda s: s.update(sampler=[0] * 625),
        lambda s: s.update(sampler_position=-1),
        lambda s: s.update(kind="page_hinkley", params={}, native={"mean": 0.3}),
        lambda s: s.update(
            kind="ddm", params={}, stream=[], since_reset=0, native={**_DDM_NATIVE, "_ps_min": float("nan")}
        ),
    ],
)
def test_malformed_state_is_rejected(tamper: Callable[[dict[str, Any]], object]) -> None:
    detector = StreamDetector("kswin")
    assert detector.update_many(shifted_stream("kswin"))  # a detection, and inputs after it
    state = json_round_trip(detector.state_dict())
    tamper(state)
    with pytest.raises(ValueError, match="state"):
        StreamDetector.from_state(state)


# --- detector bank --------------------------------------------------------------------------------


def test_bank_signals_match_its_detectors_run_alone() -> None:
    stream = shifted_stream("ddm")  # 0/1 errors: every kind takes them
    bank = DetectorBank()

    signals = bank.update_many(stream)

    assert set(signals) == set(DETECTOR_KINDS)
    for kind in DETECTOR_KINDS:
        alone = StreamDetector(kind).update_many(stream)
        assert signals[kind] == {"detections": alone, "drift": bool(alone)}
    assert signals["ddm"]["drift"]


def test_bank_rejects_real_valued_errors_when_it_holds_ddm_and_changes_nothing() -> None:
    bank = DetectorBank()
    with pytest.raises(ValueError, match="ddm"):
        bank.update_many([0.0, 1.0, 0.25])
    assert all(detector.n_seen == 0 for detector in bank.detectors.values())


def test_bank_restored_from_json_gives_the_same_future_signals() -> None:
    stream = two_shift_stream("adwin")
    kinds = ("adwin", "page_hinkley", "kswin")
    bank = DetectorBank(kinds, {"page_hinkley": {"threshold": 25.0}}, seed=5)
    bank.update_many(stream[:1300])

    state = json_round_trip(bank.state_dict())
    restored = DetectorBank.from_state(state)

    # The shared stream is stored once, as long as the longest since-reset run.
    longest = max(d.since_reset for d in bank.detectors.values())
    assert len(state["stream"]) == longest
    assert "stream" not in state["detectors"]["adwin"]
    assert restored.detectors["page_hinkley"].params["threshold"] == 25.0
    future = restored.update_many(stream[1300:])
    assert future == bank.update_many(stream[1300:])
    assert any(signal["drift"] for signal in future.values())
    assert restored.state_dict() == bank.state_dict()
