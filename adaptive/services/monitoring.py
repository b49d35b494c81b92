"""Monitoring windows: metrics, drift and streaming detectors over batches of labeled events.

A **window** is a point of the adaptation curve (docs/design.md). Windows cut the stream of
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
  ``|y - p_base|`` against a reference, each column judged against its own null distribution at
  the window's size (adaptive.ml.drift.calibration: an effect size, a calibrated p-value and
  threshold, a severity, the reference and current histograms), and the window's **drift status**
  over all columns with a family-wise false-alarm rate. The reference is the live version's
  training profile (``ModelVersion.profile``, see :func:`training_profile`) or, for a version
  without one, the first window it served, kept in ``MonitorState.reference`` (that first window
  has no drift rows: it is the reference). Each row carries the column's importance to the model
  (``ModelVersion.importance``);
* the **retrain trigger**: a CUSUM on the window's mean compensated log loss against the version's
  first windows (adaptive.ml.cusum), its state in ``MonitorState.cusum``;
* **label-free estimates** of the window's base and compensated AUC and accuracy from the scores
  and the version's calibration (adaptive.ml.cbpe), beside the realised values;
* **alarms**: the window's timeline entries (``Window.alarms``): the drift status and the retrain
  trigger, which are calibrated, and what the streaming detectors said, which is context;
* **streaming detectors** (River's ADWIN, Page-Hinkley, KSWIN and DDM) on two per-event error
  streams in label order: ``raw`` (the base score's error) and ``compensated`` (the served score's).
  Their state lives in ``MonitorState.detectors`` per version, so it survives worker restarts and
  comes back with a rolled-back version; each window stores what they said in ``detector_signals``.

Closing is two steps. :func:`plan_window` reads the events and computes everything without holding
a lock: tens of milliseconds that would otherwise stall the fast loop (the compensation update locks
the same deployment row, and on SQLite any write transaction locks the whole database).
:func:`commit_window` then locks the deployment row, checks that nothing it planned from has moved
(the window cursor, the live version, the monitor state) and writes the window, its drift rows, the
detector state and the reference in one transaction. A crash leaves no half window, and a second
close of the same labels (a duplicate message, two workers) finds the cursor moved and writes nothing.

**Cost.** A 1,000-label window costs a few tens of milliseconds of worker CPU (bench/window_close.py;
River's KSWIN made it 1-3 s). Two caches in the worker process keep it there when one worker closes
window after window (a catch-up): the detectors it committed last, used again while the saved state's
``updated_at`` is still the one it wrote (so the state is not parsed and replayed every window), and
the drift reference of each version, cleaned once (a version's profile and its first window never
change). Both only skip work: the saved state stays what a restore reads, and a worker without them
(a restart, another worker) computes the same windows.
"""

from __future__ import annotations

import json
import logging
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
from django.db import transaction
from django.db.models import JSONField, Max, Min, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.utils import timezone

from adaptive.ml import cbpe, drift
from adaptive.ml.cusum import CusumStep, LossCusum
from adaptive.ml.drift.calibration import DEFAULT_STATUS_ALPHA, CalibratedResult
from adaptive.ml.drift.reference import Assessment, DriftReference, WindowColumn, assess_window, feature_columns
from adaptive.ml.flips import LOG_LOSS_EPS, log_loss, roc_auc
from adaptive.ml.jsonsafe import jsonable
from adaptive.ml.limits import MAX_NAME_LENGTH
from adaptive.models import (
    Deployment,
    DriftMetric,
    ErrorSample,
    Event,
    Job,
    ModelVersion,
    MonitorState,
    Task,
    Window,
)
from adaptive.services import jobs

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
# A version's JSON columns, which a window does not need (preprocessing holds the vocabularies; the
# profile, up to 2,000 rows a column, is read only when the drift reference is not cached).
_VERSION_JSON_FIELDS: Final = tuple(
    f"live_version__{name}" for name in ("config", "preprocessing", "key_mean", "profile", "metrics")
)
# (deployment, version) entries the worker keeps of each cache: a worker monitors a few deployments.
CACHED_VERSIONS: Final = 64
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
# * KSWIN's state is its 100-input sliding window (window_size) and its random generator, which a
#   history of 100 and the saved sampler hand back exactly, without a replay.
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


