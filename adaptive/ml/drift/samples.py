"""One window of one column, cleaned for a drift test: missing values dropped, categories keyed.

``None``, NaN and, for numeric columns, +-inf are dropped from both windows before testing (Evidently
does the same), and method choice counts the remaining reference rows. A window with nothing left
raises ``ValueError``. Categories are matched by the same key as :mod:`adaptive.ml.preprocessing`
uses, so drift counts the categories the model sees: strings as they are, integers by their decimal
form (``7`` and ``"7"`` are one category), booleans as ``"true"``/``"false"``.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

ColumnKind = Literal["numeric", "categorical"]
# A window's values for one column: a numpy array, a list (which may hold None), a pandas Series.
ColumnValues = ArrayLike | Sequence[Any]
COLUMN_KINDS: Final = get_args(ColumnKind)


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
    check_kind(kind)
    if kind == "numeric":
        return ColumnSample(kind, numbers=_numeric_values(values, column=column, window=window))
    return ColumnSample(kind, counts=_category_counts(values, column=column, window=window))


def sample_of(values: ColumnValues | ColumnSample, *, kind: str, column: str, window: str) -> ColumnSample:
    """``values`` as a :class:`ColumnSample` of ``kind``, cleaned unless it already is one."""
    if isinstance(values, ColumnSample):
        if values.kind != kind:
            raise ValueError(f"column {column!r}: the {window} window was prepared as {values.kind}, not {kind}")
        return values
    return column_sample(values, kind=kind, column=column, window=window)


def is_missing(value: object) -> bool:
    """Whether a value counts as missing: None, or NaN (a number missing in pandas or NumPy data)."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def check_kind(kind: str) -> None:
    """Raise ``ValueError`` unless ``kind`` is a column kind."""
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
