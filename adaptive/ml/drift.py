"""Drift: batch tests of a current window against a reference window, and streaming detectors.

**Batch tests** compare one column of a reference window (training data, or last month) with the
same column of a current window. The method is chosen per column the way Evidently chooses its
default stattest (DESIGN.md 4.3):

=============  ==============================  =============================================
kind           reference rows <= 1000          reference rows > 1000
=============  ==============================  =============================================
numeric        ``ks``: two-sample KS, p-value  ``wasserstein``: W1 distance / reference std
categorical    ``chisquare``: p-value          ``jensenshannon``: JS distance, base 2
=============  ==============================  =============================================

Small samples get a significance test, because a distance computed on a few hundred rows is noisy;
large samples get a distance, because with many rows every test becomes "significant" for
differences too small to matter. ``psi`` (population stability index) is available on request.

Evidently also routes low-cardinality numeric columns to chi-square and binary columns to a
z-test; DESIGN.md asks for the two-way rule only, so a column's kind alone decides here.

Where this module departs from Evidently, on purpose:

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

**Bands.** Every result has a level for the dashboard, decided by :func:`drift_level`: for a p-value,
``drift`` when p < threshold and ``warn`` when p < 2 x threshold (0.05 <= p < 0.10 by default:
"marginally significant"); for a distance, ``drift`` when d >= threshold and ``warn`` when
d >= threshold / 2 (0.05 <= d < 0.1 by default). Otherwise ``ok``.

**Missing values.** ``None``, NaN and, for numeric columns, +-inf are dropped from both windows
before testing (Evidently does the same), and method choice counts the remaining reference rows.
A window with nothing left raises ``ValueError``. Categories are matched by the same key as
:mod:`adaptive.ml.preprocessing` uses, so drift counts the categories the model sees: strings as they
are, integers by their decimal form (``7`` and ``"7"`` are one category), booleans as
``"true"``/``"false"``.

**Streaming detectors** (:class:`StreamDetector`, :class:`DetectorBank`) wrap River's ADWIN,
Page-Hinkley, KSWIN and DDM on a stream of per-event errors. Their state is saved as plain JSON
values, never pickled: the detector's settings plus the bounded recent input stream, which
:meth:`StreamDetector.from_state` replays into a freshly built River detector. See
:class:`StreamDetector` for when that replay is exact.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypedDict, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from river import drift as river_drift
from scipy import special, stats

# --- batch tests ---------------------------------------------------------------------------------

ColumnKind = Literal["numeric", "categorical"]
# A window's values for one column: a numpy array, a list (which may hold None), a pandas Series.
ColumnValues = ArrayLike | Sequence[Any]
Level = Literal["ok", "warn", "drift"]

COLUMN_KINDS: Final = get_args(ColumnKind)

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

# Evidently's cut-off between "small" (test) and "large" (distance) reference windows.
SMALL_REFERENCE_MAX_ROWS: Final = 1000
DEFAULT_P_THRESHOLD: Final = 0.05
DEFAULT_DISTANCE_THRESHOLD: Final = 0.1

# The warn band: p-values up to twice the threshold, distances from half of it.
WARN_P_FACTOR: Final = 2.0
WARN_DISTANCE_FACTOR: Final = 0.5

PSI_BINS: Final = 30
# Stands in for an empty bin's share in PSI, whose log ratio is infinite otherwise. 1e-4 is the
# usual choice (and Evidently's): an empty bin then adds at most about 0.001 * share to the index.
PSI_EPSILON: Final = 1e-4
# Floor on the reference std that normalises the Wasserstein distance (Evidently's 0.001): a
# constant reference column would otherwise divide by zero.
MIN_REFERENCE_STD: Final = 0.001


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The outcome of one column's drift test.

    ``statistic`` is the test statistic (KS D, chi-square) or the distance (normalised Wasserstein,
    JS distance, PSI); ``p_value`` is set for tests only. ``threshold`` is the one the level was
    decided with: a p-value threshold for tests, a distance threshold otherwise.
    """

    column: str
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    level: Level

    @property
    def drifted(self) -> bool:
        """Whether the column is in the ``drift`` band."""
        return self.level == "drift"


