"""The vectorised KSWIN against River's: the same alarms at the same inputs, from the same draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
from river import drift as river_drift
from scipy import stats

from adaptive.ml import kswin
from adaptive.ml.kswin import KSWIN, ks_distances, ks_p_value, sample_many

# --- streams -------------------------------------------------------------------------------------


def errors(rng: np.random.Generator, n: int, a: float, b: float) -> list[float]:
    """Per-event errors |y - p| ~ Beta(a, b), rounded like the monitoring service rounds them."""
    return np.round(rng.beta(a, b, size=n), 6).tolist()


def stationary(seed: int) -> list[float]:
    return errors(np.random.default_rng(seed), 2000, 2, 8)


def drifting(seed: int) -> list[float]:
    """1,000 low errors, 600 high ones, 400 low again."""
    rng = np.random.default_rng(seed)
    return errors(rng, 1000, 2, 8) + errors(rng, 600, 5, 5) + errors(rng, 400, 2, 8)


def misclassifications(seed: int) -> list[float]:
    """0/1 errors whose rate rises from 10% to 35%: nothing but ties."""
    rng = np.random.default_rng(seed)
    return ((rng.random(2000) < np.where(np.arange(2000) < 1200, 0.1, 0.35)) * 1.0).tolist()


def river_alarms(stream: list[float], **params: object) -> list[int]:
    detector = river_drift.KSWIN(**params)  # type: ignore[arg-type]
    alarms = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            alarms.append(i)
    return alarms


def in_batches(detector: KSWIN, stream: list[float], sizes: list[int]) -> list[int]:
    """Feed ``stream`` in batches of the given sizes (cycled); alarm positions in the whole stream."""
    alarms, start, i = [], 0, 0
    while start < len(stream):
        batch = stream[start : start + sizes[i % len(sizes)]]
        alarms += [start + position for position in detector.update_many(batch)]
        start += len(batch)
        i += 1
    return alarms


# --- the same alarms as River ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "seed", "params"),
    [
        # The monitoring service's setting (alpha 1e-4) on stationary and drifting error streams.
        (stationary, 0, {"alpha": 1e-4}),
        (stationary, 1, {"alpha": 1e-4}),
        (drifting, 2, {"alpha": 1e-4}),
        (drifting, 3, {"alpha": 1e-4}),
        # River's defaults, which alarm more often.
        (drifting, 4, {}),
        (stationary, 5, {}),
        # Another window, and ties only.
        (misclassifications, 6, {"alpha": 0.05, "window_size": 60, "stat_size": 20}),
        # A detector that alarms all the time: every reset and reseed must line up.
        (drifting, 7, {"alpha": 0.3, "window_size": 40, "stat_size": 10}),
    ],
)
def test_alarms_match_rivers_kswin_on_the_same_stream_and_seed(make: object, seed: int, params: dict) -> None:
    stream = make(seed)  # type: ignore[operator]
    expected = river_alarms(stream, seed=seed, **params)

    whole = KSWIN(seed=seed, **params).update_many(stream)
    batched = in_batches(KSWIN(seed=seed, **params), stream, [1000, 1, 37, 250])

    assert whole == batched == expected
    if make is drifting:
        assert any(1000 <= i < 1300 for i in expected), "the rise should be detected"


def test_past_the_shared_sequence_a_detector_draws_on_its_own_as_river_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Detectors share the samples drawn after a reset up to a cap; a long run without a detection
    # goes past it (here after 2,048 tests instead of 16,384) and goes on from its own generator.
    monkeypatch.setattr(kswin, "_SEQUENCE_SAMPLES", 2048)
    stream = stationary(12) + drifting(12)
    detector = KSWIN(alpha=1e-4, seed=12)
    alarms = in_batches(detector, stream, [700, 1300])

    assert alarms == river_alarms(stream, alpha=1e-4, seed=12)
    assert alarms and alarms[0] > 2048, "the first reset should come after the cap"


def test_one_input_at_a_time_behaves_as_rivers_update() -> None:
    stream = drifting(8)[:1300]
    river = river_drift.KSWIN(alpha=0.005, seed=8)
    ours = KSWIN(alpha=0.005, seed=8)
    for x in stream:
        river.update(x)
        ours.update(x)
        assert ours.drift_detected == river.drift_detected
        assert ours.p_value == pytest.approx(river.p_value, rel=1e-12, abs=0)
        assert ours.n == river.n
    assert ours.window == list(river.window)


def test_a_window_handed_over_at_construction_is_tested_like_rivers() -> None:
    stream = drifting(9)
    river = river_alarms(stream[100:], seed=2, window=stream[:100])
    assert KSWIN(seed=2, window=stream[:100]).update_many(stream[100:]) == river


# --- the pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k"),
    [(70, 30), (10, 3), (1, 1), (2, 2), (277, 30), (400, 20), (200, 100)],
)
def test_sample_many_draws_what_random_sample_draws_and_leaves_the_generator_alike(n: int, k: int) -> None:
    # (277, 30) is the largest pool random.sample uses for k = 30; (400, 20) takes its set path.
    for count in (1, 7, 500):
        ours, theirs = random.Random(count), random.Random(count)

        drawn = sample_many(ours, n, k, count)

        assert drawn.tolist() == [theirs.sample(range(n), k) for _ in range(count)]
        assert ours.getstate() == theirs.getstate()


def test_two_generators_in_the_same_state_get_the_same_samples_and_both_move_on() -> None:
    # The raw and compensated streams' detectors share a seed: the second draw reuses the first.
    first, second, reference = random.Random(4), random.Random(4), random.Random(4)
    expected = [reference.sample(range(70), 30) for _ in range(300)]

    drawn = [sample_many(first, 70, 30, 300), sample_many(second, 70, 30, 300)]

    assert drawn[0].tolist() == drawn[1].tolist() == expected
    assert first.getstate() == second.getstate() == reference.getstate()
    assert sample_many(second, 70, 30, 5).tolist() == [reference.sample(range(70), 30) for _ in range(5)]


def test_ks_distance_and_p_value_are_scipys_for_any_samples() -> None:
    rng = np.random.default_rng(0)
    # Few distinct values, so that ties between and within the samples are common.
    first = rng.integers(0, 6, size=(300, 30)).astype(np.float64)
    second = (rng.integers(0, 6, size=(300, 30)) + (np.arange(300) % 3)[:, None]).astype(np.float64)

    distances = ks_distances(first, second)

    for i in range(300):
        result = stats.ks_2samp(first[i], second[i], method="auto")
        assert distances[i] == round(float(result.statistic) * 30)
        assert ks_p_value(30, int(distances[i])) == float(result.pvalue)
    assert len(set(distances.tolist())) > 5


# --- saving and restoring ---------------------------------------------------------------------------


def test_a_restored_sampler_and_window_continue_exactly() -> None:
    stream = drifting(10)
    original = KSWIN(alpha=0.005, seed=3)
    alarms = original.update_many(stream)
    assert len(alarms) >= 2

    for save_at in (50, 700, alarms[0] + 1, alarms[0] + 150):
        before = KSWIN(alpha=0.005, seed=3)
        before.update_many(stream[:save_at])
        restored = KSWIN(alpha=0.005, seed=3)
        restored.set_sampler_state(before.sampler_state())
        restored.restore(before.window, drift_detected=before.drift_detected, n=before.n)

        expected = [i - save_at for i in alarms if i >= save_at]
        assert restored.update_many(stream[save_at:]) == before.update_many(stream[save_at:]) == expected


def test_a_restored_detector_follows_the_shared_sequence_again_where_the_state_is_the_same() -> None:
    stream = stationary(13)
    original = KSWIN(alpha=1e-4, seed=13)
    original.update_many(stream[:700])
    assert original.sampler_position == 700 - 99  # one test per input once the window is full
    state, window = original.sampler_state(), original.window

    restored, misplaced = KSWIN(alpha=1e-4, seed=13), KSWIN(alpha=1e-4, seed=13)
    restored.set_sampler_state(state, 601)
    misplaced.set_sampler_state(state, 602)  # a position whose state is another: drawn on its own
    for detector in (restored, misplaced):
        detector.restore(window, drift_detected=False, n=700)

    assert (restored.sampler_position, misplaced.sampler_position) == (601, None)
    expected = original.update_many(stream[700:])
    assert restored.update_many(stream[700:]) == misplaced.update_many(stream[700:]) == expected
    assert restored.sampler_state() == misplaced.sampler_state() == original.sampler_state()


def test_sampler_state_is_compact_json_and_checked() -> None:
    detector = KSWIN(seed=1)
    detector.update_many(stationary(11)[:300])
    state = detector.sampler_state()

    assert isinstance(state, str) and len(state) < 3400
    for bad in ("not base64!", "AAAA", state[:-8] + "////////"):
        with pytest.raises(ValueError, match="sampler"):
            KSWIN(seed=1).set_sampler_state(bad)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": 1.5}, "Alpha"),
        ({"stat_size": 0}, "stat_size"),
        ({"window_size": 50, "stat_size": 30}, "twice"),
        ({"window_size": 30_000, "stat_size": 10_001}, "stat_size"),
    ],
)
def test_settings_river_would_fail_on_are_rejected_up_front(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KSWIN(**params)


def test_non_finite_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        KSWIN().update_many([0.1, float("nan")])
