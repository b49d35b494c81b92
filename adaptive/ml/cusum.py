"""The retrain trigger: a CUSUM on each window's mean compensated loss, with a chosen false-alarm rate.

The policy should ask for a retrain when the loss that is left *after* compensation has risen and
stays up, and almost never otherwise. Streaming detectors on per-event errors answer a different
question (did anything change in the error stream?) with a false-alarm rate nobody chose. Here:

* **Baseline.** The version's first :data:`BURN_IN_WINDOWS` windows give the per-event loss mean
  ``mu`` and standard deviation ``sigma``, and the spread of the window means beyond what ``sigma``
  explains (``tau``: days differ more than rows do in real streams; zero when they do not).
* **Standardised window.** A window of ``n`` events with mean loss ``L`` scores
  ``z = (L - mu) / sqrt(sigma^2 / n + tau^2)``, a standard normal while nothing changes.
* **CUSUM.** ``S = max(0, S + z - k)`` with ``k`` = :data:`DEFAULT_K` (tuned to detect a rise of
  one standard error of a window mean), and an alarm when ``S`` exceeds ``h``. ``h`` is set for one
  false alarm per :data:`DEFAULT_ARL` windows (500) from Siegmund's approximation of the CUSUM's
  run length, averaged over the error of a baseline estimated from the burn-in (which shifts every
  later z by the same amount: with a known baseline's limit, 4.38, a five-window burn-in raised
  about ten alarms per 500 windows; checked by simulation in the tests). After an alarm ``S``
  restarts from zero and the baseline stays.

The state is a few plain numbers, saved as JSON beside the streaming detectors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy import optimize

BURN_IN_WINDOWS: Final = 10
DEFAULT_K: Final = 0.5
DEFAULT_ARL: Final = 500.0
# Windows with fewer labels than this are skipped: their mean says too little.
MIN_WINDOW_EVENTS: Final = 30


def siegmund_arl(h: float, k: float, mean: float = 0.0) -> float:
    """Siegmund's approximation of a one-sided CUSUM's average run length on N(``mean``, 1)."""
    b = h + 1.166
    drift = mean - k
    if abs(drift) < 1e-9:
        return b * b
    return (math.exp(min(-2 * drift * b, 700.0)) + 2 * drift * b - 1) / (2 * drift * drift)


def cusum_limit(arl: float = DEFAULT_ARL, k: float = DEFAULT_K, burn_in: int | None = None) -> float:
    """The decision limit ``h`` for one false alarm per ``arl`` steps on average.

    With ``burn_in`` windows estimating the baseline, every later z carries the same error of the
    estimate, N(0, 1 / burn_in) in units of a window's standard error; the limit is then set so that
    the false-alarm *rate* averaged over that error is ``1 / arl`` (Gauss-Hermite quadrature over
    the error, Siegmund's run length for each value). Without it, the baseline is taken as known.
    """
    if arl <= 1 or k < 0:
        raise ValueError(f"need arl > 1 and k >= 0, got arl={arl}, k={k}")
    if not burn_in:
        return float(optimize.brentq(lambda h: siegmund_arl(h, k) - arl, 0.0, 100.0))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    offsets = nodes / math.sqrt(burn_in)
    weights = weights / weights.sum()

    def rate_gap(h: float) -> float:
        rate = sum(w / siegmund_arl(h, k, mean=o) for o, w in zip(offsets, weights, strict=True))
        return float(rate - 1.0 / arl)

    return float(optimize.brentq(rate_gap, 0.0, 100.0))


@dataclass
class CusumStep:
    """What one window did to the CUSUM."""

    statistic: float  # S after the window (the value that raised an alarm, before its restart)
    z: float | None  # the window's standardised mean loss; None during burn-in or when skipped
    alarm: bool
    mean_loss: float
    baseline: float | None  # mu, once known


class LossCusum:
    """A CUSUM on window mean losses against the version's burn-in baseline; JSON state."""

    def __init__(self, *, k: float = DEFAULT_K, arl: float = DEFAULT_ARL, burn_in: int = BURN_IN_WINDOWS) -> None:
        self.k = k
        self.arl = arl
        self.limit = cusum_limit(arl, k, burn_in)
        self.burn_in = burn_in
        # Burn-in: per window (n, mean, sum of squared deviations from the window's mean).
        self._burn: list[tuple[int, float, float]] = []
        self.mu: float | None = None
        self.sigma: float | None = None
        self.tau = 0.0
        self.statistic = 0.0
        self.alarms = 0
        self.windows = 0

    def update(self, losses: Sequence[float] | np.ndarray) -> CusumStep:
        """Feed one window's per-event losses."""
        values = np.asarray(losses, dtype=np.float64)
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if values.size else float("nan")
        if values.size < MIN_WINDOW_EVENTS:
            return CusumStep(self.statistic, None, False, mean, self.mu)
        self.windows += 1
        if self.mu is None:
            self._burn.append((int(values.size), mean, float(((values - mean) ** 2).sum())))
            if len(self._burn) >= self.burn_in:
                self._fit_baseline()
            return CusumStep(self.statistic, None, False, mean, self.mu)
        assert self.sigma is not None
        scale = math.sqrt(self.sigma**2 / values.size + self.tau**2)
        z = (mean - self.mu) / max(scale, 1e-12)
        statistic = max(0.0, self.statistic + z - self.k)
        alarm = statistic > self.limit
        # After an alarm the sum restarts; the step reports the value that raised it.
        self.statistic = 0.0 if alarm else statistic
        self.alarms += alarm
        return CusumStep(statistic, z, alarm, mean, self.mu)

    def _fit_baseline(self) -> None:
        sizes = np.array([n for n, _, _ in self._burn], dtype=np.float64)
        means = np.array([m for _, m, _ in self._burn])
        squares = sum(s for _, _, s in self._burn)
        total = sizes.sum()
        self.mu = float((sizes * means).sum() / total)
        within = squares / max(total - len(self._burn), 1.0)
        self.sigma = math.sqrt(max(within, 1e-12))
        # Between-window spread beyond sampling: var(means) minus the average sampling variance.
        if len(means) > 1:
            excess = float(np.var(means, ddof=1)) - float(np.mean(within / sizes))
            self.tau = math.sqrt(max(excess, 0.0))
        self._burn = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "arl": self.arl,
            "burn_in": self.burn_in,
            "burn": [list(entry) for entry in self._burn],
            "mu": self.mu,
            "sigma": self.sigma,
            "tau": self.tau,
            "statistic": self.statistic,
            "alarms": self.alarms,
            "windows": self.windows,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LossCusum:
        """Rebuild from :meth:`state_dict`; an empty mapping gives a fresh CUSUM."""
        if not state:
            return cls()
        try:
            cusum = cls(k=float(state["k"]), arl=float(state["arl"]), burn_in=int(state["burn_in"]))
            cusum._burn = [(int(n), float(m), float(s)) for n, m, s in state["burn"]]
            cusum.mu = None if state["mu"] is None else float(state["mu"])
            cusum.sigma = None if state["sigma"] is None else float(state["sigma"])
            cusum.tau = float(state["tau"])
            cusum.statistic = float(state["statistic"])
            cusum.alarms = int(state["alarms"])
            cusum.windows = int(state["windows"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed CUSUM state: {exc}") from None
        return cusum