def drift_level(value: float, threshold: float, *, is_p_value: bool) -> Level:
    """The dashboard band of a p-value or a distance, against its drift threshold.

    p-values: ``drift`` below the threshold, ``warn`` below twice the threshold, else ``ok``.
    Distances: ``drift`` at or above the threshold, ``warn`` at or above half of it, else ``ok``.
    """
    if is_p_value:
        if value < threshold:
            return "drift"
        return "warn" if value < WARN_P_FACTOR * threshold else "ok"
    if value >= threshold:
        return "drift"
    return "warn" if value >= WARN_DISTANCE_FACTOR * threshold else "ok"


def choose_method(kind: str, n_reference: int) -> str:
    """Evidently's default method for a column of ``kind`` with ``n_reference`` reference rows."""
    _check_kind(kind)
    if n_reference < 0:
        raise ValueError(f"n_reference must be >= 0, got {n_reference}")
    small = n_reference <= SMALL_REFERENCE_MAX_ROWS
    if kind == "numeric":
        return KS if small else WASSERSTEIN
    return CHISQUARE if small else JENSEN_SHANNON


def column_drift(
    reference: ColumnValues,
    current: ColumnValues,
    *,
    kind: str,
    column: str,
    method: str | None = None,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
) -> DriftResult:
    """Test one column of ``current`` against ``reference``.

    ``method=None`` picks :func:`choose_method`'s method for the reference size left after dropping
    missing values. Raises ``ValueError`` for an unknown kind or method, a method that does not
    apply to the kind, bad thresholds, values of the wrong type, or a window left empty.
    """
    _check_kind(kind)
    if not 0.0 < p_threshold < 1.0:
        raise ValueError(f"p_threshold must be in (0, 1), got {p_threshold}")
    if not distance_threshold > 0.0:
        raise ValueError(f"distance_threshold must be > 0, got {distance_threshold}")
    if method is not None and method not in METHODS_BY_KIND[kind]:
        allowed = ", ".join(METHODS_BY_KIND[kind])
        raise ValueError(f"column {column!r}: method {method!r} does not apply to {kind} columns ({allowed})")

    if kind == "numeric":
        ref_num = _numeric_values(reference, column=column, window="reference")
        cur_num = _numeric_values(current, column=column, window="current")
        chosen = method or choose_method(kind, ref_num.size)
        statistic, p_value = _numeric_statistic(chosen, ref_num, cur_num)
    else:
        ref_cat = _category_counts(reference, column=column, window="reference")
        cur_cat = _category_counts(current, column=column, window="current")
        chosen = method or choose_method(kind, ref_cat.total())
        statistic, p_value = _categorical_statistic(chosen, ref_cat, cur_cat)

    if p_value is not None:
        return DriftResult(
            column, chosen, statistic, p_value, p_threshold, drift_level(p_value, p_threshold, is_p_value=True)
        )
    level = drift_level(statistic, distance_threshold, is_p_value=False)
    return DriftResult(column, chosen, statistic, None, distance_threshold, level)


def dataset_drift(
    reference: Mapping[str, ColumnValues],
    current: Mapping[str, ColumnValues],
    kinds: Mapping[str, str],
    *,
    methods: Mapping[str, str] | None = None,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
) -> list[DriftResult]:
    """Test every column named in ``kinds``, in its order; ``methods`` overrides the choice per column.

    Columns of ``reference``/``current`` that ``kinds`` does not name are ignored; a named column
    missing from either window raises ``ValueError``.
    """
    methods = methods or {}
    unknown = sorted(set(methods) - set(kinds))
    if unknown:
        raise ValueError(f"methods given for columns without a kind: {unknown}")
    results = []
    for column, kind in kinds.items():
        for name, window in (("reference", reference), ("current", current)):
            if column not in window:
                raise ValueError(f"column {column!r} is missing from the {name} window")
        results.append(
            column_drift(
                reference[column],
                current[column],
                kind=kind,
                column=column,
                method=methods.get(column),
                p_threshold=p_threshold,
                distance_threshold=distance_threshold,
            )
        )
    return results


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


