"""Batch drift tests: one column of a current window against the same column of a reference window.

The method is chosen per column the way Evidently chooses its default stattest:

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
z-test; here a column's kind alone decides, so that the rule stays the two-way one above. The
statistics, and where they depart from Evidently, are in :mod:`adaptive.ml.drift.statistics`;
how windows are cleaned is in :mod:`adaptive.ml.drift.samples`.

**Bands.** Every result has a level for the dashboard, decided by :func:`drift_level`: for a p-value,
``drift`` when p < threshold and ``warn`` when p < 2 x threshold (0.05 <= p < 0.10 by default:
"marginally significant"); for a distance, ``drift`` when d >= threshold and ``warn`` when
d >= threshold / 2 (0.05 <= d < 0.1 by default). Otherwise ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from adaptive.ml.drift.samples import ColumnSample, ColumnValues, check_kind, sample_of
from adaptive.ml.drift.statistics import (
    CHISQUARE,
    JENSEN_SHANNON,
    KS,
    METHODS_BY_KIND,
    WASSERSTEIN,
    categorical_statistic,
    numeric_statistic,
)

Level = Literal["ok", "warn", "drift"]

# Evidently's cut-off between "small" (test) and "large" (distance) reference windows.
SMALL_REFERENCE_MAX_ROWS: Final = 1000
DEFAULT_P_THRESHOLD: Final = 0.05
DEFAULT_DISTANCE_THRESHOLD: Final = 0.1

# The warn band: p-values up to twice the threshold, distances from half of it.
WARN_P_FACTOR: Final = 2.0
WARN_DISTANCE_FACTOR: Final = 0.5


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
    check_kind(kind)
    if n_reference < 0:
        raise ValueError(f"n_reference must be >= 0, got {n_reference}")
    small = n_reference <= SMALL_REFERENCE_MAX_ROWS
    if kind == "numeric":
        return KS if small else WASSERSTEIN
    return CHISQUARE if small else JENSEN_SHANNON


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
    check_kind(kind)
    if not 0.0 < p_threshold < 1.0:
        raise ValueError(f"p_threshold must be in (0, 1), got {p_threshold}")
    if not distance_threshold > 0.0:
        raise ValueError(f"distance_threshold must be > 0, got {distance_threshold}")
    if method is not None and method not in METHODS_BY_KIND[kind]:
        allowed = ", ".join(METHODS_BY_KIND[kind])
        raise ValueError(f"column {column!r}: method {method!r} does not apply to {kind} columns ({allowed})")

    ref = sample_of(reference, kind=kind, column=column, window="reference")
    cur = sample_of(current, kind=kind, column=column, window="current")
    chosen = method or choose_method(kind, ref.size)
    if ref.numbers is not None and cur.numbers is not None:
        statistic, p_value = numeric_statistic(chosen, ref.numbers, cur.numbers)
    else:
        assert ref.counts is not None and cur.counts is not None
        statistic, p_value = categorical_statistic(chosen, ref.counts, cur.counts)

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
