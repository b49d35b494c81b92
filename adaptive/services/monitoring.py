"""Monitoring windows: metrics, drift and streaming detectors over batches of labeled events.

A **window** is a point of the adaptation curve (DESIGN.md 3, 5.3). Windows cut the stream of
*labels* (not of predictions): a window holds the events labeled in ``(labeled_from, labeled_to]``
and the next one starts where it ended, so every label lands in exactly one window whatever order
the labels arrive in. A window closes after ``Deployment.window_events`` labels, or once the oldest
label not yet in a window is ``window_minutes`` old (see :func:`window_due`). For each window:

* **metrics** of the base score (the model alone) and of the served, compensated score: ROC AUC,
  log loss, accuracy (binary: at the version's threshold, ``>=`` is positive; multiclass: argmax)
  and Brier score (multiclass: the sum over classes of the squared error, Brier's own definition,
  in [0, 2]). Multiclass AUC is the macro one-vs-rest mean over the classes present in the window
  (adaptive.ml.flips.roc_auc); AUC is None when the window holds a single class;
* **drift** of every feature, of the prediction (the base score), of the label and of the raw error
  ``|y - p_base|`` against a reference (adaptive.ml.drift: KS / chi-square up to 1000 reference rows,
  Wasserstein / Jensen-Shannon above, with ok / warn / drift bands). The reference is the live
  version's training profile (``ModelVersion.profile``, see :func:`training_profile`) or, for a
  version without one, the first window it served, kept in ``MonitorState.reference`` (that first
  window has no drift rows: it is the reference);
* **streaming detectors** (River's ADWIN, Page-Hinkley, KSWIN and DDM) on two per-event error
  streams in label order: ``raw`` (the base score's error) and ``compensated`` (the served score's).
  Their state lives in ``MonitorState.detectors`` per version, so it survives worker restarts and
  comes back with a rolled-back version; each window stores what they said in ``detector_signals``.

Closing is two steps. :func:`plan_window` reads the events and computes everything without holding
a lock: the detectors' replay and KSWIN's per-event KS tests take up to a second per window, and a
lock held that long would stall the fast loop (the compensation update locks the same deployment
row, and on SQLite any write transaction locks the whole database). :func:`commit_window` then locks
the deployment row, checks that nothing it planned from has moved (the window cursor, the live
version, the monitor state) and writes the window, its drift rows, the detector state and the
reference in one transaction. A crash leaves no half window, and a second close of the same labels
(a duplicate message, two workers) finds the cursor moved and writes nothing.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from adaptive.ml import drift
from adaptive.ml.flips import log_loss, roc_auc
from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, ModelVersion, MonitorState, Task, Window

logger = logging.getLogger(__name__)

# Feedback stamps labels with the time its request started and commits a little later, so a label
# can become visible with a timestamp behind one already read. Labels younger than this are left
# for the next window rather than skipped for good behind a cursor that has moved past them.
LABEL_GRACE: Final = timedelta(seconds=2)
# Rows kept per column in a drift reference (a training profile or a version's first window).
REFERENCE_MAX_ROWS: Final = 2000
DEFAULT_THRESHOLD: Final = 0.5
# Errors are rounded before they reach the detectors: the saved state keeps up to 5,000 of them per
# stream as JSON, and 6 decimals halve its size while changing nothing a detector can see.
ERROR_DECIMALS: Final = 6

STREAMS: Final = ("raw", "compensated")
# DriftMetric columns besides the features; a feature of the same name keeps its name and the
# special column is renamed (see _special_column_names).
PREDICTION_COLUMN: Final = "prediction"
LABEL_COLUMN: Final = "label"
ERROR_COLUMN: Final = "error"


# --- streaming detectors --------------------------------------------------------------------------


@dataclass(frozen=True)
class _BankSpec:
    kinds: tuple[str, ...]
    history: int
    misclassification: bool  # fed 0/1 misclassifications instead of real-valued errors


# The four detectors of one error stream, as three DetectorBanks, because a bank shares one input
# stream and one history among its detectors:
# * ADWIN and Page-Hinkley take the real-valued error |y - p| and keep drift.py's 5,000-input
#   history, within which their restore is exact;
# * DDM models a Bernoulli error rate and takes 0/1 misclassifications;
# * KSWIN runs a KS test at every input (about 0.3 ms each), so replaying 5,000 inputs on every
#   restore would cost 1.7 s per stream per window. Its state is its 100-input sliding window
#   (window_size), which a history of 100 hands back exactly; past that only its random
#   subsampling restarts from the seed (drift.StreamDetector explains the approximate restore).
_BANKS: Final[Mapping[str, _BankSpec]] = {
    "error": _BankSpec(("adwin", "page_hinkley"), drift.DEFAULT_HISTORY, misclassification=False),
    "kswin": _BankSpec(("kswin",), 100, misclassification=False),
    "misclassification": _BankSpec(("ddm",), drift.DEFAULT_HISTORY, misclassification=True),
}


class ErrorStreamDetectors:
    """ADWIN, Page-Hinkley, KSWIN and DDM on one per-event error stream, with JSON state.

    The state is ``{bank name: DetectorBank state}`` for the banks of ``_BANKS``; a bank missing
    from a saved state starts fresh.
    """

    def __init__(self, banks: Mapping[str, drift.DetectorBank] | None = None) -> None:
        banks = banks or {}
        self._banks = {
            name: banks.get(name) or drift.DetectorBank(spec.kinds, history=spec.history)
            for name, spec in _BANKS.items()
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ErrorStreamDetectors:
        """Rebuild from :meth:`state_dict`; raises ``ValueError`` on a state this module did not write."""
        unknown = sorted(set(state) - set(_BANKS))
        if unknown:
            raise ValueError(f"detector state has unknown banks {unknown}")
        return cls({name: drift.DetectorBank.from_state(bank_state) for name, bank_state in state.items()})

    def state_dict(self) -> dict[str, Any]:
        return {name: bank.state_dict() for name, bank in self._banks.items()}

    def update(self, errors: Sequence[float], misclassified: Sequence[float]) -> dict[str, dict[str, Any]]:
        """Feed one window's errors in label order; per detector kind, what it said.

        ``detections`` are positions within this window's inputs; ``n_seen`` and ``n_detections``
        count over the detector's whole life; ``warning`` is DDM's warning zone after the last input.
        """
        signals: dict[str, dict[str, Any]] = {}
        for name, bank in self._banks.items():
            batch = misclassified if _BANKS[name].misclassification else errors
            for kind, signal in bank.update_many(batch).items():
                detector = bank.detectors[kind]
                signals[kind] = {
                    "drift": signal["drift"],
                    "detections": signal["detections"],
                    "warning": detector.warning_detected,
                    "n_seen": detector.n_seen,
                    "n_detections": detector.n_detections,
                }
        return signals


# --- when a window is due -------------------------------------------------------------------------


def window_due(deployment: Deployment, now: datetime | None = None) -> bool:
    """Whether the deployment has a window to close.

    Due when at least ``window_events`` labels wait outside any window, or when the oldest of them
    is at least ``window_minutes`` old. Timing the clock from the oldest waiting label, rather than
    from the last close, means that after a quiet spell the first new label waits ``window_minutes``
    for company instead of closing a window of one. Labels younger than :data:`LABEL_GRACE` do not
    count yet (:func:`close_window` would not take them either). Two indexed queries.
    """
    now = now or timezone.now()
    waiting = _labeled_after(deployment.pk, _cursor(deployment.pk), now - LABEL_GRACE)
    oldest = waiting.values_list("labeled_at", flat=True).first()
    if oldest is None:
        return False
    if now - oldest >= timedelta(minutes=deployment.window_minutes):
        return True
    size = _window_size(deployment)
    return waiting[:size].count() >= size


# --- closing a window -----------------------------------------------------------------------------


@dataclass
class WindowPlan:
    """Everything one window will write, computed from what was read; :func:`commit_window` checks
    that ``cursor``, ``version_id`` and ``state_stamp`` still hold before writing it."""

    deployment_id: int
    cursor: datetime | None
    version_id: int | None
    state_stamp: datetime | None  # MonitorState.updated_at as read; None: no state row yet
    window: dict[str, Any]  # Window fields, less the memory fields read at commit
    drift_rows: list[dict[str, Any]]  # DriftMetric fields, less the window
    detectors: dict[str, Any]  # the new MonitorState.detectors
    new_reference: dict[str, Any] | None  # set when this window becomes the version's reference


def close_window(deployment: Deployment, now: datetime | None = None) -> Window | None:
    """Close the deployment's next window; None when no label waits for one, or when another
    process closed this window first (its labels are in that one).

    The window takes the labels after the last window's ``labeled_to``, in label-time order, up to
    the ``window_events``-th one (all labels sharing its timestamp included: a timestamp is never
    split between windows) and never younger than :data:`LABEL_GRACE`. A backlog therefore closes as
    several windows of about ``window_events`` labels, one per call. It closes whether or not it is
    due: callers ask :func:`window_due` first.
    """
    plan = plan_window(deployment, now)
    if plan is None:
        return None
    return commit_window(plan)


def plan_window(deployment: Deployment, now: datetime | None = None) -> WindowPlan | None:
    """Read the next window's events and compute its metrics, drift and detector steps (no writes)."""
    now = now or timezone.now()
    deployment = Deployment.objects.select_related("live_version").get(pk=deployment.pk)
    cursor = _cursor(deployment.pk)
    waiting = _labeled_after(deployment.pk, cursor, now - LABEL_GRACE)
    size = _window_size(deployment)
    # The size-th waiting label's timestamp, from the labeled index, so that only the window's rows
    # are read (the OFFSET walks index entries, not events).
    nth = list(waiting.values_list("labeled_at", flat=True)[size - 1 : size])
    if nth:
        waiting = waiting.filter(labeled_at__lte=nth[0])
    multiclass = deployment.task == Task.MULTICLASS
    fields = ["event_time", "labeled_at", "features", "base_score", "score", "label"]
    if multiclass:
        fields += ["base_proba", "proba"]
    rows = list(waiting.values(*fields))
    if not rows:
        return None

    version = _monitored_version(deployment)
    state = MonitorState.objects.filter(deployment=deployment, version=version).first()
    labels = np.array([row["label"] for row in rows], dtype=np.int64)
    base = _probabilities(rows, "base_proba" if multiclass else "base_score")
    served = _probabilities(rows, "proba" if multiclass else "score")
    threshold = version.threshold if version is not None else DEFAULT_THRESHOLD

    base_metrics = _metrics(base, labels, threshold)
    served_metrics = _metrics(served, labels, threshold)
    raw_errors, raw_misses = _errors(base, labels, threshold)
    served_errors, served_misses = _errors(served, labels, threshold)

    saved = (state.detectors if state is not None else None) or {}
    detectors = {stream: ErrorStreamDetectors.from_state(saved.get(stream) or {}) for stream in STREAMS}
    signals = {
        "raw": detectors["raw"].update(raw_errors, raw_misses),
        "compensated": detectors["compensated"].update(served_errors, served_misses),
    }

    # The window's columns in the reference's shape, every row kept.
    current = training_profile([row["features"] for row in rows], base, labels, max_rows=len(rows))
    new_reference = None
    if version is not None and version.profile:
        reference: Mapping[str, Any] | None = version.profile
    elif state is not None and state.reference:
        reference = state.reference
    else:
        reference = None
        new_reference = training_profile([row["features"] for row in rows], base, labels)
    drift_rows = _drift_rows(deployment, reference, current) if reference is not None else []

    start = min(row["event_time"] for row in rows)
    end = max(row["event_time"] for row in rows)
    window = {
        "version": version,
        "start": start,
        "end": end,
        # Traffic in the window's event-time range, counted on the (deployment, event_time) index.
        "n_events": Event.objects.filter(deployment=deployment, event_time__range=(start, end)).count(),
        "n_labeled": len(rows),
        "labeled_from": cursor,
        "labeled_to": rows[-1]["labeled_at"],
        "detector_signals": signals,
        **{f"base_{name}": value for name, value in base_metrics.items()},
        **{f"compensated_{name}": value for name, value in served_metrics.items()},
    }
    return WindowPlan(
        deployment_id=deployment.pk,
        cursor=cursor,
        version_id=version.pk if version is not None else None,
        state_stamp=state.updated_at if state is not None else None,
        window=window,
        drift_rows=drift_rows,
        detectors={stream: bank.state_dict() for stream, bank in detectors.items()},
        new_reference=new_reference,
    )


