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
Page-Hinkley and DDM, and KSWIN (:mod:`adaptive.ml.kswin`: River's detector, tested a batch at a time
in NumPy instead of one SciPy call per event), on a stream of per-event errors. Their state is saved
as plain JSON values, never pickled: the detector's settings plus the bounded recent input stream,
which :meth:`StreamDetector.from_state` replays into a freshly built detector (KSWIN's also keeps its
random generator, so it is put back without a replay). See :class:`StreamDetector` for when a
restore is exact.
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
from scipy.stats import contingency

from adaptive.ml.kswin import KSWIN

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


@dataclass(frozen=True, slots=True)
class ColumnSample:
    """One window's values of one column, cleaned for testing (:func:`column_sample`).

    ``numbers`` holds a numeric column's finite values, ``counts`` a categorical column's counts per
    category key. A reference that serves many windows is cleaned once and passed as this.
    """

    kind: str
    numbers: NDArray[np.float64] | None = None
    counts: Counter[str] | None = None

    @property
    def size(self) -> int:
        """How many values are left to test."""
        if self.numbers is not None:
            return int(self.numbers.size)
        return self.counts.total() if self.counts is not None else 0


def column_sample(values: ColumnValues, *, kind: str, column: str, window: str = "reference") -> ColumnSample:
    """Clean one window of one column: missing values dropped, categories keyed like the encoder.

    Raises ``ValueError`` as :func:`column_drift` does (an unknown kind, values of the wrong type,
    nothing left); ``window`` names the window in those messages.
    """
    _check_kind(kind)
    if kind == "numeric":
        return ColumnSample(kind, numbers=_numeric_values(values, column=column, window=window))
    return ColumnSample(kind, counts=_category_counts(values, column=column, window=window))


def column_drift(
    reference: ColumnValues | ColumnSample,
    current: ColumnValues | ColumnSample,
    *,
    kind: str,
    column: str,
    method: str | None = None,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
) -> DriftResult:
    """Test one column of ``current`` against ``reference``.

    Either window may be given as raw values or as a :class:`ColumnSample` of the same kind.
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

    ref = _sample_of(reference, kind=kind, column=column, window="reference")
    cur = _sample_of(current, kind=kind, column=column, window="current")
    chosen = method or choose_method(kind, ref.size)
    if ref.numbers is not None and cur.numbers is not None:
        statistic, p_value = _numeric_statistic(chosen, ref.numbers, cur.numbers)
    else:
        assert ref.counts is not None and cur.counts is not None
        statistic, p_value = _categorical_statistic(chosen, ref.counts, cur.counts)

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


def _sample_of(values: ColumnValues | ColumnSample, *, kind: str, column: str, window: str) -> ColumnSample:
    if isinstance(values, ColumnSample):
        if values.kind != kind:
            raise ValueError(f"column {column!r}: the {window} window was prepared as {values.kind}, not {kind}")
        return values
    return column_sample(values, kind=kind, column=column, window=window)


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
    if isinstance(values, list) and values:
        # The usual cases, strings from JSON rows and integer labels: keyed as they are, and by
        # their decimal form (booleans, whose type is not int, take the general path).
        types = set(map(type, values))
        if types == {str}:
            return Counter(values)
        if types == {int}:
            return Counter(map(str, values))
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


def _categorical_statistic(method: str, reference: Counter[str], current: Counter[str]) -> tuple[float, float | None]:
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
    call: 0.3 to 0.5 ms, more than the test itself takes on 1,000 rows, for nothing here (the inputs
    are 1-D and free of NaN already). ``_no_deco=True`` is SciPy's own switch that skips it (scipy is
    pinned; tests/ml/test_drift.py checks that the results equal the public calls').
    """
    expected = contingency.expected_freq(observed)
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    result = stats.power_divergence(observed, expected, ddof=observed.size - 1 - dof, axis=None, _no_deco=True)
    return float(result[0]), float(result[1])


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
# Input types that need no further check than finiteness (numpy floats are float subclasses, not these).
_PLAIN_NUMBERS: Final = frozenset({float, int, bool})


