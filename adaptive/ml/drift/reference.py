"""A drift reference and one window's calibrated assessment against it.

The reference has a training profile's layout: ``{"features": {name: [values]}, "prediction": [...],
"label": [...], "error": [...]}``. A nullable feature adds a column of its own, ``"<name> (missing)"``
(:func:`feature_columns`): its 0/1 missing indicator, read from the feature's values at the path
``("missing", name)``, so a change in how often a value is missing is tested as a change in a
category's share, while the feature's own column is tested on its non-missing values.

:class:`DriftReference` cleans each column once and keeps each column's calibrated null per
window-size bucket, so a process that closes window after window calibrates a column a few times in
its life. :func:`assess_window` tests a window's columns and decides the window's dataset status;
the monitoring service and bench/alarms.py both call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptive.ml.drift.calibration import (
    DEFAULT_COLUMN_ALPHA,
    DEFAULT_MIN_EFFECT,
    DEFAULT_STATUS_ALPHA,
    CalibratedResult,
    NullDistribution,
    calibrated_drift,
    dataset_status,
    effect_method,
    null_distribution,
    size_bucket,
)
from adaptive.ml.drift.columns import Level
from adaptive.ml.drift.samples import ColumnSample, column_sample, is_missing
from adaptive.ml.preprocessing import missing_column

# ("features", name) for a feature, ("missing", name) for a nullable feature's missing indicator,
# (special column, "") for prediction, label and error.
ColumnPath = tuple[str, str]
MISSING_GROUP = "missing"
# Numeric columns with at most this many distinct (integer) reference values are tested as categories.
BINARY_MAX_VALUES = 2


class DriftReference:
    """A drift reference, each column cleaned and calibrated on first use.

    ``nulls`` are nulls saved earlier (:meth:`unsaved_nulls`' format): a process that reads them back
    skips the bootstrap for those (column, size) pairs.
    """

    def __init__(
        self, source: Mapping[str, Any], *, seed: int = 0, nulls: Mapping[str, Sequence[float]] | None = None
    ) -> None:
        self._source = source
        self._seed = seed
        self._samples: dict[tuple[str, str, str], ColumnSample | ValueError] = {}
        self._nulls: dict[str, NullDistribution] = {}
        self._saved: dict[str, Sequence[float]] = dict(nulls or {})
        self._unsaved: set[str] = set()
        self._kinds: dict[ColumnPath, str] = {}

    def values(self, path: ColumnPath) -> Any:
        """The raw values at ``path``; None if absent."""
        group, name = path
        if group == "features":
            return (self._source.get("features") or {}).get(name)
        if group == MISSING_GROUP:
            values = (self._source.get("features") or {}).get(name)
            return None if values is None else missing_indicator(values)
        return self._source.get(group)

    def sample(self, path: ColumnPath, *, kind: str, column: str) -> ColumnSample:
        """The column cleaned as ``kind``; raises the ``ValueError`` of a column that cannot be."""
        key = (*path, kind)
        if key not in self._samples:
            try:
                self._samples[key] = column_sample(self.values(path), kind=kind, column=column)
            except ValueError as exc:
                self._samples[key] = exc
        sample = self._samples[key]
        if isinstance(sample, ValueError):
            raise sample
        return sample

    def tested_kind(self, path: ColumnPath, *, kind: str, column: str) -> str:
        """``categorical`` for a numeric column whose reference holds at most two integer values (an
        indicator such as 0/1, tested as categories, as Evidently does: a shift in standard
        deviations of a rare flag says little), else ``kind``."""
        if kind != "numeric":
            return kind
        if path not in self._kinds:  # decided once per column, not per window
            numbers = self.sample(path, kind=kind, column=column).numbers
            assert numbers is not None
            distinct = np.unique(numbers)
            indicator = distinct.size <= BINARY_MAX_VALUES and bool(np.all(distinct == np.round(distinct)))
            self._kinds[path] = "categorical" if indicator else kind
        return self._kinds[path]

    def null(self, path: ColumnPath, *, kind: str, column: str, size: int) -> NullDistribution:
        """The column's null at the grid size at or below ``size`` (computed once per bucket)."""
        bucket = size_bucket(size)
        key = f"{path[0]}/{path[1]}/{kind}/{bucket}"
        if key not in self._nulls:
            saved = self._saved.get(key)
            if saved is not None and len(saved) == 2:
                self._nulls[key] = NullDistribution(effect_method(kind), bucket, float(saved[0]), float(saved[1]))
            else:
                sample = self.sample(path, kind=kind, column=column)
                self._nulls[key] = null_distribution(sample, bucket, seed=self._seed)
                self._unsaved.add(key)
        return self._nulls[key]

    def unsaved_nulls(self) -> dict[str, list[float]]:
        """Nulls computed since the last :meth:`mark_saved`, as ``{key: [mean, std]}``."""
        return {key: [self._nulls[key].mean, self._nulls[key].std] for key in sorted(self._unsaved)}

    def mark_saved(self, keys: Iterable[str]) -> None:
        """Record that ``keys`` are saved where the next reader will find them."""
        for key in keys:
            self._unsaved.discard(key)
            null = self._nulls.get(key)
            if null is not None:
                self._saved[key] = [null.mean, null.std]


@dataclass(frozen=True)
class WindowColumn:
    """One column of a window to test: its name, where the reference keeps it, its kind, its values."""

    column: str
    path: ColumnPath
    kind: str
    values: Sequence[Any]


def missing_indicator(values: Sequence[Any]) -> list[int]:
    """1 where a value is missing (None or NaN), else 0: a nullable feature's missing-share column."""
    return [1 if is_missing(value) else 0 for value in values]


def feature_columns(schema: Sequence[Mapping[str, Any]], features: Mapping[str, Sequence[Any]]) -> list[WindowColumn]:
    """A window's feature columns in schema order, each nullable feature followed by its missing
    share (``"<name> (missing)"``, a categorical 0/1 column).

    ``schema`` is the feature schema in its JSON form; ``features`` the window's values by name (a
    feature the window lacks gets no values, and is skipped by :func:`assess_window`).
    """
    columns = []
    for entry in schema:
        name, values = entry["name"], features.get(entry["name"]) or []
        columns.append(WindowColumn(name, ("features", name), entry["type"], values))
        if entry.get("nullable") is True:
            columns.append(
                WindowColumn(missing_column(name), (MISSING_GROUP, name), "categorical", missing_indicator(values))
            )
    return columns


@dataclass(frozen=True)
class Assessment:
    """A window's column results (in input order), its status, the columns that raise the status,
    and the columns that could not be tested with why."""

    results: list[CalibratedResult]
    status: Level
    raising: list[CalibratedResult]
    skipped: dict[str, str]


def assess_window(
    reference: DriftReference,
    columns: Sequence[WindowColumn],
    *,
    alpha: float = DEFAULT_COLUMN_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha_status: float = DEFAULT_STATUS_ALPHA,
    with_histograms: bool = True,
) -> Assessment:
    """Test every column that has values in both the reference and the window, then the status."""
    results: list[CalibratedResult] = []
    skipped: dict[str, str] = {}
    for entry in columns:
        if not reference.values(entry.path) or not len(entry.values):
            skipped[entry.column] = "no values in the reference or the window"
            continue
        try:
            kind = reference.tested_kind(entry.path, kind=entry.kind, column=entry.column)
            ref = reference.sample(entry.path, kind=kind, column=entry.column)
            current = column_sample(entry.values, kind=kind, column=entry.column, window="current")
            null = reference.null(entry.path, kind=kind, column=entry.column, size=current.size)
            results.append(
                calibrated_drift(
                    ref,
                    current,
                    column=entry.column,
                    null=null,
                    alpha=alpha,
                    min_effect=min_effect,
                    with_histogram=with_histograms,
                )
            )
        except ValueError as exc:
            skipped[entry.column] = str(exc)
    status, raising = dataset_status(results, alpha_status=alpha_status, min_effect=min_effect)
    return Assessment(results, status, raising, skipped)
