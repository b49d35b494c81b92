"""A drift reference and one window's calibrated assessment against it.

The reference has a training profile's layout: ``{"features": {name: [values]}, "prediction": [...],
"label": [...], "error": [...]}``. :class:`DriftReference` cleans each column once and keeps each
column's calibrated null per window-size bucket, so a process that closes window after window
calibrates a column a few times in its life. :func:`assess_window` tests a window's columns and
decides the window's dataset status; the monitoring service and bench/alarms.py both call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adaptive.ml.drift.calibration import (
    DEFAULT_COLUMN_ALPHA,
    DEFAULT_MIN_EFFECT,
    DEFAULT_STATUS_ALPHA,
    CalibratedResult,
    NullDistribution,
    calibrated_drift,
    dataset_status,
    null_distribution,
    size_bucket,
)
from adaptive.ml.drift.columns import Level
from adaptive.ml.drift.samples import ColumnSample, column_sample

# ("features", name) for a feature, (special column, "") for prediction, label and error.
ColumnPath = tuple[str, str]


class DriftReference:
    """A drift reference, each column cleaned and calibrated on first use."""

    def __init__(self, source: Mapping[str, Any], *, seed: int = 0) -> None:
        self._source = source
        self._seed = seed
        self._samples: dict[tuple[str, str, str], ColumnSample | ValueError] = {}
        self._nulls: dict[tuple[str, str, str, int], NullDistribution] = {}

    def values(self, path: ColumnPath) -> Any:
        """The raw values at ``path``; None if absent."""
        group, name = path
        if group == "features":
            return (self._source.get("features") or {}).get(name)
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

    def null(self, path: ColumnPath, *, kind: str, column: str, size: int) -> NullDistribution:
        """The column's null at the grid size at or below ``size`` (computed once per bucket)."""
        bucket = size_bucket(size)
        key = (*path, kind, bucket)
        if key not in self._nulls:
            self._nulls[key] = null_distribution(self.sample(path, kind=kind, column=column), bucket, seed=self._seed)
        return self._nulls[key]


@dataclass(frozen=True)
class WindowColumn:
    """One column of a window to test: its name, where the reference keeps it, its kind, its values."""

    column: str
    path: ColumnPath
    kind: str
    values: Sequence[Any]


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
            ref = reference.sample(entry.path, kind=entry.kind, column=entry.column)
            current = column_sample(entry.values, kind=entry.kind, column=entry.column, window="current")
            null = reference.null(entry.path, kind=entry.kind, column=entry.column, size=current.size)
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