def commit_window(plan: WindowPlan) -> Window | None:
    """Write a planned window in one transaction; None (nothing written) when the plan is stale."""
    with transaction.atomic():
        # No select_related: after a lock wait PostgreSQL re-reads this row but not a joined one.
        deployment = Deployment.objects.select_for_update().get(pk=plan.deployment_id)
        version = _monitored_version(deployment)
        if _cursor(deployment.pk) != plan.cursor or (version.pk if version else None) != plan.version_id:
            return None  # another close took these labels, or the live version changed meanwhile
        state = MonitorState.objects.select_for_update().filter(deployment=deployment, version=version).first()
        if (state.updated_at if state is not None else None) != plan.state_stamp:
            return None
        window = Window.objects.create(
            deployment=deployment,
            memory_revision=deployment.memory_revision,
            memory_size=ErrorSample.objects.filter(deployment=deployment, version=version, active=True).count(),
            **plan.window,
        )
        DriftMetric.objects.bulk_create([DriftMetric(window=window, **row) for row in plan.drift_rows])
        if state is None:
            MonitorState.objects.create(
                deployment=deployment, version=version, detectors=plan.detectors, reference=plan.new_reference or {}
            )
        else:
            state.detectors = plan.detectors
            if plan.new_reference is not None:
                state.reference = plan.new_reference
            state.save(update_fields=["detectors", "reference", "updated_at"])
    return window