class _RiverDetector(Protocol):
    """What this module uses of a River drift detector."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: Any) -> None: ...


class StreamDetector:
    """One drift detector on a stream of per-event errors, with JSON-able saved state.

    ``kind`` is ``adwin``, ``page_hinkley``, ``kswin`` or ``ddm``; ``params`` override
    :data:`DEFAULT_DETECTOR_PARAMS` (River's constructor arguments); ``seed`` seeds KSWIN's sampling
    of its reference window. Inputs are real-valued errors (``|y - p|``, log loss); DDM models a
    Bernoulli error rate and takes 0/1 misclassifications only. Non-finite inputs raise
    ``ValueError``: a NaN would poison the running means for good.

    Saving without pickle. River's detectors reset themselves completely on the update after a
    detection, and are deterministic in between (KSWIN's sampler is reseeded at each reset). So a
    detector's state is a pure function of its settings and of the inputs since its last detection:
    :meth:`state_dict` keeps up to ``history`` of those inputs, and :meth:`from_state` replays them
    into a fresh detector. The restore is *exact* (the restored detector raises the same
    detections at the same steps as the original, for any future input) whenever at most
    ``history`` inputs have passed since the last detection; :attr:`restore_is_exact` says so.

    KSWIN's restore is always exact: its sliding window is the last ``window_size`` stored inputs
    (``history`` must cover ``window_size``) and its state also keeps its random generator
    (``sampler``), so it is rebuilt without running a test. A state saved without ``sampler`` (by
    River's KSWIN) gets its window back, and its sampler restarts from the seed.

    Beyond ``history`` the other restores are approximate, as if the detector had been reset
    ``history`` inputs ago: ADWIN and Page-Hinkley forget evidence older than ``history`` inputs
    (ADWIN's window is cut to the most recent ``history`` inputs, rounded down so its check clock
    keeps its phase), and DDM recomputes its minimum error rate over them.

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
        """Whether :meth:`from_state` of the current state rebuilds this detector exactly.

        Always for KSWIN, Page-Hinkley and DDM, whose state keeps what they hold; for ADWIN while at
        most ``history`` inputs have passed since the last detection.
        """
        return (
            self._since_reset <= self._history
            or hasattr(self._detector, "sampler_state")
            or self._kind in _NATIVE_FIELDS
        )

    # -- updating ---------------------------------------------------------------------------------

    def update(self, x: float) -> bool:
        """Feed one error; True when it raises a detection."""
        return bool(self._feed([self._validated(x)]))

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed errors in order; the positions *within xs* of those that raised a detection.

        All inputs are checked before any is fed, so an invalid one leaves the detector unchanged.
        """
        return self._feed(self._validated_many(xs))

    def _feed(self, values: list[float]) -> list[int]:
        """Feed checked inputs; the positions of those that raised a detection."""
        if not values:
            return []
        detector = self._detector
        batch = getattr(detector, "update_many", None)
        if batch is not None:
            detections: list[int] = batch(values)  # the vectorised KSWIN: the whole batch at once
        else:
            detections = []
            update = detector.update
            for i, value in enumerate(values):
                update(value)
                if detector.drift_detected:
                    detections.append(i)
        start = self._n_seen
        self._n_seen += len(values)
        if detections:
            # River resets the detector on its next update and drops everything seen so far; drop
            # the same inputs now, so a state saved in between replays nothing and stays exact.
            last = detections[-1]
            self._stream.clear()
            self._stream.extend(values[last + 1 :])
            self._since_reset = len(values) - last - 1
            self._n_detections += len(detections)
            self._last_detection_at = start + last
            self._drift_detected = last == len(values) - 1
        else:
            self._stream.extend(values)
            self._since_reset += len(values)
            self._drift_detected = False
        return detections

    def _validated_many(self, xs: Iterable[object]) -> list[float]:
        """The inputs as floats, checked as :meth:`_validated` checks one, in one NumPy pass."""
        values = list(xs)
        # Exact types first: an isinstance() against numbers.Real per input would cost more than
        # the detectors themselves.
        if set(map(type, values)) <= _PLAIN_NUMBERS:
            array = np.asarray(values, dtype=np.float64)
            if np.all(np.isfinite(array)) and (self._kind != "ddm" or np.all((array == 0.0) | (array == 1.0))):
                checked: list[float] = array.tolist()
                return checked
        return [self._validated(x) for x in values]  # raises with the first bad input, or converts the rest

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
        """The detector's state as JSON-able plain values; :meth:`from_state` rebuilds it.

        KSWIN's also holds ``sampler``, its random generator's state (625 integers in base64): with the
        stored inputs, which cover its window, that makes its restore exact at any stream length.
        """
        state: dict[str, Any] = {
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
        sampler_state = getattr(self._detector, "sampler_state", None)
        if sampler_state is not None:
            state["sampler"] = sampler_state()
            position = getattr(self._detector, "sampler_position", None)
            if position is not None:
                state["sampler_position"] = position
        native = _native_state(self._kind, self._detector)
        if native is not None and not self._drift_detected:  # after a detection River starts afresh
            state["native"] = native
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StreamDetector:
        """Rebuild a detector from :meth:`state_dict`'s output by replaying its stored stream.

        Raises ``ValueError`` on a state this module did not write (wrong format, inconsistent counts).
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown detector state format {state.get('format')!r}, expected {STATE_FORMAT}")
        try:
            detector = cls(state["kind"], state["params"], history=state["history"], seed=state["seed"])
            stream = detector._validated_many(state["stream"])
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
        sampler = state.get("sampler")
        native = state.get("native")
        if sampler is not None and hasattr(detector._detector, "set_sampler_state"):
            detector._restore_kswin(stream, since_reset, sampler, state.get("sampler_position"), drift_detected)
        elif native is not None and not drift_detected:
            _set_native_state(detector._kind, detector._detector, native)
            detector._stream = deque(stream, maxlen=detector._history)
            detector._since_reset = since_reset
        else:
            detector._restore_stream(stream, since_reset)
        detector._n_seen = n_seen
        detector._n_detections = n_detections
        detector._last_detection_at = last_detection_at
        # After a detection the stream is empty and the fresh River detector already matches the
        # original's state after its pending reset; only the flag itself needs carrying over.
        detector._drift_detected = drift_detected
        return detector

    def _restore_kswin(
        self, stream: list[float], since_reset: int, sampler: Any, position: Any, drift_detected: bool
    ) -> None:
        """Put KSWIN back as it was: its window is the last ``window_size`` stored inputs (none
        after a detection), its sampler the saved generator state. No test is run again."""
        detector = self._build()
        assert isinstance(detector, KSWIN)  # from_state checked that the built detector keeps a sampler
        if position is not None:
            position = _non_negative_int(position, "sampler_position")
        try:
            detector.set_sampler_state(sampler, position)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"detector state: kswin sampler is malformed: {exc}") from None
        detector.restore(stream, drift_detected=drift_detected, n=since_reset)
        self._detector = detector
        self._stream = deque(stream, maxlen=self._history)
        self._since_reset = since_reset

    def _restore_stream(self, stream: list[float], since_reset: int) -> None:
        """Rebuild the River detector from the inputs since its last reset (or the last `history`)."""
        if since_reset == len(stream):
            replay = stream
        elif self._kind == "kswin":
            # A state saved without the sampler (before it was kept, or by River's KSWIN): the
            # sliding window is all the data KSWIN holds; hand it over without running the tests a
            # replay would run (their subsamples would differ from the original's).
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
            batch = getattr(detector, "update_many", None)
            if batch is not None:
                detections = batch(replay)
                if not detections:
                    break
                replay = replay[detections[-1] + 1 :]
                reset_in_replay = True
                continue
            update = detector.update
            for i, value in enumerate(replay):
                update(value)
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
            # The vectorised KSWIN (adaptive.ml.kswin); River's class fits here too (the window-close
            # benchmark swaps it in as the "before" baseline).
            return KSWIN(**params, seed=self._seed, window=window)
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
        raw = list(xs)
        # Every kind but DDM checks inputs alike: check once per rule, then feed the checked floats.
        checked: dict[bool, list[float]] = {}
        for kind, detector in self._detectors.items():
            rule = kind == "ddm"
            if rule not in checked:
                checked[rule] = detector._validated_many(raw)
        signals: dict[str, DetectorSignal] = {}
        for kind, detector in self._detectors.items():
            detections = detector._feed(checked[kind == "ddm"])
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


# Page-Hinkley's and DDM's whole state: a few numbers, saved as they are (``native`` in the state), so
# that a restore sets them instead of replaying up to ``history`` inputs (about 1.2 us each in
# River). These are River 0.26.1's attribute names (requirements.txt pins it); a detector without
# them saves no ``native`` and is replayed. Infinite values (before the first inputs) save as None.
_NATIVE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "page_hinkley": ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease"),
        "ddm": ("_p_min", "_s_min", "_ps_min", "_warning_detected"),
    }
)
# The running mean each keeps (river.stats.Mean: n and _mean).
_NATIVE_MEAN: Final[Mapping[str, str]] = MappingProxyType({"page_hinkley": "_x_mean", "ddm": "_p"})


