"""The slow loop's training half: retrain requests and the continual-training round.

``request_retrain`` queues a retrain Job (the database allows one queued or running retrain per
deployment: constraint one_active_retrain_per_deployment) and audits who asked and why.
``run_retrain`` is the job's work: it continues training the live version on the
deployment's labeled events and registers the result as a *candidate* version, never live. (The
candidate's error memory is warmed by adaptive.services.memory.warm: by the evaluation when it
passes its gate, and in any case by the promotion, before the switch.)

The data of a round, all read under one labeled-at cutoff so that labels arriving meanwhile
change nothing. The cutoff is the time of the *request* (the job's ``created_at``), not of the
start: a retrain asked for at 60% of a stream trains on the labels known then, however long it
waited in the queue. The round's data:

* the newest ``holdout_fraction`` of the labeled events by event time is the *holdout*: never
  trained on, and the exact set the candidate's evaluation scores (its bounds are stored in the
  candidate's ``metrics["holdout"]``; labels never change once set, so the bounds fix the set);
* the ``recent`` labeled events just before it are the new data;
* a seeded random sample of the older ones is the replay (data accumulates, it is never replaced).

Features are encoded with the live version's preprocessing: the numeric standardisation is kept
fixed, so inputs keep their meaning. Vocabularies grow unless ``grow_vocab`` is false: a category the
live version does not know that the round's training rows (recent and replay) show at least
``vocab_min_count`` times is appended to its vocabulary, and the live model's embedding tables get a
row for it, a copy of the unknown bucket that scored it so far (adaptive.ml.vocab). The extended model
scores every event exactly as the live one, so the round starts from the live version's predictions
and distils from them unchanged, and the candidate's flip report measures what training changed.
Without growth a user, product or route first seen after the first version would stay in the
unknown bucket in every later version. The candidate keeps the grown preprocessing; its metrics say
how many values each column gained (``metrics["vocab_growth"]``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import torch
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from adaptive import artifacts, runtime
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.architectures import build_model
from adaptive.ml.compensation import fit_key_mean
from adaptive.ml.jsonsafe import jsonable
from adaptive.ml.preprocessing import (
    FeatureEncoder,
    FeatureSchema,
    RowError,
    TabularBatch,
    input_spec,
    parse_schema,
)
from adaptive.ml.training import Progress, TrainConfig, TrainResult, continual_train, resolve_device
from adaptive.ml.vocab import VocabGrowth, extend_model, grow_vocabularies
from adaptive.ml.weights import load_into, state_dict_to_bytes
from adaptive.models import AuditEntry, Deployment, Event, Job, ModelVersion
from adaptive.services import audit, dispatch, profiling

# A round with fewer labeled events than this cannot train and evaluate anything meaningful.
MIN_LABELED_EVENTS: Final = 200
# Job progress, heartbeat and message are written at most this often (seconds); each write is also
# the cancel check. Tests lower it to see every epoch.
PROGRESS_INTERVAL: Final = 0.5
# Events read per query (ids in an IN list stay under SQLite's parameter limit).
READ_CHUNK: Final = 900
# At most this many curve points are stored with a version (long rounds are thinned evenly).
MAX_CURVE_POINTS: Final = 200
# The share of the job's progress bar that training takes; loading data and saving take the rest.
TRAINING_SPAN: Final = 0.9
# The candidate's profile comes from its held-out rows when at least this many were held out.
MIN_HELD_OUT_PROFILE: Final = 500
# A version's notes name at most this many grown columns (the metrics hold them all).
MAX_NOTED_COLUMNS: Final = 10


class Cancelled(Exception):
    """The job stopped being ``running`` (cancelled, or failed by the stale-job sweep) mid-round."""


class RetrainError(Exception):
    """The round cannot produce a candidate (too little data, a stored row that no longer encodes)."""


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    """One retrain parameter: its type, default and bounds (``None``: unbounded, or not nullable)."""

    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    nullable: bool = False


# The retrain knobs an operator may turn per request; everything else is TrainConfig's default.
RETRAIN_PARAMS: Final[dict[str, _Param]] = {
    "epochs": _Param(int, 10, 1, 10_000),
    "lr": _Param(float, 1e-3, 0.0, 1.0, low_open=True),
    "batch_size": _Param(int, 256, 1, 65_536),
    # Focal distillation against the live model (PCT): on by default, it cuts negative flips.
    "distill": _Param(bool, True),
    "temperature": _Param(float, 2.0, 0.0, 100.0, low_open=True),
    "distill_weight": _Param(float, 0.2, 0.0, 100.0),
    "half_finetune": _Param(bool, False),
    # Replay rows per new training row, sampled from the labeled events older than the new data.
    "replay_fraction": _Param(float, 0.5, 0.0, 10.0),
    # How many of the newest labeled events (before the holdout) are the new data.
    "recent": _Param(int, 5000, 1, 10_000_000),
    # The newest share of the labeled events held out for the evaluation, capped at holdout_max events.
    "holdout_fraction": _Param(float, 0.2, 0.0, 0.5, low_open=True),
    "holdout_max": _Param(int, 20_000, 1, 1_000_000),
    # Early stopping on the validation split of the new data; null trains every epoch.
    "patience": _Param(int, 3, 1, 10_000, nullable=True),
    "seed": _Param(int, 0, 0, 2**31 - 1),
    # Append the categories the round's training rows show to the vocabularies (module docstring).
    "grow_vocab": _Param(bool, True),
    # A new category needs this many training rows in the round: below it, its own embedding row
    # would be fitted to one or two labels (the same floor bench/stream_replay.py fits first vocabs with).
    "vocab_min_count": _Param(int, 3, 1, 1_000_000),
    # At most this many new categories per column and round, the most frequent first.
    "vocab_max_new": _Param(int, 10_000, 1, 1_000_000),
}


def validate_params(params: Any) -> dict[str, Any]:
    """The full parameter set of a round: the request's values over the defaults, each checked."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput("params", "must be a JSON object")
    unknown = sorted(set(params) - set(RETRAIN_PARAMS))
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}", f"unknown parameter; allowed: {', '.join(RETRAIN_PARAMS)}")
    resolved: dict[str, Any] = {}
    for name, spec in RETRAIN_PARAMS.items():
        resolved[name] = _checked(f"params.{name}", params.get(name, spec.default), spec)
    return resolved