# --- drift references -----------------------------------------------------------------------------


def training_profile(
    features_rows: Iterable[Mapping[str, Any]],
    predictions: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    max_rows: int = REFERENCE_MAX_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """A drift reference (``ModelVersion.profile``) from training or reference data.

    ``features_rows`` are feature rows as the predict API takes them; ``predictions`` are the
    model's probabilities for them, ``[N]`` P(y=1) for a binary task or ``[N, C]`` for a
    multiclass one; ``labels`` are class indexes. At most ``max_rows`` rows are kept, a uniform
    sample without replacement (fixed by ``seed``) in their original order. Returns
    ``{"features": {name: [values]}, "prediction": [...], "label": [...], "error": [...]}`` where
    ``prediction`` is what windows test as the prediction column (P(y=1), or the predicted class's
    probability for multiclass, like ``Event.base_score``) and ``error`` is ``|y - p|`` (multiclass:
    ``1 - p[y]``). Values are plain JSON; missing and non-finite numbers become ``None``.
    """
    rows = list(features_rows)
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim not in (1, 2) or len(p) != len(rows) or y.shape != (len(rows),):
        raise ValueError(
            f"need as many predictions ([N] or [N, C]) and labels ([N]) as rows ({len(rows)}), "
            f"got {p.shape} and {y.shape}"
        )
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    keep: npt.NDArray[np.int64] = np.arange(len(rows))
    if len(rows) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
    names: dict[str, None] = {}  # feature names in first-seen order
    for i in keep:
        names.update(dict.fromkeys(rows[i]))
    prediction = p if p.ndim == 1 else p.max(axis=1)
    errors, _ = _errors(p, y, DEFAULT_THRESHOLD)
    return {
        "features": {name: [_json_value(rows[i].get(name)) for i in keep] for name in names},
        "prediction": [_json_value(round(float(v), ERROR_DECIMALS)) for v in prediction[keep]],
        "label": [int(v) for v in y[keep]],
        "error": [errors[i] for i in keep],
    }


def _drift_rows(
    deployment: Deployment, reference: Mapping[str, Any], current: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """DriftMetric fields for every column that has values in both the reference and the window."""
    kinds = {entry["name"]: entry["type"] for entry in deployment.feature_schema}
    ref_features: Mapping[str, Any] = reference.get("features") or {}
    columns: list[tuple[str, str, str, Any, Any]] = [
        (name, DriftMetric.ColumnKind.FEATURE, kind, ref_features.get(name), current["features"].get(name))
        for name, kind in kinds.items()
    ]
    names = _special_column_names(set(kinds))
    for key, special_kind, value_kind in (
        (PREDICTION_COLUMN, DriftMetric.ColumnKind.PREDICTION, "numeric"),
        (LABEL_COLUMN, DriftMetric.ColumnKind.LABEL, "categorical"),
        (ERROR_COLUMN, DriftMetric.ColumnKind.ERROR, "numeric"),
    ):
        columns.append((names[key], special_kind, value_kind, reference.get(key), current.get(key)))

    rows = []
    for column, column_kind, kind, ref_values, cur_values in columns:
        if not ref_values or not cur_values:
            continue  # a feature the profile lacks, or a profile written without an error column
        try:
            result = drift.column_drift(
                ref_values,
                cur_values,
                kind=kind,
                column=column,
                p_threshold=deployment.drift_p_value,
                distance_threshold=deployment.drift_distance,
            )
        except ValueError as exc:
            # A column with nothing to test (all values missing in this window) or values of the
            # wrong type (external clients send their own features): no row for it this time.
            logger.warning("drift of %s.%s not tested: %s", deployment.slug, column, exc)
            continue
        rows.append(
            {
                "column": column,
                "column_kind": column_kind,
                "method": result.method,
                "statistic": result.statistic,
                "p_value": result.p_value,
                "threshold": result.threshold,
                "level": result.level,
            }
        )
    return rows


def _special_column_names(feature_names: set[str]) -> dict[str, str]:
    """Column names for prediction, label and error that no feature uses (DriftMetric is unique
    per window, column and method)."""
    names = {}
    for key in (PREDICTION_COLUMN, LABEL_COLUMN, ERROR_COLUMN):
        name = key
        while name in feature_names:
            name = f"_{name}"
        names[key] = name
    return names


# --- metrics --------------------------------------------------------------------------------------


def _probabilities(rows: Sequence[Mapping[str, Any]], field: str) -> npt.NDArray[np.float64]:
    """[N] scores (binary) or [N, C] probability vectors (multiclass) of one score field."""
    values = [row[field] for row in rows]
    if any(value is None for value in values):
        raise ValueError(f"events without {field}: multiclass windows need probability vectors")
    return np.asarray(values, dtype=np.float64)


def _metrics(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64], threshold: float) -> dict[str, float | None]:
    """AUC, log loss, accuracy and Brier score of [N] binary scores or [N, C] class probabilities."""
    if p.ndim == 1:
        predicted = (p >= threshold).astype(np.int64)
        brier = float(np.mean((p - y) ** 2))
    else:
        predicted = p.argmax(axis=1)
        onehot = np.eye(p.shape[1])[y]
        brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    return {
        "auc": roc_auc(p, y),
        "log_loss": log_loss(p, y),
        "accuracy": float(np.mean(predicted == y)),
        "brier": brier,
    }


def _errors(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64], threshold: float) -> tuple[list[float], list[float]]:
    """Per event: the error ``|y - p|`` (multiclass ``1 - p[y]``) and the 0/1 misclassification."""
    if p.ndim == 1:
        error = np.abs(y - p)
        miss = (p >= threshold).astype(np.int64) != y
    else:
        error = 1.0 - p[np.arange(len(y)), y]
        miss = p.argmax(axis=1) != y
    error = np.round(np.clip(error, 0.0, 1.0), ERROR_DECIMALS)
    return error.tolist(), miss.astype(np.float64).tolist()