def request_close(deployment: Deployment) -> Job | None:
    """Queue a drift scan for the deployment unless one is queued already; sent after the commit."""
    return jobs.queue_once(deployment, Job.Kind.DRIFT_SCAN)


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
    cusum: dict[str, Any]  # the new MonitorState.cusum
    new_nulls: dict[str, list[float]]  # drift nulls computed for this window, to add to MonitorState.nulls
    new_reference: dict[str, Any] | None  # set when this window becomes the version's reference
    # The detectors themselves, kept by the process once the window is committed.
    stepped: Stepped | None = field(default=None, repr=False, compare=False)
    state_key: StateKey | None = field(default=None, repr=False, compare=False)
    reference: DriftReference | None = field(default=None, repr=False, compare=False)


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
    deployment = Deployment.objects.select_related("live_version").defer(*_VERSION_JSON_FIELDS).get(pk=deployment.pk)
    cursor = _cursor(deployment.pk)
    waiting = _labeled_after(deployment.pk, cursor, now - LABEL_GRACE)
    size = _window_size(deployment)
    # The size-th waiting label's timestamp, from the labeled index, so that only the window's rows
    # are read (the OFFSET walks index entries, not events).
    nth = list(waiting.values_list("labeled_at", flat=True)[size - 1 : size])
    if nth:
        waiting = waiting.filter(labeled_at__lte=nth[0])
    # The window's time range in SQL rather than from 2,000 datetimes converted row by row. First,
    # and the rows below up to its last label: a label that commits in between (with an older
    # timestamp) then joins this window rather than falling behind the cursor.
    times = waiting.aggregate(start=Min("event_time"), end=Max("event_time"), labeled_to=Max("labeled_at"))
    if times["labeled_to"] is None:
        return None
    multiclass = deployment.task == Task.MULTICLASS
    fields = ["features_json", "label", "base_score", "score"]
    if multiclass:
        fields += ["base_proba", "proba"]
    # Features as their JSON text, parsed below in one go (Django's JSONField parses row by row);
    # tuples rather than dicts, turned into columns.
    found = list(
        waiting.filter(labeled_at__lte=times["labeled_to"])
        .annotate(features_json=Cast("features", output_field=TextField()))
        .values_list(*fields)
    )
    if not found:
        return None  # its events were deleted meanwhile
    rows = dict(zip(fields, zip(*found, strict=True), strict=True))

    version = _monitored_version(deployment)
    key = _state_key(deployment, version)
    state = MonitorState.objects.filter(deployment=deployment, version=version).only("pk", "updated_at").first()
    labels = np.array(rows["label"], dtype=np.int64)
    base_field, served_field = ("base_proba", "proba") if multiclass else ("base_score", "score")
    base = _probabilities(rows[base_field], base_field)
    served = _probabilities(rows[served_field], served_field)
    threshold = version.threshold if version is not None else DEFAULT_THRESHOLD

    base_metrics = _metrics(base, labels, threshold)
    served_metrics = _metrics(served, labels, threshold)
    raw_errors, raw_misses = _errors(base, labels, threshold)
    served_errors, served_misses = _errors(served, labels, threshold)

    stepped = _saved_detectors(key, state)
    detectors = stepped.detectors
    signals = {
        "raw": detectors["raw"].update(raw_errors, raw_misses),
        "compensated": detectors["compensated"].update(served_errors, served_misses),
    }
    step = stepped.cusum.update(_losses(served, labels))

    feature_rows = _parse_json(list(rows["features_json"]))
    reference = _reference(key, version, state)
    new_reference = None
    assessment = None
    if reference is None:
        new_reference = training_profile(feature_rows, base, labels)
        drift_rows: list[dict[str, Any]] = []
    else:
        current = _window_columns(feature_rows, base, labels, raw_errors)
        drift_rows, assessment = _drift_rows(deployment, version, reference, current)
    estimates = _estimates(version, base, served, threshold)

    start, end = times["start"], times["end"]
    window = {
        "version": version,
        "start": start,
        "end": end,
        # Traffic in the window's event-time range, counted on the (deployment, event_time) index.
        "n_events": Event.objects.filter(deployment=deployment, event_time__range=(start, end)).count(),
        "n_labeled": len(labels),
        "labeled_from": cursor,
        "labeled_to": times["labeled_to"],
        "detector_signals": signals,
        "drift_status": assessment.status if assessment is not None else "ok",
        "loss_cusum": step.statistic if step.z is not None else None,
        "alarms": _alarms(assessment, step, stepped.cusum.limit, signals, version),
        **{f"base_{name}": value for name, value in base_metrics.items()},
        **{f"compensated_{name}": value for name, value in served_metrics.items()},
        **estimates,
    }
    return WindowPlan(
        deployment_id=deployment.pk,
        cursor=cursor,
        version_id=version.pk if version is not None else None,
        state_stamp=state.updated_at if state is not None else None,
        window=window,
        drift_rows=drift_rows,
        detectors={stream: bank.state_dict() for stream, bank in detectors.items()},
        cusum=stepped.cusum.state_dict(),
        new_nulls=reference.unsaved_nulls() if reference is not None else {},
        new_reference=new_reference,
        stepped=stepped,
        state_key=key,
        reference=reference,
    )


