"""Drift: batch tests of a current window against a reference window, and streaming detectors.

**Batch tests** (:func:`column_drift`, :func:`dataset_drift`) compare one column of a reference
window (training data, or last month) with the same column of a current window, with the method
Evidently would choose for the column's kind and the reference's size, and give every result an
``ok``/``warn``/``drift`` band for the dashboard.

**Streaming detectors** (:class:`StreamDetector`, :class:`DetectorBank`) wrap River's ADWIN,
Page-Hinkley and DDM, and KSWIN (:mod:`adaptive.ml.kswin`), on a stream of per-event errors. Their
state is saved as plain JSON values, never pickled.

The package, by module: ``columns`` (the batch tests, method choice and bands), ``samples`` (a
window cleaned for testing), ``statistics`` (each method's statistic), ``detector``
(``StreamDetector``), ``detector_state`` (what a restore sets or replays) and ``bank``
(``DetectorBank``). Everything public is re-exported here.
"""

from __future__ import annotations

from adaptive.ml.drift.bank import (
    DetectorBank,
    DetectorSignal,
)
from adaptive.ml.drift.columns import (
    DEFAULT_DISTANCE_THRESHOLD,
    DEFAULT_P_THRESHOLD,
    SMALL_REFERENCE_MAX_ROWS,
    WARN_DISTANCE_FACTOR,
    WARN_P_FACTOR,
    DriftResult,
    Level,
    choose_method,
    column_drift,
    dataset_drift,
    drift_level,
)
from adaptive.ml.drift.detector import (
    DEFAULT_DETECTOR_PARAMS,
    DEFAULT_HISTORY,
    DETECTOR_KINDS,
    STATE_FORMAT,
    DetectorKind,
    ParamValue,
    StreamDetector,
)
from adaptive.ml.drift.samples import (
    COLUMN_KINDS,
    ColumnKind,
    ColumnSample,
    ColumnValues,
    column_sample,
)
from adaptive.ml.drift.statistics import (
    CHISQUARE,
    JENSEN_SHANNON,
    KS,
    METHODS_BY_KIND,
    MIN_REFERENCE_STD,
    P_VALUE_METHODS,
    PSI,
    PSI_BINS,
    PSI_EPSILON,
    WASSERSTEIN,
    jensen_shannon_distance,
    population_stability_index,
)

__all__ = [
    "CHISQUARE",
    "COLUMN_KINDS",
    "DEFAULT_DETECTOR_PARAMS",
    "DEFAULT_DISTANCE_THRESHOLD",
    "DEFAULT_HISTORY",
    "DEFAULT_P_THRESHOLD",
    "DETECTOR_KINDS",
    "JENSEN_SHANNON",
    "KS",
    "METHODS_BY_KIND",
    "MIN_REFERENCE_STD",
    "PSI",
    "PSI_BINS",
    "PSI_EPSILON",
    "P_VALUE_METHODS",
    "SMALL_REFERENCE_MAX_ROWS",
    "STATE_FORMAT",
    "WARN_DISTANCE_FACTOR",
    "WARN_P_FACTOR",
    "WASSERSTEIN",
    "ColumnKind",
    "ColumnSample",
    "ColumnValues",
    "DetectorBank",
    "DetectorKind",
    "DetectorSignal",
    "DriftResult",
    "Level",
    "ParamValue",
    "StreamDetector",
    "choose_method",
    "column_drift",
    "column_sample",
    "dataset_drift",
    "drift_level",
    "jensen_shannon_distance",
    "population_stability_index",
]
