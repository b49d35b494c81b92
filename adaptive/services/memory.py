"""The persisted error memory: labeled events become ErrorSamples, and the revision moves on.

``apply_pending`` is the compensation-update job's work. In one transaction, under a lock on the
deployment row, it turns labeled events whose label is not yet in the memory into ErrorSamples
(the key computed at predict time, the label, the base score), marks those events with the new
revision, evicts the oldest samples past the capacity, and bumps ``Deployment.memory_revision``.
Serving processes see the new revision on their next request and read only the new samples
(adaptive.runtime). Running it twice is harmless: the second run finds nothing pending.

``warm`` gives a version that has not served (a candidate about to be promoted) the memory it
would hold had it served: the newest labeled events, re-embedded with its own model (keys belong to
the version that computed them). Promotion calls it before the switch (adaptive.services.releases),
so the first prediction of a new live version is already compensated.

Locks: every memory write locks the deployment row ``FOR NO KEY UPDATE`` (``no_key=True``). The
lock orders memory writes (one revision at a time) but does not conflict with the ``FOR KEY SHARE``
that PostgreSQL's foreign-key check takes when an Event or a Job referencing the deployment is
inserted, so predict and feedback never wait for a memory write. (A plain ``FOR UPDATE`` blocked
those inserts for the whole transaction: a 15 s warm-up stalled every client of the deployment.)
Nothing slow happens under the lock: the warm-up reads and embeds its events first, then writes in
batches (10k samples on PostgreSQL, 2k on SQLite), each with one ``COPY`` (PostgreSQL) or one
``executemany`` (SQLite) rather than the ORM's bulk_create.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
import torch
from django.db import connection, transaction
from django.db.models import QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from adaptive import runtime
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.architectures import logits_to_proba
from adaptive.ml.compensation import keys_from_hidden
from adaptive.ml.preprocessing import FeatureEncoder, RowError, TabularBatch
from adaptive.models import Deployment, ErrorSample, Event, ModelVersion
from adaptive.services import gate
from adaptive.services.serving import non_finite_rows

log = logging.getLogger(__name__)

# Labels moved per transaction: keeps each lock short while a backlog drains.
APPLY_BATCH: Final = 5000
# Rows per forward pass while re-embedding events for a warm-up.
EMBED_CHUNK: Final = 4096
# Samples a warm-up writes per transaction (and memory revision): about 0.3 s under the lock on
# PostgreSQL. SQLite has one writer at a time, so there every predict and feedback waits for each
# batch: smaller ones (about 0.1 s), with a pause between them (see _yield_to_sqlite_writers).
WARM_WRITE_BATCH: Final = 10_000
WARM_WRITE_BATCH_SQLITE: Final = 2_000
# SQLite's busy handler retries a waiting writer every 100 ms at most once it has waited a while; a
# loop that commits and begins again at once wins the lock every time and starves the web workers
# (predicts stalled for the whole 3 s write phase of a 46k warm-up in bench/promotion.py).
SQLITE_WRITER_GAP_S: Final = 0.1
# Ids per IN list (SQLite's bound-parameter limit).
ID_CHUNK: Final = 900

# The ErrorSample columns every writer fills, in this order.
_SAMPLE_COLUMNS: Final = (
    "deployment_id",
    "version_id",
    "event_id",
    "key",
    "label",
    "base_score",
    "base_proba",
    "revision",
    "written_at",
    "active",
)


@dataclass(frozen=True)
class ApplyResult:
    applied: int
    evicted: int
    revision: int
    paused: bool = False


@dataclass(frozen=True)
class _Sample:
    """One ErrorSample to write: the event it comes from and what the memory keeps of it."""

    version_id: int | None
    event_id: int
    key: bytes
    label: int
    base_score: float
    base_proba: list[float] | None


def pending_labels(deployment: Deployment) -> int:
    """Labeled events whose label has not reached the memory yet."""
    return Event.objects.filter(
        deployment=deployment, label__isnull=False, memory_revision__isnull=True, key__isnull=False
    ).count()


def apply_pending(deployment_id: int, *, limit: int = APPLY_BATCH) -> ApplyResult:
    """Move up to ``limit`` pending labels into the memory as one new revision."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update(no_key=True).get(pk=deployment_id)
        if deployment.status != Deployment.Status.ACTIVE:
            # Paused (or archived): adaptation stops, labels wait in the events.
            return ApplyResult(0, 0, deployment.memory_revision, paused=True)
        # The filter guarantees label and key are set; `or` only narrows the types.
        rows = list(
            Event.objects.filter(
                deployment=deployment, label__isnull=False, memory_revision__isnull=True, key__isnull=False
            )
            .order_by("labeled_at", "id")
            .values_list("id", "version_id", "key", "label", "base_score", "base_proba", "full_score", "full_proba")[
                :limit
            ]
        )
        if not rows:
            return ApplyResult(0, 0, deployment.memory_revision)
        revision = deployment.memory_revision + 1
        ids = [r[0] for r in rows]
        # A warm-up may already have given an event's own version a sample of it (a promotion that
        # re-embedded labels still pending here): the label is in that memory, so the event is only
        # marked. Inserting it again would break the (version, event) uniqueness on every retry and
        # stall the deployment's memory for good. The lock orders this read after any warm-up write.
        taken: set[tuple[int | None, int | None]] = set()
        for start in range(0, len(ids), ID_CHUNK):
            taken.update(
                ErrorSample.objects.filter(event_id__in=ids[start : start + ID_CHUNK]).values_list(
                    "version_id", "event_id"
                )
            )
        _write_samples(
            deployment.pk,
            [
                _Sample(version_id, event_id, bytes(key or b""), int(label or 0), base_score, base_proba)
                for event_id, version_id, key, label, base_score, base_proba, _, _ in rows
                if (version_id, event_id) not in taken
            ],
            revision,
            timezone.now(),
        )
        for start in range(0, len(ids), ID_CHUNK):
            Event.objects.filter(pk__in=ids[start : start + ID_CHUNK]).update(memory_revision=revision)
        evicted = 0
        for version_id in {r[1] for r in rows}:
            evicted += _evict(deployment, version_id, revision)
        # The gate learns from the same labels, in the same transaction: its strength and the
        # revision that holds those labels reach serving together.
        strength = gate.learn(deployment, [(r[3], r[4], r[5], r[6], r[7]) for r in rows])
        changes: dict[str, Any] = {"memory_revision": revision}
        if strength is not None:
            changes["compensation_strength"] = strength
        Deployment.objects.filter(pk=deployment.pk).update(**changes)
    return ApplyResult(len(rows), evicted, revision)