def _checked(field: str, value: Any, spec: _Param) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise InvalidInput(field, "must not be null")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise InvalidInput(field, "must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a number")
    if spec.kind is int and not (isinstance(value, int) or float(value).is_integer()):
        raise InvalidInput(field, "must be an integer")
    number: int | float = int(value) if spec.kind is int else float(value)
    if not math.isfinite(number):
        raise InvalidInput(field, "must be finite")
    too_low = spec.low is not None and (number <= spec.low if spec.low_open else number < spec.low)
    too_high = spec.high is not None and number > spec.high
    if too_low or too_high:
        low = "(" if spec.low_open else "["
        raise InvalidInput(field, f"must be in {low}{spec.low:g}, {spec.high:g}]")
    return number


def request_retrain(
    *, deployment: Deployment, actor: Any, reason: str, params: Any = None, label: str | None = None
) -> Job:
    """Queue a retrain of the deployment's live version; its task is sent once the caller commits.

    ``label`` names a non-user actor in the audit log (``"policy"`` for automatic retrains).
    Raises ``InvalidInput`` for a bad parameter and ``Conflict`` when the deployment cannot be
    retrained or a retrain is already queued or running.
    """
    resolved = validate_params(params)
    with transaction.atomic():
        # No-key lock: it serialises retrain requests without blocking the inserts of events and
        # jobs that reference the deployment (see adaptive.services.memory).
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        _check_retrainable(locked)
        try:
            # A savepoint: the constraint's error must not break the surrounding transaction.
            with transaction.atomic():
                job = Job.objects.create(
                    deployment=locked,
                    kind=Job.Kind.RETRAIN,
                    status=Job.Status.QUEUED,
                    params=resolved,
                    requested_by=audit.user_of(actor),
                    message=f"queued: retrain of v{locked.live_version.number}" if locked.live_version else "",
                    celery_task_id=dispatch.new_task_id(),
                )
        except IntegrityError:
            raise Conflict("a retrain is already queued or running") from None
        dispatch.send(job)
        audit.record(
            action=AuditEntry.Action.RETRAIN,
            deployment=locked,
            actor=actor,
            label=label,
            reason=reason,
            from_version=locked.live_version,
            details={"job": job.pk, "params": resolved},
        )
    return job


