"""Ingestion: predict (store served events) and feedback (store labels), idempotent and batched.

This is the hot path. Requests are validated with one plain loop (no per-row serializer), and
each batch is written with one statement inside one transaction: a batch is all-or-nothing.
Ids make both calls idempotent: an id already stored is answered from the stored row on predict
and reported as already labeled on feedback, whether it came from a retry or a concurrent client.
"""

from __future__ import annotations

import base64
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import torch
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.limits import MAX_CATEGORY_LENGTH, MAX_FEATURES, MAX_ID_LENGTH, MAX_NAME_LENGTH, is_float32
from adaptive.models import Deployment, Event, Job, ModelVersion, Task
from adaptive.services import jobs
from adaptive.services.serving import Scored, score_external, score_hosted

_DEADLOCK_RETRIES = 3


@dataclass(frozen=True)
class Prediction:
    id: str
    score: float | list[float]
    base_score: float | list[float]
    version: int | None
    memory_revision: int | None


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    unknown: list[str]
    already_labeled: list[str]


# --- validation ---------------------------------------------------------------------------------


def _batch(payload: Any, key: str) -> list[Any]:
    if not isinstance(payload, dict):
        raise InvalidInput(key, "the body must be a JSON object with a list under " + repr(key))
    items = payload.get(key)
    if not isinstance(items, list):
        raise InvalidInput(key, "required, a list")
    if not items:
        raise InvalidInput(key, "must not be empty")
    if len(items) > settings.MAX_BATCH_ROWS:
        raise InvalidInput(key, f"{len(items)} items, over the limit of {settings.MAX_BATCH_ROWS} per batch")
    return items


def _external_id(item: dict[str, Any], index: int, seen: set[str]) -> str:
    raw = item.get("id")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidInput("id", "required, a string (or an integer)", index=index)
    value = str(raw)
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInput("id", f"must have 1 to {MAX_ID_LENGTH} characters", index=index)
    if "\x00" in value:
        raise InvalidInput("id", "must not contain NUL characters", index=index)
    if value in seen:
        raise InvalidInput("id", f"duplicate id {value!r} in this batch", index=index)
    seen.add(value)
    return value


def _timestamp(raw: Any, index: int, default: datetime) -> datetime:
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise InvalidInput("ts", "must be an ISO-8601 string", index=index)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("ts", f"not an ISO-8601 date-time: {raw[:40]!r}", index=index) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        # Stored in UTC: an offset that pushes the instant past year 1..9999 cannot be stored or read.
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("ts", f"out of range once converted to UTC: {raw[:40]!r}", index=index) from None


def parse_predict(payload: Any, received_at: datetime) -> tuple[list[str], list[datetime], list[dict[str, Any]]]:
    rows = _batch(payload, "rows")
    ids: list[str] = []
    times: list[datetime] = []
    features: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput("row", "must be an object with id, features and optional ts", index=index)
        extra = row.keys() - {"id", "ts", "features"}
        if extra:
            raise InvalidInput(sorted(extra)[0], "unknown field (allowed: id, ts, features)", index=index)
        ids.append(_external_id(row, index, seen))
        times.append(_timestamp(row.get("ts"), index, received_at))
        row_features = row.get("features")
        if not isinstance(row_features, dict):
            raise InvalidInput("features", "required, an object of feature values", index=index)
        features.append(row_features)
    return ids, times, features


def parse_feedback(payload: Any, deployment: Deployment) -> tuple[list[str], list[int]]:
    items = _batch(payload, "labels")
    lookup = _label_lookup(deployment)
    ids: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput("label", "must be an object with id and label", index=index)
        extra = item.keys() - {"id", "label"}
        if extra:
            raise InvalidInput(sorted(extra)[0], "unknown field (allowed: id, label)", index=index)
        ids.append(_external_id(item, index, seen))
        labels.append(_label_index(item.get("label"), lookup, deployment, index))
    return ids, labels