def _check_kind(kind: str) -> None:
    if kind not in COLUMN_KINDS:
        raise ValueError(f"kind must be one of {COLUMN_KINDS}, got {kind!r}")


def _numeric_values(values: ColumnValues, *, column: str, window: str) -> NDArray[np.float64]:
    """The finite values of a numeric window; ``None`` becomes NaN in the float conversion."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {column!r}: the {window} window has non-numeric values") from exc
    _check_one_dimensional(array, column=column, window=window)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"column {column!r}: the {window} window has no values once missing ones are dropped")
    return array


def _check_one_dimensional(array: NDArray[Any], *, column: str, window: str) -> None:
    # A table passed where a column belongs is a caller's bug; flattening it would test nonsense.
    if array.ndim != 1:
        raise ValueError(f"column {column!r}: the {window} window must be one-dimensional, got shape {array.shape}")


def _category_counts(values: ColumnValues, *, column: str, window: str) -> Counter[str]:
    """Counts per category key in a categorical window, missing values dropped."""
    array = np.asarray(values, dtype=object)
    _check_one_dimensional(array, column=column, window=window)
    counts: Counter[str] = Counter()
    for value in array.tolist():
        key = _category_key(value, column=column)
        if key is not None:
            counts[key] += 1
    if not counts:
        raise ValueError(f"column {column!r}: the {window} window has no values once missing ones are dropped")
    return counts


def _category_key(value: object, *, column: str) -> str | None:
    """The preprocessing encoder's key for a category; ``None`` for a missing value."""
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        # Integer columns that held a missing value arrive as floats (3.0); key them as integers.
        if number.is_integer():
            return str(int(number))
    raise ValueError(f"column {column!r}: categories must be strings, integers or booleans, got {value!r}")


def _numeric_statistic(
    method: str, reference: NDArray[np.float64], current: NDArray[np.float64]
) -> tuple[float, float | None]:
    if method == KS:
        result = stats.ks_2samp(reference, current)
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


def _categorical_statistic(method: str, reference: Counter[str], current: Counter[str]) -> tuple[float, float | None]:
    categories = list(reference | current)
    ref_counts = np.array([reference[c] for c in categories], dtype=np.float64)
    cur_counts = np.array([current[c] for c in categories], dtype=np.float64)
    if method == CHISQUARE:
        if len(categories) == 1:
            return 0.0, 1.0  # one category on both sides: identical distributions, and zero degrees of freedom
        # No Yates correction: it only applies to two categories, where it makes the test conservative.
        result = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
        return float(result.statistic), float(result.pvalue)
    ref_shares = ref_counts / ref_counts.sum()
    cur_shares = cur_counts / cur_counts.sum()
    if method == JENSEN_SHANNON:
        return jensen_shannon_distance(ref_shares, cur_shares), None
    return population_stability_index(ref_shares, cur_shares), None


# --- streaming detectors -------------------------------------------------------------------------

DetectorKind = Literal["adwin", "page_hinkley", "kswin", "ddm"]
DETECTOR_KINDS: Final = get_args(DetectorKind)

ParamValue = int | float | str