def _check_retrainable(deployment: Deployment) -> None:
    if deployment.serving == Deployment.Serving.EXTERNAL:
        raise Conflict("this deployment's model is served elsewhere: the control room cannot retrain it")
    if deployment.status == Deployment.Status.ARCHIVED:
        raise Conflict("the deployment is archived")
    if deployment.live_version_id is None:
        raise Conflict("the deployment has no live version to continue training from")


# --- progress -------------------------------------------------------------------------------------


class JobReporter:
    """Writes a running job's progress, message and heartbeat, throttled; doubles as the cancel check.

    Every write is a conditional UPDATE on ``status = running``: when it matches no row the job was
    cancelled (or failed by the stale sweep, which means someone else already gave up on this run),
    and ``Cancelled`` stops the round where it is.
    """

    def __init__(self, job: Job, *, epochs: int, interval: float | None = None) -> None:
        self.job_id = job.pk
        self.epochs = epochs
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self._last = -math.inf

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and progress.fraction < 1.0:
            return
        self.write(
            TRAINING_SPAN * progress.fraction,
            f"epoch {progress.epoch}/{self.epochs}, loss {progress.loss:.4f}",
        )

    def write(self, fraction: float, message: str) -> None:
        updated = Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(
            progress=min(max(fraction, 0.0), 1.0), message=message[:2000], heartbeat_at=timezone.now()
        )
        self._last = time.monotonic()
        if not updated:
            status = Job.objects.filter(pk=self.job_id).values_list("status", flat=True).first()
            raise Cancelled(f"job {self.job_id} is no longer running (status {status})")


@contextmanager
def heartbeat(job_id: int) -> Iterator[None]:
    """Keep a running job's heartbeat fresh from a thread while the block runs.

    Progress is only reported between epochs, and one epoch over a large data set on a CPU can take
    longer than the stale-job threshold: without this the sweep would fail a job whose worker is
    merely busy. The heartbeat says "the process is alive", progress says how far it got. The beat
    runs every quarter of ``STALE_JOB_SECONDS``; a killed worker takes its thread with it.
    """
    interval = max(settings.STALE_JOB_SECONDS / 4, 1.0)
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# --- the round ----------------------------------------------------------------------------------