def _label_lookup(deployment: Deployment) -> dict[Any, int]:
    lookup: dict[Any, int] = {}
    for i, name in enumerate(deployment.classes):
        lookup[str(name)] = i
    if deployment.task == Task.BINARY:
        lookup.update({"0": 0, "1": 1, "false": 0, "true": 1})
    return lookup


def _label_index(raw: Any, lookup: dict[Any, int], deployment: Deployment, index: int) -> int:
    n_classes = len(deployment.classes)
    if isinstance(raw, bool):
        if deployment.task == Task.BINARY:
            return int(raw)
    elif isinstance(raw, int) or (isinstance(raw, float) and math.isfinite(raw) and raw.is_integer()):
        if 0 <= raw < n_classes:
            return int(raw)
    elif isinstance(raw, str) and raw in lookup:
        return lookup[raw]
    allowed = ", ".join(repr(c) for c in deployment.classes)
    raise InvalidInput(
        "label", f"{raw!r} is not a class: use an index 0..{n_classes - 1} or one of {allowed}", index=index
    )


# --- predict ------------------------------------------------------------------------------------


def predict(*, deployment: Deployment, payload: Any) -> list[Prediction]:
    """Score a batch with the live version, compensate it, and store one Event per new id."""
    if deployment.serving == Deployment.Serving.EXTERNAL:
        raise Conflict("this deployment's model is served elsewhere: send scores and keys to /compensate")
    if deployment.live_version_id is None:
        raise Conflict("the deployment has no live version yet: upload a version first")
    version = deployment.live_version
    assert version is not None
    received_at = timezone.now()
    ids, times, features = parse_predict(payload, received_at)
    scored = score_hosted(deployment, version, features)
    return _store(deployment, version, received_at, _EventRows(ids, times, features, scored))


def compensate_external(*, deployment: Deployment, payload: Any) -> list[Prediction]:
    """Compensate scores computed by a model served elsewhere, and store one Event per new id."""
    if deployment.serving != Deployment.Serving.EXTERNAL:
        raise Conflict("this deployment serves its own model: use /predict")
    received_at = timezone.now()
    ids, times, features, p_base, keys = parse_external(payload, deployment, received_at)
    scored = score_external(deployment, p_base, keys)
    return _store(deployment, None, received_at, _EventRows(ids, times, features, scored))


def _store(
    deployment: Deployment, version: ModelVersion | None, received_at: datetime, rows: _EventRows
) -> list[Prediction]:
    stored = _with_deadlock_retry(lambda: _insert_events(deployment, version, received_at, rows))
    scored = rows.scored
    number = version.number if version is not None else None
    out = []
    for i, external_id in enumerate(rows.ids):
        if external_id in stored:
            out.append(stored[external_id])
        else:
            out.append(
                Prediction(
                    id=external_id,
                    score=scored.vectors[i] if scored.vectors is not None else scored.scores[i],
                    base_score=scored.base_vectors[i] if scored.base_vectors is not None else scored.base_scores[i],
                    version=number,
                    memory_revision=scored.revision,
                )
            )
    return out