def _columns(rows: Sequence[Mapping[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """Each name's values over the rows, None where a row lacks it."""
    if len(names) > 1:  # itemgetter of one name returns a value, not a 1-tuple
        try:
            # Rows that have every name (the usual case) transpose in C.
            columns = zip(*map(operator.itemgetter(*names), rows), strict=True)
            return {name: list(values) for name, values in zip(names, columns, strict=True)}
        except KeyError:
            pass  # a row without some feature: the general way below
    return {name: [row.get(name) for row in rows] for name in names}


def _parse_json(texts: list[str]) -> list[Any]:
    """JSON texts parsed in one orjson call (ingest writes them with orjson); json's parser for
    anything orjson refuses (a NaN written by another client of the table)."""
    try:
        parsed: list[Any] = orjson.loads("[" + ",".join(texts) + "]")
    except orjson.JSONDecodeError:
        parsed = [json.loads(text) for text in texts]
    return parsed


def _window_columns(
    feature_rows: Sequence[Mapping[str, Any]],
    p: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    errors: list[float],
) -> dict[str, Any]:
    """The window's columns in a drift reference's shape (:func:`training_profile` on every row),
    without converting each value to JSON: they are tested, not stored. A feature no row has is
    left out, as the profile leaves it out."""
    names: dict[str, None] = {}
    for row in feature_rows:
        names.update(dict.fromkeys(row))
    prediction = p if p.ndim == 1 else p.max(axis=1)
    return {
        "features": _columns(feature_rows, list(names)),
        "prediction": [round(v, ERROR_DECIMALS) for v in prediction.tolist()],
        "label": labels.tolist(),
        "error": errors,
    }


def commit_window(plan: WindowPlan) -> Window | None:
    """Write a planned window in one transaction; None (nothing written) when the plan is stale."""
    with transaction.atomic():
        # No select_related: after a lock wait PostgreSQL re-reads this row but not a joined one. FOR NO
        # KEY UPDATE: the foreign-key checks of event and job inserts do not wait for it.
        deployment = Deployment.objects.select_for_update(no_key=True).get(pk=plan.deployment_id)
        # The live version's id only: its row (profile, vocabularies) is not needed to write.
        version = None if deployment.serving == Deployment.Serving.EXTERNAL else deployment.live_version_id
        if _cursor(deployment.pk) != plan.cursor or version != plan.version_id:
            return None  # another close took these labels, or the live version changed meanwhile
        # Only the stamp: the saved detectors (about 150 kB of JSON) are overwritten, not read.
        state = (
            MonitorState.objects.select_for_update()
            .filter(deployment=deployment, version_id=version)
            .only("pk", "updated_at")
            .first()
        )
        if (state.updated_at if state is not None else None) != plan.state_stamp:
            return None
        window = Window.objects.create(
            deployment=deployment,
            memory_revision=deployment.memory_revision,
            memory_size=_memory_size(deployment, version),
            **plan.window,
        )
        DriftMetric.objects.bulk_create([DriftMetric(window=window, **row) for row in plan.drift_rows])
        if state is None:
            state = MonitorState.objects.create(
                deployment=deployment,
                version_id=version,
                detectors=plan.detectors,
                cusum=plan.cusum,
                nulls=plan.new_nulls,
                reference=plan.new_reference or {},
            )
        else:
            # The state as JSON text from orjson (100-200 kB: Django's json.dumps took 3-6 ms of
            # the lock's time); updated_at by hand, as save() would stamp it.
            changes: dict[str, Any] = {
                "detectors": _json_text(plan.detectors),
                "cusum": _json_text(plan.cusum),
                "updated_at": timezone.now(),
            }
            if plan.new_reference is not None:
                changes["reference"] = _json_text(plan.new_reference)
            if plan.new_nulls:
                # A few hundred bytes, read under the lock so that no other close's nulls are lost.
                saved = MonitorState.objects.filter(pk=state.pk).values_list("nulls", flat=True).get() or {}
                changes["nulls"] = _json_text({**saved, **plan.new_nulls})
            MonitorState.objects.filter(pk=state.pk).update(**changes)
            state.updated_at = changes["updated_at"]
    if plan.reference is not None:
        plan.reference.mark_saved(plan.new_nulls)
    if plan.stepped is not None and plan.state_key is not None:
        # What the row now holds, in memory: this process's next window starts from here.
        _remember(_committed_detectors, plan.state_key, ((state.pk, state.updated_at), plan.stepped))
    return window


def _json_text(value: Any) -> Cast:
    """``value`` for a JSONField update, serialised by orjson (JSON's own text on SQLite, jsonb on
    PostgreSQL: the cast is what Django's JSONField would write)."""
    return Cast(Value(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()), output_field=JSONField())


def _memory_size(deployment: Deployment, version_id: int | None) -> int:
    """Active error samples of the monitored memory. A version's samples are all its deployment's:
    filtering on the deployment too would make the count read every row instead of the index alone
    (version, active, revision), and the count runs under the deployment's lock."""
    if version_id is None:
        return ErrorSample.objects.filter(deployment=deployment, version__isnull=True, active=True).count()
    return ErrorSample.objects.filter(version_id=version_id, active=True).count()


# --- what a worker keeps between windows -----------------------------------------------------------


# Whose monitor state: deployment and version (None for an external deployment), each with its
# creation time, so that a primary key used again (SQLite after a rolled-back insert, a restored
# database) cannot pick up another row's cache entry.
StateKey = tuple[int, datetime, int | None, datetime | None]


@dataclass
class Stepped:
    """A version's streaming detectors (per error stream) and its retrain trigger's CUSUM."""

    detectors: dict[str, ErrorStreamDetectors]
    cusum: LossCusum


# The detectors this process committed last per key, with the MonitorState (pk, updated_at) it wrote.
_committed_detectors: OrderedDict[StateKey, tuple[tuple[int, datetime], Stepped]] = OrderedDict()
# Each key's drift reference (see _reference), with the MonitorState pk it was read with.
_references: OrderedDict[tuple[StateKey, int | None], DriftReference] = OrderedDict()


def forget_cached_detectors() -> None:
    """Drop this process's cached detectors and references: the next window reads and rebuilds them
    from the database, as a fresh worker does."""
    _committed_detectors.clear()
    _references.clear()


def _state_key(deployment: Deployment, version: ModelVersion | None) -> StateKey:
    if version is None:
        return (deployment.pk, deployment.created_at, None, None)
    return (deployment.pk, deployment.created_at, version.pk, version.created_at)


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHED_VERSIONS:
        cache.popitem(last=False)


def _saved_detectors(key: StateKey, state: MonitorState | None) -> Stepped:
    """The detectors and CUSUM as ``state`` saved them: this process's own when it wrote that state
    last (taken out of the cache: a plan that is not committed must not leave its steps behind),
    else rebuilt from the row."""
    cached = _committed_detectors.pop(key, None)
    saved: Mapping[str, Any] = {}
    cusum: Mapping[str, Any] = {}
    if state is not None:
        if cached is not None and cached[0] == (state.pk, state.updated_at):
            return cached[1]
        rows = MonitorState.objects.filter(pk=state.pk)
        saved = _json_field(rows, "detectors") or {}
        cusum = rows.values_list("cusum", flat=True).first() or {}
    return Stepped(
        {stream: ErrorStreamDetectors.from_state(saved.get(stream) or {}) for stream in STREAMS},
        LossCusum.from_state(cusum),
    )


def _json_field(rows: QuerySet[Any], name: str) -> Any:
    """The first row's JSON column ``name``, parsed by :func:`_parse_json` (a few times faster than
    Django's own parse of these 100-300 kB documents); None without a row."""
    text = rows.annotate(json_text=Cast(name, output_field=TextField())).values_list("json_text", flat=True).first()
    return None if text is None else _parse_json([text])[0]


def _reference(key: StateKey, version: ModelVersion | None, state: MonitorState | None) -> DriftReference | None:
    """The drift reference: the version's training profile, else the version's first window
    (``MonitorState.reference``); None while there is neither.

    Cached per (deployment, version): neither source changes once it exists.
    """
    cache_key = (key, state.pk if state is not None else None)
    cached = _references.get(cache_key)
    if cached is not None:
        _references.move_to_end(cache_key)
        return cached
    source: Mapping[str, Any] | None = None
    if version is not None:
        source = _json_field(ModelVersion.objects.filter(pk=version.pk), "profile")
    if not source and state is not None:
        source = _json_field(MonitorState.objects.filter(pk=state.pk), "reference")
    if not source:
        return None
    nulls = MonitorState.objects.filter(pk=state.pk).values_list("nulls", flat=True).first() if state else None
    reference = DriftReference(source, nulls=nulls or {})
    _remember(_references, cache_key, reference)
    return reference


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
        "features": {name: [jsonable(rows[i].get(name)) for i in keep] for name in names},
        "prediction": [jsonable(round(float(v), ERROR_DECIMALS)) for v in prediction[keep]],
        "label": [int(v) for v in y[keep]],
        "error": [errors[i] for i in keep],
    }


def _drift_rows(
    deployment: Deployment, version: ModelVersion | None, reference: DriftReference, current: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], Assessment]:
    """DriftMetric fields for every column that has values in both the reference and the window,
    each judged against its calibrated null (adaptive.ml.drift.calibration), and the window's
    assessment (its dataset status and the columns that raise it)."""
    kinds = {entry["name"]: entry["type"] for entry in deployment.feature_schema}
    # Each feature, and after a nullable one its missing share ("<name> (missing)").
    columns: list[tuple[str, str, WindowColumn]] = [
        (entry.column, DriftMetric.ColumnKind.FEATURE, entry)
        for entry in feature_columns(deployment.feature_schema, current["features"])
    ]
    names = _special_column_names(set(kinds))
    for key, special_kind, value_kind in (
        (PREDICTION_COLUMN, DriftMetric.ColumnKind.PREDICTION, "numeric"),
        (LABEL_COLUMN, DriftMetric.ColumnKind.LABEL, "categorical"),
        (ERROR_COLUMN, DriftMetric.ColumnKind.ERROR, "numeric"),
    ):
        columns.append(
            (names[key], special_kind, WindowColumn(names[key], (key, ""), value_kind, current.get(key) or []))
        )
    tested = []
    column_kinds = {}
    for column, column_kind, entry in columns:
        if len(column) > MAX_NAME_LENGTH:
            # Only a deployment created before names were limited can have one: its other columns
            # are still tested (the row would not fit DriftMetric.column and fail the whole window).
            logger.warning("drift of %s: column %.40r... not tested, its name is too long", deployment.slug, column)
            continue
        tested.append(entry)
        column_kinds[column] = column_kind
    assessment = assess_window(
        reference,
        tested,
        alpha=deployment.drift_p_value,
        min_effect=deployment.drift_distance,
        alpha_status=DEFAULT_STATUS_ALPHA,
    )
    for column, reason in assessment.skipped.items():
        # A column with nothing to test (all values missing in this window, or a profile without
        # it) or values of the wrong type (external clients send their own features).
        logger.debug("drift of %s.%s not tested: %s", deployment.slug, column, reason)
    importance = (version.importance if version is not None else None) or {}
    rows = [
        {
            "column": result.column,
            "column_kind": column_kinds[result.column],
            "method": result.method,
            "statistic": result.statistic,
            "p_value": result.p_value,
            "threshold": result.threshold,
            "level": result.level,
            "severity": result.severity,
            "importance": importance.get(result.column),
            "psi": result.psi,
            "histogram": result.histogram,
        }
        for result in assessment.results
    ]
    return rows, assessment


def _alarms(
    assessment: Assessment | None,
    step: CusumStep,
    limit: float,
    signals: Mapping[str, Mapping[str, Any]],
    version: ModelVersion | None,
) -> list[dict[str, Any]]:
    """The window's alarm timeline entries, calibrated first: the drift status, the retrain trigger,
    then what the streaming detectors said (uncalibrated signals, shown for context)."""
    alarms: list[dict[str, Any]] = []
    if assessment is not None and assessment.status != "ok":
        importance = (version.importance if version is not None else None) or {}
        ranked = sorted(assessment.raising, key=lambda r: -r.severity * importance.get(r.column, 1.0))
        moved = ""
        if step.baseline is not None:
            change = step.mean_loss - step.baseline
            moved = f"; compensated log loss {step.mean_loss:.4f} ({change:+.4f} vs the version's first windows)"
        alarms.append(
            {
                "kind": "drift_status",
                "level": assessment.status,
                "calibrated": True,
                "reason": "drift in "
                + ", ".join(_describe(result, importance) for result in ranked[:3])
                + (f" and {len(ranked) - 3} more" if len(ranked) > 3 else "")
                + moved,
                "columns": [result.column for result in ranked],
            }
        )
    if step.alarm and step.baseline is not None:
        alarms.append(
            {
                "kind": "retrain_trigger",
                "level": "drift",
                "calibrated": True,
                "reason": f"compensated log loss {step.mean_loss:.4f} against {step.baseline:.4f} in the version's "
                f"first windows: CUSUM {step.statistic:.2f} over its limit {limit:.2f} "
                "(one false alarm per 500 windows)",
            }
        )
    for stream in STREAMS:
        fired = sorted(kind for kind, signal in (signals.get(stream) or {}).items() if signal.get("drift"))
        if fired:
            alarms.append(
                {
                    "kind": "detector",
                    "level": "info",
                    "calibrated": False,
                    "reason": f"{', '.join(fired)} detected a change in the {stream} error",
                }
            )
    return alarms


def _describe(result: CalibratedResult, importance: Mapping[str, float]) -> str:
    share = importance.get(result.column)
    weight = f", importance {share:.2f}" if share is not None else ""
    unit = " sd" if result.method == drift.WASSERSTEIN else ""
    return f"{result.column} ({result.method} {result.statistic:.3f}{unit}, severity {result.severity:.1f}{weight})"


def _estimates(
    version: ModelVersion | None, base: npt.NDArray[np.float64], served: npt.NDArray[np.float64], threshold: float
) -> dict[str, float | None]:
    """Label-free estimates of the window's AUC and accuracy (binary tasks with a calibrated version)."""
    if version is None or base.ndim != 1 or not version.calibration:
        return {}
    fields: dict[str, float | None] = {}
    for prefix, scores in (("base", base), ("compensated", served)):
        for name, value in cbpe.estimate(version.calibration, scores, threshold).items():
            fields[f"estimated_{prefix}_{name}"] = value
    return fields


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


def _probabilities(values: Sequence[Any], field: str) -> npt.NDArray[np.float64]:
    """[N] scores (binary) or [N, C] probability vectors (multiclass, from the ``field`` column)."""
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


def _losses(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Per event log loss (the retrain trigger's input), clipped as adaptive.ml.flips.log_loss clips."""
    p_true = np.where(y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(len(y)), y]
    return np.asarray(-np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)), dtype=np.float64)


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