@dataclass
class _Rows:
    """Labeled events read for training: ids, times, feature rows and class indexes, oldest first."""

    ids: list[int]
    times: list[datetime]
    features: list[dict[str, Any]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def run_retrain(job: Job, progress: Callable[[Progress], None] | None = None) -> ModelVersion:
    """Train a candidate from the live version (the retrain job's work); returns the new version.

    The job must be ``running`` (claimed). ``progress``, when given, is called after each epoch,
    after the job row was updated. Raises ``Cancelled`` when the job stops being running before
    the version is written, and ``RetrainError`` when there is not enough data; neither leaves a
    version behind.
    """
    params = validate_params(job.params)
    if job.deployment_id is None:
        raise RetrainError(f"job {job.pk} names no deployment")
    deployment = Deployment.objects.select_related("live_version").get(pk=job.deployment_id)
    _check_retrainable(deployment)
    live = deployment.live_version
    assert live is not None
    reporter = JobReporter(job, epochs=params["epochs"])
    reporter.write(0.0, f"reading events labeled before the request (training from v{live.number})")
    with heartbeat(job.pk):
        return _train_candidate(job, deployment, params, reporter, progress)


def _train_candidate(
    job: Job,
    deployment: Deployment,
    params: dict[str, Any],
    reporter: JobReporter,
    progress: Callable[[Progress], None] | None,
) -> ModelVersion:
    """The round's steps: choose the data, train, build the candidate's artifacts, register it."""
    live = deployment.live_version
    assert live is not None
    data = _round_data(job, deployment, params)
    loaded = runtime.load_version(deployment, live)
    schema = parse_schema(deployment.feature_schema)
    growth = _grow(schema, live.preprocessing, data, params)
    model, encoder = loaded.model, loaded.encoder
    if growth is not None and growth.grew:
        # A new model: the loaded one is the cached copy that serves the live version.
        model = extend_model(loaded.model, schema, live.preprocessing, growth)
        encoder = FeatureEncoder(schema, growth.stats)
    preprocessing = growth.stats if growth is not None else live.preprocessing
    new_batch, new_labels = _encode(encoder, data.recent)
    replay = _encode(encoder, data.replay) if len(data.replay) else None

    def on_epoch(point: Progress) -> None:
        reporter(point)
        if progress is not None:
            progress(point)

    reporter.write(0.0, f"training on {len(data.recent)} recent + {len(data.replay)} replayed events")
    config = _train_config(params, replay_size=len(data.replay))
    result = continual_train(model, (new_batch, new_labels), replay, config, progress=on_epoch)

    reporter.write(TRAINING_SPAN, "saving the candidate")
    candidate = build_model(live.architecture, live.config, input_spec(schema, preprocessing), deployment.n_outputs)
    load_into(candidate, result.state_dict)
    candidate.eval()
    key_mean = fit_key_mean(candidate, _concat(new_batch, replay[0] if replay is not None else None))
    with torch.inference_mode():
        recent_proba = candidate.predict_proba(new_batch)
    weights = state_dict_to_bytes(candidate)
    relative, digest = artifacts.store_weights(deployment.slug, weights)
    times = data.recent.times + data.replay.times
    metrics = _metrics(result, holdout=data.holdout, n_labeled=data.n_labeled)
    notes = f"retrained from v{live.number} by job {job.pk}"
    if growth is not None:
        metrics["vocab_growth"] = {"min_count": params["vocab_min_count"], "added": growth.counts()}
        notes += _growth_note(growth)
    version = _register_candidate(
        job,
        deployment,
        preprocessing=preprocessing,
        notes=notes,
        weights_path=relative,
        weights_sha256=digest,
        weights_size=len(weights),
        key_mean=[float(v) for v in key_mean.tolist()],
        profile=_profile(data.recent, recent_proba, new_labels, result.validation_index),
        data_start=min(times),
        data_end=max(times),
        metrics=metrics,
    )
    return profiling.describe_version(version)


def _grow(
    schema: FeatureSchema, parent: dict[str, Any], data: _RoundData, params: dict[str, Any]
) -> VocabGrowth | None:
    """The live version's preprocessing with the round's new categories appended (None: not asked).

    Counted over the rows the candidate trains on, recent and replay, never the holdout: a category
    only the holdout shows would get a row that no training step has moved.
    """
    if not params["grow_vocab"]:
        return None
    ids = data.recent.ids + data.replay.ids
    try:
        return grow_vocabularies(
            schema,
            parent,
            data.recent.features + data.replay.features,
            min_count=params["vocab_min_count"],
            max_new=params["vocab_max_new"],
        )
    except RowError as exc:
        raise RetrainError(f"event {ids[exc.index]} no longer encodes: {exc.field}: {exc.reason}") from exc


def _growth_note(growth: VocabGrowth) -> str:
    """``"; vocabularies grown: user_id +412, movie_id +96"`` for the version's notes ("" when none grew)."""
    grown = [f"{name} +{n}" for name, n in growth.counts().items() if n]
    if not grown:
        return ""
    more = f" and {len(grown) - MAX_NOTED_COLUMNS} more columns" if len(grown) > MAX_NOTED_COLUMNS else ""
    return "; vocabularies grown: " + ", ".join(grown[:MAX_NOTED_COLUMNS]) + more


@dataclass
class _RoundData:
    """What a round trains on: recent rows and a replay of older ones; the newest are held out."""

    n_labeled: int
    holdout: dict[str, Any]
    recent: _Rows
    replay: _Rows


def _round_data(job: Job, deployment: Deployment, params: dict[str, Any]) -> _RoundData:
    """Hold out the newest labeled events, take the next ``recent`` and a seeded replay of the rest."""
    # The time of the request: labels that arrived while the job waited in the queue are not its data.
    cutoff = job.created_at
    labeled = Event.objects.filter(deployment=deployment, label__isnull=False, labeled_at__lte=cutoff)
    newest_first = labeled.order_by("-event_time", "-id")
    n_labeled = labeled.count()
    if n_labeled < MIN_LABELED_EVENTS:
        raise RetrainError(
            f"only {n_labeled} labeled events; a retrain needs at least {MIN_LABELED_EVENTS} "
            "(send more feedback, then retry)"
        )
    n_holdout = min(max(round(params["holdout_fraction"] * n_labeled), 1), params["holdout_max"])
    holdout_bounds = newest_first.values_list("id", "event_time")
    newest, oldest = holdout_bounds[0], holdout_bounds[n_holdout - 1]
    holdout = {
        "from_time": oldest[1].isoformat(),
        "from_id": oldest[0],
        "to_time": newest[1].isoformat(),
        "to_id": newest[0],
        "labeled_before": cutoff.isoformat(),
        "n": n_holdout,
    }
    recent = _reversed(_read_rows(newest_first[n_holdout : n_holdout + params["recent"]]))
    older = newest_first[n_holdout + len(recent) :]
    replay = _replay_sample(older, round(params["replay_fraction"] * len(recent)), params["seed"])
    return _RoundData(n_labeled=n_labeled, holdout=holdout, recent=recent, replay=replay)


def _train_config(params: dict[str, Any], *, replay_size: int) -> TrainConfig:
    return TrainConfig(
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        lr=params["lr"],
        min_lr=min(TrainConfig.min_lr, params["lr"]),
        replay_size=replay_size,
        distillation="focal" if params["distill"] else None,
        temperature=params["temperature"],
        distill_weight=params["distill_weight"],
        half_finetune=params["half_finetune"],
        patience=params["patience"],
        seed=params["seed"],
        device=str(resolve_device(settings.ADAPTIVE_DEVICE)),
    )


def _register_candidate(job: Job, deployment: Deployment, **fields: Any) -> ModelVersion:
    """Write the candidate version, unless the job stopped running while it trained."""
    live = deployment.live_version
    assert live is not None
    with transaction.atomic():
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        # Checked under the lock, after the expensive part: a job cancelled (or swept as stale)
        # while it trained must not leave a version behind.
        status = Job.objects.select_for_update().values_list("status", flat=True).get(pk=job.pk)
        if status != Job.Status.RUNNING:
            raise Cancelled(f"job {job.pk} is no longer running (status {status})")
        number = (ModelVersion.objects.filter(deployment=locked).aggregate(n=Max("number"))["n"] or 0) + 1
        return ModelVersion.objects.create(
            deployment=locked,
            number=number,
            parent=live,
            architecture=live.architecture,
            config=live.config,
            threshold=live.threshold,
            status=ModelVersion.Status.CANDIDATE,
            origin=ModelVersion.Origin.RETRAINED,
            origin_job=job,
            created_by=job.requested_by,
            **fields,
        )


def _read_rows(queryset: QuerySet[Event]) -> _Rows:
    rows = _Rows([], [], [], [])
    for pk, event_time, features, label in queryset.values_list("id", "event_time", "features", "label").iterator(
        chunk_size=2000
    ):
        rows.ids.append(pk)
        rows.times.append(event_time)
        rows.features.append(features)
        rows.labels.append(int(label or 0))  # the querysets here only hold labeled events
    return rows


def _reversed(rows: _Rows) -> _Rows:
    return _Rows(rows.ids[::-1], rows.times[::-1], rows.features[::-1], rows.labels[::-1])


def _replay_sample(older: QuerySet[Event], size: int, seed: int) -> _Rows:
    """A uniform sample of ``size`` older labeled events (all of them if fewer), fixed by ``seed``.

    Only the ids of the older events are read in full (8 bytes each as an array); the features are
    read for the sample alone.
    """
    if size <= 0:
        return _Rows([], [], [], [])
    ids = np.fromiter(older.values_list("id", flat=True).iterator(chunk_size=20_000), dtype=np.int64)
    if len(ids) > size:
        ids = np.random.default_rng(seed).choice(ids, size=size, replace=False)
    chosen = sorted(int(i) for i in ids)
    rows = _Rows([], [], [], [])
    base = Event.objects.order_by("event_time", "id")
    for start in range(0, len(chosen), READ_CHUNK):
        part = _read_rows(base.filter(pk__in=chosen[start : start + READ_CHUNK]))
        rows.ids += part.ids
        rows.times += part.times
        rows.features += part.features
        rows.labels += part.labels
    return rows


def _encode(encoder: FeatureEncoder, rows: _Rows) -> tuple[TabularBatch, torch.Tensor]:
    try:
        batch = encoder.encode(rows.features)
    except RowError as exc:
        raise RetrainError(f"event {rows.ids[exc.index]} no longer encodes: {exc.field}: {exc.reason}") from exc
    return batch, torch.tensor(rows.labels, dtype=torch.int64)


def _concat(first: TabularBatch, second: TabularBatch | None) -> TabularBatch:
    if second is None:
        return first
    return TabularBatch(torch.cat([first.numeric, second.numeric]), torch.cat([first.categorical, second.categorical]))


def _profile(rows: _Rows, proba: torch.Tensor, labels: torch.Tensor, held_out: torch.Tensor) -> dict[str, Any]:
    """The drift reference of the candidate (``ModelVersion.profile``): its recent data's held-out
    rows (those that chose the epoch), where the model is as confident as on new traffic, so that
    the calibration fitted on the profile holds; all recent rows when fewer than
    :data:`MIN_HELD_OUT_PROFILE` were held out (a small reference makes drift tests weak)."""
    try:
        from adaptive.services.monitoring import training_profile
    except ImportError:  # pragma: no cover - monitoring (windows and drift) is a separate module
        return {}
    features = rows.features
    if len(held_out) >= MIN_HELD_OUT_PROFILE:
        index = held_out.sort().values
        features = [features[i] for i in index.tolist()]
        proba, labels = proba[index], labels[index]
    profile: dict[str, Any] = training_profile(features, proba.double().numpy(), labels.numpy())
    return profile


def _metrics(result: TrainResult, *, holdout: dict[str, Any], n_labeled: int) -> dict[str, Any]:
    """What a version carries about its round: data sizes, the curve, the best epoch's validation."""
    curve = result.curve
    if len(curve) > MAX_CURVE_POINTS:
        keep = sorted({round(i * (len(curve) - 1) / (MAX_CURVE_POINTS - 1)) for i in range(MAX_CURVE_POINTS)})
        curve = [curve[i] for i in keep]
    best = next((p for p in result.curve if p["epoch"] == result.best_epoch), result.curve[-1])
    return jsonable(
        {
            "n_labeled": n_labeled,
            "n_train": result.n_train,
            "n_replay": result.n_replay,
            "n_validation": result.n_validation,
            "holdout": holdout,
            "epochs_run": len(result.curve),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "train_loss": result.curve[-1]["train_loss"],
            "val_loss": best.get("val_loss"),
            "val_auc": best.get("val_auc"),
            "val_accuracy": best.get("val_accuracy"),
            "device": result.device,
            "seconds": result.seconds_data + result.seconds_compute,
            "samples_per_second": result.samples_per_second,
            "curve": [
                {k: p.get(k) for k in ("epoch", "train_loss", "val_loss", "val_auc", "val_accuracy", "lr")}
                for p in curve
            ],
            "config": {k: v for k, v in result.config.items() if k != "device"},
        }
    )


def holdout_events(deployment: Deployment, holdout: dict[str, Any]) -> QuerySet[Event]:
    """The labeled events a round held out (``metrics["holdout"]`` of its candidate), oldest first."""
    from_time = datetime.fromisoformat(holdout["from_time"])
    to_time = datetime.fromisoformat(holdout["to_time"])
    after_start = Q(event_time__gt=from_time) | Q(event_time=from_time, id__gte=holdout["from_id"])
    before_end = Q(event_time__lt=to_time) | Q(event_time=to_time, id__lte=holdout["to_id"])
    return (
        Event.objects.filter(
            deployment=deployment,
            label__isnull=False,
            labeled_at__lte=datetime.fromisoformat(holdout["labeled_before"]),
        )
        .filter(after_start & before_end)
        .order_by("event_time", "id")
    )