def _native_state(kind: str, detector: Any) -> dict[str, Any] | None:
    if kind not in _NATIVE_FIELDS:
        return None
    try:
        mean = getattr(detector, _NATIVE_MEAN[kind])
        values = {name: getattr(detector, name) for name in _NATIVE_FIELDS[kind]}
        values["mean_n"], values["mean"] = mean.n, mean._mean
    except AttributeError:
        return None
    return {name: None if isinstance(v, float) and math.isinf(v) else v for name, v in values.items()}


def _set_native_state(kind: str, detector: Any, native: Any) -> None:
    fields = (*_NATIVE_FIELDS[kind], "mean_n", "mean")
    if not isinstance(native, Mapping) or set(native) != set(fields):
        raise ValueError(f"detector state: {kind} native state must hold {sorted(fields)}")
    values: dict[str, Any] = {}
    for name in fields:
        value = native[name]
        if name == "_warning_detected":
            if not isinstance(value, bool):
                raise ValueError(f"detector state: {kind} {name} must be a boolean, got {value!r}")
        elif value is None:
            # Infinite before the first inputs; p_min and s_min are None until DDM's warm start ends.
            value = None if name in ("_p_min", "_s_min") else math.inf
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"detector state: {kind} {name} must be a finite number, got {value!r}")
        values[name] = value
    mean = getattr(detector, _NATIVE_MEAN[kind])
    mean.n, mean._mean = float(values.pop("mean_n")), float(values.pop("mean"))
    for name, value in values.items():
        setattr(detector, name, value)


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"detector state: {name} must be a non-negative integer, got {value!r}")
    return value
