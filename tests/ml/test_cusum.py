"""The retrain trigger: a CUSUM on window mean losses with a chosen in-control run length."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adaptive.ml.cusum import (
    BURN_IN_WINDOWS,
    DEFAULT_K,
    MIN_WINDOW_EVENTS,
    LossCusum,
    cusum_limit,
    siegmund_arl,
)

MU, SIGMA, N = 1.0, 0.5, 100
STANDARD_ERROR = SIGMA / math.sqrt(N)


def window(rng: np.random.Generator, shift: float = 0.0, n: int = N) -> np.ndarray:
    """One window of per-event losses, its mean moved by ``shift`` standard errors."""
    return rng.normal(MU + shift * STANDARD_ERROR, SIGMA, size=n)


def burnt_in(rng: np.random.Generator) -> LossCusum:
    cusum = LossCusum()
    for _ in range(BURN_IN_WINDOWS):
        cusum.update(window(rng))
    return cusum


def simulated_run_lengths(h: float, k: float, shift: float, runs: int, seed: int) -> np.ndarray:
    """First step at which S = max(0, S + z - k) exceeds h, for z ~ N(shift, 1), over many runs at once."""
    rng = np.random.default_rng(seed)
    statistic = np.zeros(runs)
    lengths = np.zeros(runs, dtype=np.int64)
    running = np.ones(runs, dtype=bool)
    step = 0
    while running.any():
        step += 1
        statistic = np.maximum(0.0, statistic + rng.normal(shift, 1.0, size=runs) - k)
        alarmed = running & (statistic > h)
        lengths[alarmed] = step
        running &= ~alarmed
    return lengths


def test_cusum_limit_gives_the_asked_in_control_run_length_by_simulation() -> None:
    h = cusum_limit(500, 0.5)
    assert siegmund_arl(h, 0.5) == pytest.approx(500.0)
    lengths = simulated_run_lengths(h, 0.5, 0.0, runs=4000, seed=0)
    assert lengths.mean() == pytest.approx(500.0, rel=0.15)


def test_cusum_limit_grows_with_the_run_length_and_rejects_bad_arguments() -> None:
    assert cusum_limit(100, 0.5) < cusum_limit(500, 0.5) < cusum_limit(5000, 0.5)
    assert siegmund_arl(cusum_limit(200, 0.0), 0.0) == pytest.approx(200.0)
    for arl, k in [(1.0, 0.5), (0.5, 0.5), (500.0, -0.1)]:
        with pytest.raises(ValueError, match="arl"):
            cusum_limit(arl, k)


def test_a_rise_of_two_standard_errors_is_detected_within_a_few_windows() -> None:
    # With a known baseline a rise of one standard error takes about 10 windows (simulated here). The
    # limit that allows for a baseline estimated from the burn-in is higher, so the CUSUM trades
    # delay on small rises for its false-alarm rate: two standard errors take about 6 windows.
    known = simulated_run_lengths(cusum_limit(500, 0.5), 0.5, 1.0, runs=4000, seed=1)
    assert known.mean() < 12.0
    delays = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        cusum = burnt_in(rng)
        for delay in range(1, 200):
            if cusum.update(window(rng, shift=2.0)).alarm:
                delays.append(delay)
                break
    assert len(delays) == 40
    assert float(np.mean(delays)) < 12.0


def test_a_fall_in_loss_never_alarms() -> None:
    rng = np.random.default_rng(1)
    cusum = burnt_in(rng)
    steps = [cusum.update(window(rng, shift=-2.0)) for _ in range(1000)]
    assert not any(step.alarm for step in steps)
    assert cusum.alarms == 0
    assert max(step.statistic for step in steps) < cusum.limit


def test_burn_in_windows_have_no_z_and_set_the_baseline_at_the_end() -> None:
    rng = np.random.default_rng(2)
    cusum = LossCusum()
    for i in range(BURN_IN_WINDOWS):
        step = cusum.update(window(rng))
        assert step.z is None and not step.alarm and step.statistic == 0.0
        assert step.baseline is (None if i < BURN_IN_WINDOWS - 1 else cusum.mu)
    assert cusum.mu == pytest.approx(MU, abs=3 * STANDARD_ERROR)
    assert cusum.sigma == pytest.approx(SIGMA, rel=0.1)
    step = cusum.update(window(rng, shift=3.0))
    assert step.z is not None and step.z > 1.0
    assert step.statistic == pytest.approx(max(0.0, step.z - DEFAULT_K))


def test_small_windows_are_skipped_without_touching_the_state() -> None:
    rng = np.random.default_rng(3)
    cusum = burnt_in(rng)
    cusum.update(window(rng, shift=3.0))
    before = cusum.state_dict()
    # MIN_WINDOW_EVENTS - 1 finite losses (NaN and inf do not count), however high.
    small = np.r_[np.full(MIN_WINDOW_EVENTS - 1, 100.0), [np.nan, np.inf, -np.inf]]
    step = cusum.update(small)
    assert step.z is None and not step.alarm
    assert step.mean_loss == pytest.approx(100.0)
    assert cusum.state_dict() == before
    assert math.isnan(cusum.update([]).mean_loss)


def test_statistic_restarts_after_an_alarm_and_reports_the_raising_value() -> None:
    rng = np.random.default_rng(4)
    cusum = burnt_in(rng)
    step = cusum.update(window(rng, shift=50.0))
    assert step.alarm and step.statistic > cusum.limit
    assert cusum.statistic == 0.0 and cusum.alarms == 1


def test_state_round_trips_through_json_and_continues_identically() -> None:
    rng = np.random.default_rng(5)
    cusum = LossCusum(k=0.25, arl=200.0, burn_in=3)
    for i in range(6):
        cusum.update(window(rng, shift=0.5 * i))
        restored = LossCusum.from_state(json.loads(json.dumps(cusum.state_dict())))
        assert restored.state_dict() == cusum.state_dict()
        assert restored.limit == cusum.limit
        # Continue both with the same inputs: identical steps.
        future = [window(np.random.default_rng(100 + i), shift=2.0) for _ in range(5)]
        copy = LossCusum.from_state(json.loads(json.dumps(cusum.state_dict())))
        assert [restored.update(losses) for losses in future] == [copy.update(losses) for losses in future]


def test_empty_state_gives_a_fresh_cusum() -> None:
    assert LossCusum.from_state({}).state_dict() == LossCusum().state_dict()


@pytest.mark.parametrize(
    "damage",
    [
        {"mu": "high"},
        {"tau": None},
        {"burn": [[1, 2]]},
        {"burn": 5},
        {"arl": 1.0},
        {"alarms": "x"},
    ],
)
def test_malformed_state_raises_value_error(damage: dict[str, object]) -> None:
    state = {**LossCusum().state_dict(), **damage}
    with pytest.raises(ValueError):
        LossCusum.from_state(state)


def test_missing_key_in_state_raises_value_error() -> None:
    state = LossCusum().state_dict()
    del state["sigma"]
    with pytest.raises(ValueError, match="malformed"):
        LossCusum.from_state(state)


def test_tau_absorbs_between_window_spread() -> None:
    # Window means vary with sd 0.2, far beyond the 0.016 that 1000 events explain. With tau the
    # same spread later raises far fewer alarms than the CUSUM that ignores it.
    with_tau = without_tau = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        cusum = LossCusum()
        for _ in range(BURN_IN_WINDOWS):
            cusum.update(rng.normal(rng.normal(MU, 0.2), SIGMA, size=1000))
        assert cusum.tau > 0.05
        naive = LossCusum.from_state({**cusum.state_dict(), "tau": 0.0})
        for _ in range(100):
            losses = rng.normal(rng.normal(MU, 0.2), SIGMA, size=1000)
            with_tau += cusum.update(losses).alarm
            without_tau += naive.update(losses).alarm
    assert without_tau > 200
    assert with_tau < without_tau / 10


def test_in_control_false_alarms_stay_near_the_design_rate_with_an_estimated_baseline() -> None:
    alarms = windows = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        cusum = burnt_in(rng)
        for _ in range(500):
            alarms += cusum.update(window(rng)).alarm
            windows += 1
    assert alarms / windows * 500 <= 3.0