# Our defaults, on top of River's, measured on 5,000-event stationary error streams (Beta(2, 8)
# errors, or 10% misclassifications for DDM) with fixed seeds. ADWIN's delta is DESIGN.md's (and
# River's). Page-Hinkley watches increases only: an error that falls is no reason to retrain.
# KSWIN's alpha drops from River's 0.005 to 1e-4 (the value of River's own example) because KSWIN
# tests at every step: River's default raised 6 to 9 false alarms per 5,000 events, 1e-4 raised
# 0.2 on average. DDM's warm start rises from 30 to 100 events: after 30 its minimum error rate rests
# on too few events, and it raised 1.0 false alarm per 5,000 events (up to 5), against 0.33 (at most
# 1) with 100; detection delays after a 10% -> 30% rise barely moved (median 130 events).
DEFAULT_DETECTOR_PARAMS: Final[Mapping[str, Mapping[str, ParamValue]]] = MappingProxyType(
    {
        "adwin": {"delta": 0.002},
        "page_hinkley": {"mode": "up"},
        "kswin": {"alpha": 0.0001},
        "ddm": {"warm_start": 100},
    }
)
# The River constructor arguments a caller may set; KSWIN's ``seed`` has its own argument, and its
# ``window`` is how an approximate restore hands over the sliding window.
_ALLOWED_PARAMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "adwin": frozenset({"delta", "clock", "max_buckets", "min_window_length", "grace_period"}),
        "page_hinkley": frozenset({"min_instances", "delta", "threshold", "alpha", "mode"}),
        "kswin": frozenset({"alpha", "window_size", "stat_size"}),
        "ddm": frozenset({"warm_start", "warning_threshold", "drift_threshold"}),
    }
)

# 5,000 recent errors: about 100 kB of JSON per stream. ADWIN, Page-Hinkley and DDM restore exactly
# while fewer events than this have passed since their last detection; see StreamDetector.
DEFAULT_HISTORY: Final = 5000
STATE_FORMAT: Final = 1