def _evict(deployment: Deployment, version_id: int | None, revision: int) -> int:
    """Deactivate the oldest samples of a version past the deployment's capacity."""
    active = ErrorSample.objects.filter(deployment=deployment, version_id=version_id, active=True)
    excess = active.count() - deployment.memory_capacity
    if excess <= 0:
        return 0
    oldest = list(active.order_by("revision", "id").values_list("id", flat=True)[:excess])
    for start in range(0, len(oldest), ID_CHUNK):
        ErrorSample.objects.filter(pk__in=oldest[start : start + ID_CHUNK]).update(active=False)
    return len(oldest)


def _write_samples(deployment_id: int, samples: Sequence[_Sample], revision: int, now: datetime) -> None:
    """Insert ``samples`` as revision ``revision``, in order (ids ascend with it: eviction relies on that).

    PostgreSQL: one ``COPY``; SQLite: one ``executemany``. Django's bulk_create compiled its
    INSERTs in Python, about 0.45 s per 1,000 samples under the lock (70% of a 46k-sample warm-up,
    profiled); ``COPY`` sends the same rows in a fraction of that.
    """
    table = ErrorSample._meta.db_table
    columns = ", ".join(_SAMPLE_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The raw psycopg cursor: Django's wrapper has no copy(). Text format: jsonb from its text.
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for s in samples:
                    copy.write_row(
                        (
                            deployment_id,
                            s.version_id,
                            s.event_id,
                            s.key,
                            s.label,
                            s.base_score,
                            None if s.base_proba is None else orjson.dumps(s.base_proba).decode(),
                            revision,
                            now,
                            True,
                        )
                    )
            return
        written_at = connection.ops.adapt_datetimefield_value(now)
        marks = ", ".join(["%s"] * len(_SAMPLE_COLUMNS))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            [
                (
                    deployment_id,
                    s.version_id,
                    s.event_id,
                    s.key,
                    s.label,
                    s.base_score,
                    None if s.base_proba is None else orjson.dumps(s.base_proba).decode(),
                    revision,
                    written_at,
                    True,
                )
                for s in samples
            ],
        )