# --- queries --------------------------------------------------------------------------------------


def _window_size(deployment: Deployment) -> int:
    return max(1, deployment.window_events)


def _cursor(deployment_id: int) -> datetime | None:
    """``labeled_to`` of the deployment's last window: labels after it belong to the next one.

    Sorts the deployment's windows (one per ``window_events`` labels, found by the
    (deployment, end) index); windows are the pre-aggregated table, so that stays small.
    """
    return (
        Window.objects.filter(deployment_id=deployment_id, labeled_to__isnull=False)
        .order_by("-labeled_to")
        .values_list("labeled_to", flat=True)
        .first()
    )


def _labeled_after(deployment_id: int, cursor: datetime | None, upper: datetime) -> QuerySet[Event]:
    """Events labeled in (cursor, upper], in label order (the partial (deployment, labeled_at) index)."""
    events = Event.objects.filter(deployment_id=deployment_id, label__isnull=False, labeled_at__lte=upper)
    if cursor is not None:
        events = events.filter(labeled_at__gt=cursor)
    return events.order_by("labeled_at", "pk")


def _monitored_version(deployment: Deployment) -> ModelVersion | None:
    """The version windows are attributed to: the live one; none for external deployments."""
    if deployment.serving == Deployment.Serving.EXTERNAL:
        return None
    return deployment.live_version


def _json_value(value: Any) -> Any:
    """A plain JSON value: NumPy scalars become Python ones, NaN and infinities become None
    (PostgreSQL's jsonb has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)
    return value