class _RiverDetector(Protocol):
    """What this module uses of a River drift detector."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: Any) -> None: ...


class StreamDetector:
    """One River drift detector on a stream of per-event errors, with JSON-able saved state.

    ``kind`` is ``adwin``, ``page_hinkley``, ``kswin`` or ``ddm``; ``params`` override
    :data:`DEFAULT_DETECTOR_PARAMS` (River's constructor arguments); ``seed`` seeds KSWIN's sampling
    of its reference window. Inputs are real-valued errors (``|y - p|``, log loss); DDM models a
    Bernoulli error rate and takes 0/1 misclassifications only. Non-finite inputs raise
    ``ValueError``: a NaN would poison the running means for good.

    Saving without pickle. River's detectors reset themselves completely on the update after a
    detection, and are deterministic in between (KSWIN's sampler is reseeded at each reset). So a
    detector's state is a pure function of its settings and of the inputs since its last detection:
    :meth:`state_dict` keeps up to ``history`` of those inputs, and :meth:`from_state` replays them
    into a fresh River detector. The restore is *exact* (the restored detector raises the same
    detections at the same steps as the original, for any future input) whenever at most
    ``history`` inputs have passed since the last detection; :attr:`restore_is_exact` says so.

    Beyond that the restore is approximate, as if the detector had been reset ``history`` inputs ago:

    * ADWIN and Page-Hinkley forget evidence older than ``history`` inputs (ADWIN's window is cut
      to the most recent ``history`` inputs, rounded down so its check clock keeps its phase), and
      DDM recomputes its minimum error rate over them;
    * KSWIN gets its sliding window back exactly (``history`` must cover ``window_size``), but its
      random sampler restarts from the seed, so it compares different subsamples.

    Detection is rare on a healthy stream (ADWIN at delta 0.002 raised none in 30 stationary
    streams of 5,000 events), so long stationary runs do reach the approximate regime; what they
    lose is power against a very old baseline, not the recent window.
    """

    def __init__(
        self,
        kind: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        seed: int = 0,
    ) -> None:
        if kind not in DETECTOR_KINDS:
            raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {kind!r}")
        params = dict(params or {})
        unknown = sorted(set(params) - _ALLOWED_PARAMS[kind])
        if unknown:
            raise ValueError(f"{kind}: unknown parameters {unknown}; allowed: {sorted(_ALLOWED_PARAMS[kind])}")
        for name, value in params.items():
            # Only plain scalars, so that state_dict() stays JSON and from_state() rebuilds the same detector.
            if not isinstance(value, (int, float, str)):
                raise ValueError(f"{kind}: parameter {name!r} must be a number or a string, got {value!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive integer, got {history!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self._kind = kind
        self._params: dict[str, ParamValue] = {**DEFAULT_DETECTOR_PARAMS[kind], **params}
        self._history = history
        self._seed = seed
        self._detector = self._build()
        if kind == "kswin" and history < self._kswin_window_size:
            raise ValueError(f"kswin: history ({history}) must cover window_size ({self._kswin_window_size})")
        # Inputs since the detector's last reset (its last detection), the most recent `history` of them.
        self._stream: deque[float] = deque(maxlen=history)
        self._since_reset = 0
        self._n_seen = 0
        self._n_detections = 0
        self._last_detection_at: int | None = None
        self._drift_detected = False

    # -- reading ----------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """Which River detector this is."""
        return self._kind

    @property
    def params(self) -> dict[str, ParamValue]:
        """The detector's constructor arguments, defaults included (a copy)."""
        return dict(self._params)

    @property
    def history(self) -> int:
        """How many recent inputs the saved state keeps at most."""
        return self._history

    @property
    def seed(self) -> int:
        """KSWIN's sampling seed (kept, unused, by the other kinds)."""
        return self._seed

    @property
    def drift_detected(self) -> bool:
        """Whether the last input raised a detection."""
        return self._drift_detected

    @property
    def warning_detected(self) -> bool:
        """DDM's warning zone after the last input; always False for the other kinds."""
        return bool(getattr(self._detector, "warning_detected", False))

    @property
    def n_seen(self) -> int:
        """How many inputs the detector has taken, over its whole life (restores included)."""
        return self._n_seen

    @property
    def n_detections(self) -> int:
        """How many detections it has raised, over its whole life."""
        return self._n_detections

    @property
    def last_detection_at(self) -> int | None:
        """0-based index, in the whole stream, of the input that raised the last detection."""
        return self._last_detection_at

    @property
    def since_reset(self) -> int:
        """How many inputs have passed since the last detection (or since the start)."""
        return self._since_reset

    @property
    def restore_is_exact(self) -> bool:
        """Whether :meth:`from_state` of the current state rebuilds this detector exactly."""
        return self._since_reset <= self._history

    # -- updating ---------------------------------------------------------------------------------

    def update(self, x: float) -> bool:
        """Feed one error; True when it raises a detection."""
        return self._update(self._validated(x))

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed errors in order; the positions *within xs* of those that raised a detection.

        All inputs are checked before any is fed, so an invalid one leaves the detector unchanged.
        """
        values = [self._validated(x) for x in xs]
        return [i for i, value in enumerate(values) if self._update(value)]

    def _update(self, value: float) -> bool:
        self._detector.update(value)
        self._n_seen += 1
        self._drift_detected = bool(self._detector.drift_detected)
        if self._drift_detected:
            # River resets the detector on its next update and drops everything seen so far; drop
            # the same inputs now, so a state saved in between replays nothing and stays exact.
            self._stream.clear()
            self._since_reset = 0
            self._n_detections += 1
            self._last_detection_at = self._n_seen - 1
        else:
            self._stream.append(value)
            self._since_reset += 1
        return self._drift_detected

    def _validated(self, x: object) -> float:
        # Booleans are welcome: a misclassification flag is a 0/1 error (numpy's bool is no numbers.Real).
        if not isinstance(x, (numbers.Real, np.bool_)):
            raise ValueError(f"{self._kind}: errors must be real numbers, got {x!r}")
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"{self._kind}: errors must be finite, got {value}")
        if self._kind == "ddm" and value not in (0.0, 1.0):
            raise ValueError(
                f"ddm takes 0/1 misclassification errors, got {value}; use another kind for real-valued errors"
            )
        return value

    # -- saving and restoring ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The detector's state as JSON-able plain values; :meth:`from_state` rebuilds it."""
        return {
            "format": STATE_FORMAT,
            "kind": self._kind,
            "params": dict(self._params),
            "seed": self._seed,
            "history": self._history,
            "stream": list(self._stream),
            "since_reset": self._since_reset,
            "n_seen": self._n_seen,
            "n_detections": self._n_detections,
            "last_detection_at": self._last_detection_at,
            "drift_detected": self._drift_detected,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StreamDetector:
        """Rebuild a detector from :meth:`state_dict`'s output by replaying its stored stream.

        Raises ``ValueError`` on a state this module did not write (wrong format, inconsistent counts).
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown detector state format {state.get('format')!r}, expected {STATE_FORMAT}")
        try:
            detector = cls(state["kind"], state["params"], history=state["history"], seed=state["seed"])
            stream = [detector._validated(x) for x in state["stream"]]
            since_reset = _non_negative_int(state["since_reset"], "since_reset")
            n_seen = _non_negative_int(state["n_seen"], "n_seen")
            n_detections = _non_negative_int(state["n_detections"], "n_detections")
            last_detection_at = state["last_detection_at"]
            drift_detected = state["drift_detected"]
        except KeyError as exc:
            raise ValueError(f"detector state lacks {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"detector state is malformed: {exc}") from None
        if len(stream) != min(since_reset, detector.history) or since_reset > n_seen:
            raise ValueError(
                f"detector state is inconsistent: {len(stream)} stored inputs, {since_reset} since reset, "
                f"{n_seen} seen, history {detector.history}"
            )
        if last_detection_at is not None:
            last_detection_at = _non_negative_int(last_detection_at, "last_detection_at")
        if (last_detection_at is None) != (n_detections == 0) or not isinstance(drift_detected, bool):
            raise ValueError("detector state is inconsistent: detection counters disagree")
        if drift_detected and stream:
            raise ValueError("detector state is inconsistent: inputs stored past a detection")
        detector._restore_stream(stream, since_reset)
        detector._n_seen = n_seen
        detector._n_detections = n_detections
        detector._last_detection_at = last_detection_at
        # After a detection the stream is empty and the fresh River detector already matches the
        # original's state after its pending reset; only the flag itself needs carrying over.
        detector._drift_detected = drift_detected
        return detector

    def _restore_stream(self, stream: list[float], since_reset: int) -> None:
        """Rebuild the River detector from the inputs since its last reset (or the last `history`)."""
        if since_reset == len(stream):
            replay = stream
        elif self._kind == "kswin":
            # The sliding window is all the data KSWIN holds: hand it over without running the
            # tests a replay would run (their subsamples would differ from the original's).
            window = stream[-self._kswin_window_size :]
            self._detector = self._build(window=window)
            self._stream = deque(stream, maxlen=self._history)
            self._since_reset = since_reset
            return
        elif self._kind == "adwin":
            # ADWIN checks for change every `clock` inputs since its reset; drop a multiple of the
            # clock from the front so the checks still fall on the same future inputs.
            clock = int(getattr(self._detector, "clock", 1))
            replay = stream[(len(stream) - since_reset) % clock :]
        else:
            replay = stream
        # A truncated replay can raise a detection the original never had; the detector then
        # resets, as the original would have, and from there on only the inputs after it count.
        reset_in_replay = False
        while True:
            detector = self._build()
            for i, value in enumerate(replay):
                detector.update(value)
                if detector.drift_detected:
                    replay = replay[i + 1 :]
                    reset_in_replay = True
                    break
            else:
                break
        self._detector = detector
        if reset_in_replay:
            self._stream = deque(replay, maxlen=self._history)
            self._since_reset = len(replay)
        else:
            self._stream = deque(stream, maxlen=self._history)
            self._since_reset = since_reset

    def _build(self, window: Sequence[float] | None = None) -> _RiverDetector:
        params: dict[str, Any] = dict(self._params)
        if self._kind == "adwin":
            return river_drift.ADWIN(**params)
        if self._kind == "page_hinkley":
            return river_drift.PageHinkley(**params)
        if self._kind == "kswin":
            return river_drift.KSWIN(**params, seed=self._seed, window=window)
        return river_drift.binary.DDM(**params)

    @property
    def _kswin_window_size(self) -> int:
        return int(getattr(self._detector, "window_size", 0))

    def __repr__(self) -> str:
        return (
            f"StreamDetector({self._kind!r}, n_seen={self._n_seen}, n_detections={self._n_detections}, "
            f"drift_detected={self._drift_detected})"
        )


class DetectorSignal(TypedDict):
    """What one detector of a bank says about one batch of errors."""

    detections: list[int]  # positions within the batch
    drift: bool  # at least one detection in the batch


class DetectorBank:
    """Several detectors (by default all four kinds) on one error stream, saved together.

    The state stores the shared recent stream once: every detector's since-reset inputs are a suffix
    of it. With ``ddm`` in the bank the stream must be 0/1 misclassifications; build the bank from
    the other kinds for real-valued errors.
    """

    def __init__(
        self,
        kinds: Iterable[str] = DETECTOR_KINDS,
        params: Mapping[str, Mapping[str, ParamValue]] | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        seed: int = 0,
    ) -> None:
        kinds = list(kinds)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"a bank needs distinct detector kinds, got {kinds}")
        params = params or {}
        unknown = sorted(set(params) - set(kinds))
        if unknown:
            raise ValueError(f"parameters given for kinds not in the bank: {unknown}")
        self._history = history
        self._seed = seed
        self._detectors = {kind: StreamDetector(kind, params.get(kind), history=history, seed=seed) for kind in kinds}

    @property
    def detectors(self) -> Mapping[str, StreamDetector]:
        """The detectors by kind, read-only. Feed them through the bank, so their streams stay aligned."""
        return MappingProxyType(self._detectors)

    def update_many(self, xs: Iterable[float]) -> dict[str, DetectorSignal]:
        """Feed errors to every detector; per kind, the batch positions that raised a detection.

        All inputs are checked by every detector first, so an invalid one changes none of them.
        """
        values = list(xs)
        for detector in self._detectors.values():
            for x in values:
                detector._validated(x)
        signals: dict[str, DetectorSignal] = {}
        for kind, detector in self._detectors.items():
            detections = detector.update_many(values)
            signals[kind] = {"detections": detections, "drift": bool(detections)}
        return signals

    def state_dict(self) -> dict[str, Any]:
        """The bank's state as JSON-able plain values; :meth:`from_state` rebuilds it."""
        states = {kind: detector.state_dict() for kind, detector in self._detectors.items()}
        shared: list[float] = max((state["stream"] for state in states.values()), key=len)
        detectors: dict[str, dict[str, Any]] = {}
        for kind, state in states.items():
            own = state.pop("stream")
            if own and shared[len(shared) - len(own) :] != own:
                raise ValueError(f"{kind} has seen a different stream from the rest of the bank")
            state["stream_length"] = len(own)
            for shared_key in ("format", "history", "seed"):
                del state[shared_key]
            detectors[kind] = state
        return {
            "format": STATE_FORMAT,
            "history": self._history,
            "seed": self._seed,
            "stream": shared,
            "detectors": detectors,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DetectorBank:
        """Rebuild a bank from :meth:`state_dict`'s output."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown bank state format {state.get('format')!r}, expected {STATE_FORMAT}")
        try:
            history, seed, shared, entries = state["history"], state["seed"], state["stream"], state["detectors"]
            detectors = {}
            for kind, entry in entries.items():
                length = _non_negative_int(entry["stream_length"], "stream_length")
                if length > len(shared):
                    raise ValueError(f"{kind}: stream_length {length} exceeds the stored stream ({len(shared)})")
                own = {key: value for key, value in entry.items() if key != "stream_length"}
                own.update(format=STATE_FORMAT, history=history, seed=seed, stream=shared[len(shared) - length :])
                detectors[kind] = StreamDetector.from_state(own)
        except KeyError as exc:
            raise ValueError(f"bank state lacks {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"bank state is malformed: {exc}") from None
        bank = cls(list(detectors), {kind: d.params for kind, d in detectors.items()}, history=history, seed=seed)
        bank._detectors = detectors
        return bank


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"detector state: {name} must be a non-negative integer, got {value!r}")
    return value