# --- warm-up ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up wrote, and where its time went (seconds: read, embed, write)."""

    written: int
    skipped: int
    revision: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def warm(deployment: Deployment, version: ModelVersion, *, limit: int | None = None) -> WarmUp:
    """Re-embed the newest labeled events missing from ``version``'s memory; returns what was written.

    The memory a version should hold is the newest ``capacity`` (or ``limit``) labeled events by
    event time. Events of that window that already have a sample of the version are skipped, so
    after a pre-warm (a candidate that passed its gate) a second call only tops up with the events
    labeled since, and a call with nothing new writes nothing. Keys and base scores are the
    version's own, as if it had served the events. Events that no longer encode for the version
    (a value outside its bounds) are left out and counted as ``skipped``.

    Reading and embedding happen outside any transaction; the samples are written in batches
    (``WARM_WRITE_BATCH``), each a new memory revision in a short transaction under the deployment's
    no-key lock, like a compensation update.
    """
    deployment = Deployment.objects.get(pk=deployment.pk)  # fresh capacity and revision
    if deployment.serving == Deployment.Serving.EXTERNAL:
        raise Conflict("an external deployment's memory holds the client's keys; there is nothing to re-embed")
    if version.deployment_id != deployment.pk:
        raise InvalidInput("version", f"version {version.pk} does not belong to deployment {deployment.slug!r}")
    seconds: dict[str, float] = {}
    wanted = deployment.memory_capacity if limit is None else min(limit, deployment.memory_capacity)
    # Samples of this version written after this revision are re-checked under the lock below.
    seen_revision = deployment.memory_revision
    started = time.perf_counter()
    rows = _missing_events(deployment, version, wanted)
    seconds["read"] = time.perf_counter() - started
    if not rows:
        return WarmUp(0, 0, seen_revision, seconds)

    started = time.perf_counter()
    samples, skipped = _embed(deployment, version, rows)
    seconds["embed"] = time.perf_counter() - started

    started = time.perf_counter()
    written, revision = 0, seen_revision
    batch = WARM_WRITE_BATCH_SQLITE if connection.vendor == "sqlite" else WARM_WRITE_BATCH
    for start in range(0, len(samples), batch):
        if start:
            _yield_to_sqlite_writers()
        part, revision = _write_warm_batch(deployment, version, samples[start : start + batch], seen_revision)
        written += part
    seconds["write"] = time.perf_counter() - started
    if skipped:
        log.warning(
            "warm-up of v%s: %s events no longer encode (or score finitely) and were left out", version.number, skipped
        )
    return WarmUp(written, skipped, revision, seconds)


def _yield_to_sqlite_writers() -> None:
    """On SQLite, leave the write lock free long enough for a waiting writer's next retry."""
    if connection.vendor == "sqlite":
        time.sleep(SQLITE_WRITER_GAP_S)


def _write_warm_batch(
    deployment: Deployment, version: ModelVersion, samples: list[_Sample], seen_revision: int
) -> tuple[int, int]:
    """One transaction of a warm-up's writes, as one new revision; returns (written, revision).

    Batches, oldest events first, keep each hold of the lock short: compensation updates queue
    behind it (predict and feedback do not), so a 46k-sample warm-up must not make the fast loop
    wait for all of it at once.
    """
    with transaction.atomic():
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        # A concurrent warm-up of the same version (an operator's promotion racing the evaluation's
        # pre-warm) may have written some of these events since the read: skip them, never duplicate.
        taken = set(
            ErrorSample.objects.filter(version=version, revision__gt=seen_revision, event_id__isnull=False)
            .order_by()
            .values_list("event_id", flat=True)
        )
        samples = [s for s in samples if s.event_id not in taken]
        if not samples:
            return 0, locked.memory_revision
        revision = locked.memory_revision + 1
        _write_samples(locked.pk, samples, revision, timezone.now())
        # The version may hold samples already (a pre-warm, or it was live before): the oldest go,
        # the way compensation updates keep a memory within its capacity.
        _evict(locked, version.pk, revision)
        Deployment.objects.filter(pk=locked.pk).update(memory_revision=revision)
    return len(samples), revision