def parse_external(
    payload: Any, deployment: Deployment, received_at: datetime
) -> tuple[list[str], list[datetime], list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """Rows of ``{id, ts?, score | proba, key, features?}`` for an external deployment."""
    rows = _batch(payload, "rows")
    multiclass = deployment.task == Task.MULTICLASS
    n_classes = len(deployment.classes)
    dim = deployment.key_dim or 0
    ids: list[str] = []
    times: list[datetime] = []
    features: list[dict[str, Any]] = []
    scores: list[Any] = []
    keys: list[list[float]] = []
    seen: set[str] = set()
    score_field = "proba" if multiclass else "score"
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput("row", f"must be an object with id, {score_field} and key", index=index)
        extra = row.keys() - {"id", "ts", score_field, "key", "features"}
        if extra:
            allowed = f"id, ts, {score_field}, key, features"
            raise InvalidInput(sorted(extra)[0], f"unknown field (allowed: {allowed})", index=index)
        ids.append(_external_id(row, index, seen))
        times.append(_timestamp(row.get("ts"), index, received_at))
        features.append(_free_features(row.get("features", {}), index))
        if multiclass:
            scores.append(_probability_vector(row.get("proba"), n_classes, index))
        else:
            scores.append(_probability(row.get("score"), "score", index))
        keys.append(_key_vector(row.get("key"), dim, index))
    return ids, times, features, torch.tensor(scores, dtype=torch.float32), torch.tensor(keys, dtype=torch.float32)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _free_features(value: Any, index: int) -> dict[str, Any]:
    """An external row's features, stored for drift and retraining: checked like a hosted row's
    values are, without a schema (names, finite float32 numbers, short categories, or null)."""
    if not isinstance(value, dict):
        raise InvalidInput("features", "must be an object when given", index=index)
    if len(value) > MAX_FEATURES:
        raise InvalidInput("features", f"at most {MAX_FEATURES} features", index=index)
    for name, item in value.items():
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInput("features", f"feature names have at most {MAX_NAME_LENGTH} characters", index=index)
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if len(item) > MAX_CATEGORY_LENGTH:
                raise InvalidInput(name, f"categories have at most {MAX_CATEGORY_LENGTH} characters", index=index)
        elif not is_float32(item):
            raise InvalidInput(name, "must be a finite float32 number, a string, a boolean or null", index=index)
    return value


def _probability(value: Any, field: str, index: int) -> float:
    if not _finite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(field, "required, a probability in [0, 1]", index=index)
    return float(value)


def _probability_vector(value: Any, n_classes: int, index: int) -> list[float]:
    if not isinstance(value, list) or len(value) != n_classes:
        raise InvalidInput("proba", f"required, a list of {n_classes} class probabilities", index=index)
    vector = [_probability(v, "proba", index) for v in value]
    if abs(sum(vector) - 1.0) > 1e-3:
        raise InvalidInput("proba", f"must sum to 1 (sums to {sum(vector):.4f})", index=index)
    return vector


def _key_vector(value: Any, dim: int, index: int) -> list[float]:
    if not isinstance(value, list) or len(value) != dim:
        raise InvalidInput("key", f"required, a list of {dim} numbers (the deployment's key_dim)", index=index)
    if not all(is_float32(v) for v in value):
        raise InvalidInput("key", "must contain only numbers that are finite in float32 (|x| <= 3.4e38)", index=index)
    return value


@dataclass
class _EventRows:
    ids: list[str]
    times: list[datetime]
    features: list[dict[str, Any]]
    scored: Scored


_EVENT_COLUMNS = (
    "deployment_id, external_id, event_time, received_at, features, version_id, base_score, score, base_proba, proba, "
    "key, served_revision, full_score, full_proba"
)


def _insert_events(
    deployment: Deployment, version: ModelVersion | None, received_at: datetime, rows: _EventRows
) -> dict[str, Prediction]:
    """Insert new events; return the stored prediction of every id that already existed.

    On PostgreSQL the batch is one statement, atomic by itself, so it runs without a transaction
    around it: BEGIN and COMMIT were two of a single-row predict's four round trips. An id that
    conflicts was committed (ON CONFLICT waits for a concurrent writer), so reading it afterwards
    finds it. Inside a caller's transaction it takes a savepoint, so that a row the database
    refuses (a 400) does not abort the caller's transaction.
    """
    table = Event._meta.db_table
    if connection.vendor == "postgresql":
        savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
        with savepoint, connection.cursor() as cursor:
            existing_ids = _insert_events_postgresql(cursor, table, deployment, version, received_at, rows)
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            existing_ids = _insert_events_sqlite(cursor, table, deployment, version, received_at, rows)
    if not existing_ids:
        return {}
    return _stored_predictions(deployment, existing_ids)


def _insert_events_postgresql(
    cursor: Any,
    table: str,
    deployment: Deployment,
    version: ModelVersion | None,
    received_at: datetime,
    rows: _EventRows,
) -> list[str]:
    """One statement for the whole batch, conflicts skipped; returns the ids that already existed.

    The batch travels as one JSON document unpacked by ``jsonb_to_recordset``: building a
    Postgres ``text[]`` of 500 feature documents costs psycopg ~12 ms of Python escaping per
    batch, the JSON document ~1 ms (bench/ingest.py). Rows go in id order so that concurrent
    overlapping batches take their locks in the same order.
    """
    records = []
    scored = rows.scored
    for i in sorted(range(len(rows.ids)), key=rows.ids.__getitem__):
        record: dict[str, Any] = {
            "id": rows.ids[i],
            "ts": rows.times[i],
            "f": rows.features[i],
            "b": scored.base_scores[i],
            "s": scored.scores[i],
            "k": base64.b64encode(scored.keys[i]).decode(),
        }
        if scored.base_vectors is not None:
            record["bp"] = scored.base_vectors[i]
        if scored.vectors is not None:
            record["p"] = scored.vectors[i]
        if scored.full_scores is not None:
            record["fs"] = scored.full_scores[i]
        if scored.full_vectors is not None:
            record["fp"] = scored.full_vectors[i]
        records.append(record)
    cursor.execute(
        f"INSERT INTO {table} ({_EVENT_COLUMNS}) "
        "SELECT %s, t.id, t.ts, %s, t.f, %s, t.b, t.s, t.bp, t.p, decode(t.k, 'base64'), %s, t.fs, t.fp "
        "FROM jsonb_to_recordset(%s::jsonb) "
        "AS t(id text, ts timestamptz, f jsonb, b float8, s float8, bp jsonb, p jsonb, k text, fs float8, fp jsonb) "
        "ON CONFLICT (deployment_id, external_id) DO NOTHING RETURNING external_id",
        [
            deployment.pk,
            received_at,
            version.pk if version is not None else None,
            scored.revision,
            orjson.dumps(records).decode(),
        ],
    )
    inserted = {r[0] for r in cursor.fetchall()}
    return [i for i in rows.ids if i not in inserted]


def _insert_events_sqlite(
    cursor: Any,
    table: str,
    deployment: Deployment,
    version: ModelVersion | None,
    received_at: datetime,
    rows: _EventRows,
) -> list[str]:
    """executemany of the new rows; returns the ids that already existed.

    The transaction holds SQLite's write lock from BEGIN (IMMEDIATE), so reading the existing
    ids first cannot race another writer.
    """

    def dump(value: Any) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    existing_ids = _existing_ids(cursor, table, deployment.pk, rows.ids)
    skip = set(existing_ids)
    adapt = connection.ops.adapt_datetimefield_value
    received = adapt(received_at)
    scored = rows.scored
    version_id = version.pk if version is not None else None
    cursor.executemany(
        f"INSERT INTO {table} ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (deployment_id, external_id) DO NOTHING",
        [
            (
                deployment.pk,
                rows.ids[i],
                adapt(rows.times[i]),
                received,
                dump(rows.features[i]),
                version_id,
                scored.base_scores[i],
                scored.scores[i],
                dump(scored.base_vectors[i]) if scored.base_vectors is not None else None,
                dump(scored.vectors[i]) if scored.vectors is not None else None,
                scored.keys[i],
                scored.revision,
                scored.full_scores[i] if scored.full_scores is not None else None,
                dump(scored.full_vectors[i]) if scored.full_vectors is not None else None,
            )
            for i in range(len(rows.ids))
            if rows.ids[i] not in skip
        ],
    )
    return existing_ids


def _existing_ids(cursor: Any, table: str, deployment_id: int, ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(ids), 900):  # stay under SQLite's bound-variable limit
        chunk = ids[start : start + 900]
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(
            f"SELECT external_id FROM {table} WHERE deployment_id = %s AND external_id IN ({marks})",
            [deployment_id, *chunk],
        )
        found.extend(r[0] for r in cursor.fetchall())
    return found


def _stored_predictions(deployment: Deployment, ids: list[str]) -> dict[str, Prediction]:
    stored = {}
    fields = ("external_id", "score", "base_score", "proba", "base_proba", "version__number", "served_revision")
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        for ext, score, base, proba, base_proba, number, revision in Event.objects.filter(
            deployment=deployment, external_id__in=chunk
        ).values_list(*fields):
            stored[ext] = Prediction(
                id=ext,
                score=proba if proba is not None else score,
                base_score=base_proba if base_proba is not None else base,
                version=number,
                memory_revision=revision,
            )
    return stored


# --- feedback -----------------------------------------------------------------------------------


def record_feedback(*, deployment: Deployment, payload: Any) -> FeedbackResult:
    """Store labels for known, unlabeled events; the first label of an event wins.

    Accepted labels queue a compensation update (one queued per deployment at a time), which moves
    them into the error memory once the labels are committed.
    """
    ids, labels = parse_feedback(payload, deployment)
    now = timezone.now()
    result: FeedbackResult = _with_deadlock_retry(lambda: _update_labels(deployment, ids, labels, now))
    if result.accepted:
        jobs.queue_once(deployment, Job.Kind.COMPENSATION)
    return result


def _update_labels(deployment: Deployment, ids: list[str], labels: list[int], now: datetime) -> FeedbackResult:
    table = Event._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            order = sorted(range(len(ids)), key=ids.__getitem__)
            cursor.execute(
                f"UPDATE {table} AS e SET label = t.label, labeled_at = %s "
                "FROM unnest(%s::text[], %s::int2[]) AS t(id, label) "
                # coalesce(): with stale statistics claiming every event is labeled, a plain
                # "label IS NULL" made the planner expect one row and scan the table (bench/ingest.py).
                "WHERE e.deployment_id = %s AND e.external_id = t.id AND coalesce(e.label, -1) = -1 "
                "RETURNING e.external_id",
                [now, [ids[i] for i in order], [labels[i] for i in order], deployment.pk],
            )
            accepted = {r[0] for r in cursor.fetchall()}
            rest = [i for i in ids if i not in accepted]
            labeled = set(_existing_ids(cursor, table, deployment.pk, rest)) if rest else set()
        else:
            # SQLite holds the write lock for the whole transaction (IMMEDIATE): no race here.
            state = _label_state(cursor, table, deployment.pk, ids)
            todo = [(lab, ext) for ext, lab in zip(ids, labels, strict=True) if state.get(ext) is False]
            stamp = connection.ops.adapt_datetimefield_value(now)
            cursor.executemany(
                f"UPDATE {table} SET label = %s, labeled_at = %s "
                "WHERE deployment_id = %s AND external_id = %s AND label IS NULL",
                [(lab, stamp, deployment.pk, ext) for lab, ext in todo],
            )
            accepted = {ext for _, ext in todo}
            labeled = {ext for ext, is_labeled in state.items() if is_labeled}
    return FeedbackResult(
        accepted=len(accepted),
        unknown=[i for i in ids if i not in accepted and i not in labeled],
        already_labeled=[i for i in ids if i in labeled],
    )


def _label_state(cursor: Any, table: str, deployment_id: int, ids: list[str]) -> dict[str, bool]:
    state: dict[str, bool] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(
            f"SELECT external_id, label IS NOT NULL FROM {table} WHERE deployment_id = %s AND external_id IN ({marks})",
            [deployment_id, *chunk],
        )
        state.update((ext, bool(flag)) for ext, flag in cursor.fetchall())
    return state


def _with_deadlock_retry(write: Any) -> Any:
    """Run a write transaction, retrying a few times when PostgreSQL breaks a deadlock.

    Overlapping concurrent batches are written in id order, which avoids most deadlocks; a
    retry covers the rest. Any other database error propagates (the API answers 503).
    """
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return write()
        except DatabaseError as exc:  # OperationalError included
            cause = getattr(exc, "__cause__", None)
            sqlstate = getattr(cause, "sqlstate", None)
            if sqlstate not in ("40P01", "40001") or attempt == _DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")