@dataclass
class _Labeled:
    ids: list[int]
    labels: list[int]
    features: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def _missing_events(deployment: Deployment, version: ModelVersion, wanted: int) -> _Labeled:
    """The newest ``wanted`` labeled events that have no sample of ``version``, oldest first.

    Plain index reads and a set difference rather than one anti-join: right after a warm-up wrote
    tens of thousands of samples, the table's statistics still say the version has none, and
    PostgreSQL planned a NOT EXISTS as a nested loop over a materialised scan (52 s for 46k events
    instead of a fraction of a second). These reads cost the same whatever the statistics say.
    """
    rows = _Labeled([], [], [])
    if wanted <= 0:
        return rows
    window = list(
        Event.objects.filter(deployment=deployment, label__isnull=False)
        .order_by("-event_time", "-id")
        .values_list("id", flat=True)[:wanted]
    )
    if not window:
        return rows
    window.reverse()
    # Every sample the version has for an event at least as new (by id) as the window's oldest:
    # one pass over the version's samples, inactive ones included (the (version, event) pair is
    # unique, evicted or not). No ordering: the model's default one joins two tables.
    taken = set(
        ErrorSample.objects.filter(version=version, event_id__gte=min(window))
        .order_by()
        .values_list("event_id", flat=True)
    )
    missing = [pk for pk in window if pk not in taken]
    if not missing:
        return rows
    found: dict[int, tuple[int, str]] = {}
    for part in _with_ids(Event.objects.order_by(), missing):
        # Features as text, parsed by orjson: the JSONField's json.loads was half of the read's time.
        for pk, label, features in part.values_list("id", "label", Cast("features", TextField())):
            found[pk] = (int(label or 0), features)  # the window holds labeled events only
    for pk in missing:
        if pk in found:  # an event deleted meanwhile (its deployment's cleanup) is simply gone
            label, features = found[pk]
            rows.ids.append(pk)
            rows.labels.append(label)
            rows.features.append(orjson.loads(features))
    return rows


def _with_ids(queryset: QuerySet[Event], ids: list[int]) -> Iterator[QuerySet[Event]]:
    """``queryset`` restricted to the rows with these ids, in as few queries as the database allows.

    PostgreSQL: one array parameter. Django binds an IN list as one parameter per id, and building
    and splitting 46k of them cost a second. SQLite: IN lists within its bound-parameter limit.
    """
    if connection.vendor == "postgresql":
        yield queryset.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [ids]))
        return
    for start in range(0, len(ids), ID_CHUNK):
        yield queryset.filter(pk__in=ids[start : start + ID_CHUNK])


def _embed(deployment: Deployment, version: ModelVersion, rows: _Labeled) -> tuple[list[_Sample], int]:
    """Keys and base scores of ``rows`` by ``version``'s model; also how many rows failed to encode."""
    loaded = runtime.load_version(deployment, version)
    samples: list[_Sample] = []
    skipped = 0
    for start in range(0, len(rows), EMBED_CHUNK):
        batch, kept = _encode_valid(loaded.encoder, rows.features[start : start + EMBED_CHUNK])
        skipped += min(EMBED_CHUNK, len(rows) - start) - len(kept)
        if batch is None:
            continue
        with torch.inference_mode():
            h = loaded.model.embed(batch)
            proba = logits_to_proba(loaded.model.head(h)).double()
            key_rows = keys_from_hidden(h, loaded.key_mean)
            bad = non_finite_rows(proba, key_rows)
            if bool(bad.any()):
                # A row this version's model cannot score finitely: skipped (and counted), never a
                # sample that would fail every read of the memory.
                good = ~bad
                kept = [i for i, ok in zip(kept, good.tolist(), strict=True) if ok]
                skipped += int(bad.sum())
                proba, key_rows = proba[good], key_rows[good]
            keys = runtime.encode_keys(key_rows)
        vectors: list[list[float]] | None = proba.tolist() if proba.dim() == 2 else None
        scores: list[float] = [max(v) for v in vectors] if vectors is not None else proba.tolist()
        for j, i in enumerate(kept):
            samples.append(
                _Sample(
                    version.pk,
                    rows.ids[start + i],
                    keys[j],
                    rows.labels[start + i],
                    scores[j],
                    vectors[j] if vectors is not None else None,
                )
            )
    return samples, skipped


def _encode_valid(encoder: FeatureEncoder, features: list[dict[str, Any]]) -> tuple[TabularBatch | None, list[int]]:
    """Encode the rows that still encode; returns the batch and the indexes of the rows it holds.

    A stored event can fail to encode for a version whose preprocessing has narrower bounds than
    the one that served it. The encoder stops at the first bad row, so drop it and go again: bad
    rows are rare, and one must not keep a version from getting a memory (or from being promoted).
    """
    kept = list(range(len(features)))
    while kept:
        try:
            return encoder.encode([features[i] for i in kept]), kept
        except RowError as exc:
            del kept[exc.index]
    return None, kept
