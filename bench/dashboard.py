"""Dashboard benchmark: the server time of every dashboard page, and of each REST call a page makes on load.

    .venv/bin/python bench/dashboard.py [--events 1000000] [--windows 2000] [--requests 20]
        [--database-url postgresql://root@127.0.0.1:5432/benchdash] [--keep] [--reuse] [--seed 0]

Target (issue 6, the browser dashboard): every page's server time stays under 200 ms with 1M events
and 2,000 windows in PostgreSQL; pages read windows and reports, never scan raw events. Judged on the
p95 of each page and of each REST call its scripts make on load (``PAGES`` below lists them).

What it does (see bench/README.md):

1. creates the database (drops and re-creates ``--database-url``) and migrates it; with ``--reuse`` a
   database this script seeded earlier with the same ``--events``, ``--windows`` and ``--seed`` is
   migrated and used as it is (``--reuse`` implies ``--keep``);
2. seeds it like a control room that has served one model for 30 days: three deployments (a main
   one with 96% of ``--events``, ``--windows`` windows and six versions; two small ones with 2% of
   the events each, so the overview has several rows), deployments and versions through the
   services (real MLP weights of a 9-feature flights schema, 64-dim keys, 2,000-row training
   profiles), the main lineage's promotions and a rollback (Releases, AuditEntries), then the big
   tables with ``COPY``: events spread over the 30 days (0.3% in the last 10 minutes; 92% labeled a
   few minutes after serving; the live version's with 64-float keys), windows whose counts are the
   events' and whose metrics and detector signals are plausible, 12 DriftMetrics per window
   (9 features, prediction, label, error; mostly ok, some warn and drift), ErrorSamples of the live
   versions (the newest labeled keyed events, up to the memory's capacity: 50,000 for the main
   one), detector state from the real detectors, flip reports computed by ``adaptive.ml.flips``
   on synthetic scores, 500 jobs of every kind and status (a few running with progress) and
   5,000 audit entries; then ``VACUUM (ANALYZE)``, as autovacuum would have by then;
3. logs an operator in (``Client.force_login``) and, in this process through the whole Django stack
   (middleware, sessions, templates; ``DEBUG`` off, persistent database connections), requests each
   page and each of its calls: one cold request (reported as ``first``: caches empty, the live
   memory rebuilt from its samples), one untimed request whose SQL queries are counted, then
   ``--requests`` timed ones;
4. prints per page and call p50, p95 and max milliseconds, the query count and the database's time
   in the counted request (``sql ms``: the rest of a request is Python), the response size and the
   verdict: PASS (p95 under 200 ms), MISS, ``missing (404)`` for a URL no route matches yet, or
   ERROR with the status and exception for anything else than 200.

Exit status: 0 when every page and call answered 200 with p95 under 200 ms; 3 when the target is not
met (a MISS, or a page or call that does not exist yet); 1 when a page or call answered an error, or
the bench itself failed; 2 for bad options.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, Python puts bench/ first on the path, where this file would stand in for the
# project's `dashboard` app: the project goes first instead (which also makes bench.ingest importable).
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() not in (HERE, ROOT))]

from bench.ingest import (  # noqa: E402
    FEATURE_SCHEMA,
    BenchError,
    drop_database,
    scratch_database_name,
    synthetic_flight,
)
from bench.predict import (  # noqa: E402
    bench_env,
    close_django_connections,
    load_average,
    percentile,
    prepare_database,
    raise_interrupt,
    server_description,
)

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/benchdash"
TARGET_MS: Final = 200.0
MAIN_SLUG: Final = "bench-flights"

# Every dashboard page and the REST calls its scripts (static/js/*.js) make on load; polling repeats
# them every few seconds. "{slug}" is the main deployment, "{report}" the id of its newest flip report
# (the versions page fetches every listed report's detail), "{grid_since}" the end of the 16th newest
# window (the drift grid asks for the windows since the first one it shows).
PAGES: Final[dict[str, list[str]]] = {
    "/": ["/api/v1/overview"],
    "/deployments/{slug}/": [
        "/api/v1/deployments/{slug}/curve",
        "/api/v1/deployments/{slug}/drift?since={grid_since}&limit=5000",
        "/api/v1/deployments/{slug}/detectors/signals?order=desc&limit={grid_windows}",
        "/api/v1/deployments/{slug}/detectors",
        "/api/v1/deployments/{slug}/memory",
        "/api/v1/deployments/{slug}/samples?limit=10&offset=0",
        "/api/v1/deployments/{slug}/versions?limit=200",
        "/api/v1/deployments/{slug}",
        "/api/v1/audit?deployment={slug}&limit=8",
    ],
    "/deployments/{slug}/versions/": [
        "/api/v1/deployments/{slug}/versions?limit=200",
        "/api/v1/deployments/{slug}/flip-reports?limit=10",
        "/api/v1/deployments/{slug}/flip-reports/{report}",
    ],
    "/jobs/": ["/api/v1/jobs?limit=50"],
    "/audit/": ["/api/v1/audit?limit=50&offset=0"],
    # Filtered by a deployment, the audit page also shows its release timeline.
    "/audit/?deployment={slug}": [
        "/api/v1/audit?limit=50&offset=0&deployment={slug}",
        "/api/v1/deployments/{slug}/releases?limit=50",
    ],
}
GRID_WINDOWS: Final = 16

# --- what is seeded ------------------------------------------------------------------------------

SPAN: Final = timedelta(days=30)
# Nine of bench/ingest.py's flight features: with prediction, label and error, 12 drift columns.
FEATURES: Final = [
    "sched_dep_hour",
    "distance_mi",
    "dep_delay_min",
    "taxi_out_min",
    "temp_c",
    "wind_kt",
    "carrier",
    "origin",
    "dest",
]
SCHEMA: Final = [column for column in FEATURE_SCHEMA if column["name"] in FEATURES]
HIDDEN: Final = [128, 64]  # the MLP's last hidden layer is the 64-float memory key
KEY_DIM: Final = HIDDEN[-1]
# Feature rows are drawn from a pool of distinct synthetic flights (their content costs the pages nothing).
FEATURE_POOL: Final = 4096
PROFILE_ROWS: Final = 2000  # monitoring.REFERENCE_MAX_ROWS: the training profile of every version
SMALL_SHARE: Final = 0.02  # of --events, per small deployment
UNLABELED_SHARE: Final = 0.08
LIVE_SHARE: Final = 0.003  # of a deployment's events, served in the last LIVE_MINUTES
LIVE_MINUTES: Final = 10
LABEL_DELAY_S: Final = 600.0  # mean delay of a label after its prediction (exponential)
PENDING_LABELS: Final = 40  # labeled events the memory has not taken in yet
JOBS: Final = 500
AUDIT_ENTRIES: Final = 5000
FLIP_EVENTS: Final = 5000  # labeled events per flip report
COPY_CHUNK: Final = 100_000


@dataclass(frozen=True)
class Lineage:
    """One version of the main deployment: where it came from and when (days before now)."""

    number: int
    parent: int | None
    created_days_ago: float


# v1 uploaded; v2 retrained from it; v3 and v4 from v2 (v3 failed its gate, v4 regressed and was
# rolled back); v5 from v2 again, live for the last 6 days; v6 from v5, a candidate waiting.
MAIN_LINEAGE: Final = [
    Lineage(1, None, 31.0),
    Lineage(2, 1, 24.2),
    Lineage(3, 2, 18.1),
    Lineage(4, 2, 15.2),
    Lineage(5, 2, 6.2),
    Lineage(6, 5, 0.8),
]
# (days ago, kind, version): the first is the upload that put v1 live.
MAIN_RELEASES: Final = [
    (30.5, "initial", 1),
    (24.0, "promote", 2),
    (15.0, "promote", 4),
    (12.0, "rollback", 2),
    (6.0, "promote", 5),
]
# (days ago, old, new, job kind): comparisons; retrain evaluations unless "compare" (an operator's).
MAIN_FLIPS: Final = [
    (24.1, 1, 2, "retrain"),
    (18.0, 2, 3, "retrain"),
    (15.1, 2, 4, "retrain"),
    (6.1, 2, 5, "retrain"),
    (5.0, 4, 5, "compare"),
    (0.7, 5, 6, "retrain"),
]


@dataclass
class Seeded:
    """A seeded deployment: ids, release schedule and its share of the traffic."""

    slug: str
    pk: int
    versions: dict[int, int]  # number -> id
    schedule: list[tuple[datetime, int]]  # (start, version number) of each release, oldest first
    events: int
    windows: int
    capacity: int
    samples: int = 0

    @property
    def live_number(self) -> int:
        return self.schedule[-1][1]

    def first_second(self, span_start: datetime) -> float:
        """When its traffic starts, in seconds after the span's start: its first release, or the span's start."""
        return max(0.0, (self.schedule[0][0] - span_start).total_seconds())


@dataclass
class Traffic:
    """One deployment's events as arrays, in received order (seconds after the span's start)."""

    received: npt.NDArray[np.float64]
    labeled_at: npt.NDArray[np.float64]
    labeled: npt.NDArray[np.bool_]
    labels: npt.NDArray[np.int8]
    base: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    release: npt.NDArray[np.int64]  # index into the deployment's schedule
    keyed: npt.NDArray[np.bool_]  # served by the live version, which stores keys
    served_revision: npt.NDArray[np.int64]
    memory_revision: npt.NDArray[np.int64]  # 0: not taken into the memory (yet)


def sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def iso(start: datetime, seconds: npt.NDArray[np.float64]) -> list[str]:
    """ISO-8601 UTC strings of ``start + seconds``, vectorised (COPY parses them)."""
    origin = np.datetime64(start.replace(tzinfo=None), "us")
    stamps = origin + (seconds * 1e6).astype("timedelta64[us]")
    return [f"{s}Z" for s in np.datetime_as_string(stamps, unit="ms")]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """``COPY table (columns) FROM STDIN`` on Django's connection (autocommit: one transaction)."""
    from django.db import connection

    connection.ensure_connection()
    raw: psycopg.Connection[Any] = connection.connection
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    n = 0
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


# --- seeding: users, deployments, versions, releases ----------------------------------------------


@dataclass
class Users:
    operator: Any
    admin: Any
    viewer: Any


def create_users() -> Users:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    made = {}
    for role in ("operator", "admin", "viewer"):
        user = get_user_model().objects.create_user(f"bench-{role}", password=None)
        user.groups.add(Group.objects.get(name=role))
        made[role] = user
    return Users(**made)


# Feature rows and their labels.
Pool = tuple[list[dict[str, Any]], list[int]]


def feature_pool(rng: random.Random) -> Pool:
    rows, labels = [], []
    for _ in range(FEATURE_POOL):
        row, label = synthetic_flight(rng)
        rows.append({name: row[name] for name in FEATURES})
        labels.append(label)
    return rows, labels


def version_spec(rows: list[dict[str, Any]], labels: list[int], seed: int, notes: str) -> tuple[dict[str, Any], bytes]:
    """An untrained MLP on the schema with its preprocessing, key mean and training profile."""
    import torch

    from adaptive.ml.architectures import build_model, logits_to_proba
    from adaptive.ml.compensation import fit_key_mean
    from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, input_spec, parse_schema
    from adaptive.ml.weights import state_dict_to_bytes
    from adaptive.services.monitoring import training_profile

    schema = parse_schema(SCHEMA)
    stats = fit_preprocessing(schema, rows)
    torch.manual_seed(seed)
    config = {"hidden": HIDDEN}
    model = build_model("mlp", config, input_spec(schema, stats), 1)
    model.eval()
    encoded = FeatureEncoder(schema, stats).encode(rows)
    with torch.inference_mode():
        scores = logits_to_proba(model(encoded)).double().numpy()
    profile = training_profile(rows, scores, labels, max_rows=PROFILE_ROWS, seed=seed)
    profile.pop("error", None)  # an upload's profile has features, prediction and label
    spec = {
        "architecture": "mlp",
        "config": config,
        "preprocessing": stats,
        "key_mean": [float(v) for v in fit_key_mean(model, encoded)],
        "profile": profile,
        "metrics": {"auc": round(0.72 + 0.01 * seed % 5, 4), "log_loss": 0.51, "accuracy": 0.78},
        "notes": notes,
    }
    return spec, state_dict_to_bytes(model)


def create_deployment(slug: str, name: str, pool: Pool, users: Users, seed: int) -> tuple[Any, int]:
    """A binary deployment on the schema with v1 live, through the services; returns it and v1's id."""
    from adaptive.services.registry import create_deployment as create
    from adaptive.services.registry import upload_version

    deployment, _ = create(
        fields={"slug": slug, "name": name, "task": "binary", "classes": ["0", "1"], "feature_schema": SCHEMA},
        actor=users.admin,
    )
    spec, weights = version_spec(pool[0], pool[1], seed=seed, notes="uploaded by bench/dashboard.py")
    version, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=users.admin)
    return deployment, version.pk


def seed_main_lineage(deployment: Any, v1: int, pool: Pool, users: Users, now: datetime, seed: int) -> Seeded:
    """v2..v6 with their lineage and retrain jobs; the main lineage's releases; times set back."""
    from adaptive.models import AuditEntry, Deployment, Job, ModelVersion, Release
    from adaptive.services import releases
    from adaptive.services.registry import upload_version

    def ago(days: float) -> datetime:
        return now - timedelta(days=days)

    versions = {1: v1}
    for item in MAIN_LINEAGE[1:]:
        spec, weights = version_spec(pool[0], pool[1], seed=seed + item.number, notes=f"retrained from v{item.parent}")
        version, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
        versions[item.number] = version.pk
    for item in MAIN_LINEAGE:
        created = ago(item.created_days_ago)
        fields: dict[str, Any] = {"created_at": created, "data_start": ago(item.created_days_ago + 14)}
        fields["data_end"] = created - timedelta(hours=1)
        if item.parent is not None:
            job = Job.objects.create(
                deployment=deployment,
                kind=Job.Kind.RETRAIN,
                status=Job.Status.SUCCEEDED,
                progress=1.0,
                message=f"v{item.number}: 4 epochs on 120,000 events (40,000 replayed)",
                device="cuda:0",
                params={"from_version": item.parent, "epochs": 4, "replay": 0.33, "distill": True},
                metrics={"train_loss": 0.47, "holdout_auc": 0.74, "seconds": 812.4},
                attempts=1,
            )
            Job.objects.filter(pk=job.pk).update(
                created_at=created - timedelta(minutes=20),
                started_at=created - timedelta(minutes=19),
                heartbeat_at=created,
                finished_at=created,
            )
            fields |= {"parent_id": versions[item.parent], "origin": ModelVersion.Origin.RETRAINED, "origin_job": job}
        ModelVersion.objects.filter(pk=versions[item.number]).update(**fields)

    for _, kind, number in MAIN_RELEASES[1:]:
        reason = f"bench: {kind} v{number}"
        if kind == "promote":
            releases.promote(deployment=deployment, number=number, actor=users.operator, reason=reason)
        else:
            releases.rollback(deployment=deployment, number=number, actor=users.operator, reason=reason)
    ModelVersion.objects.filter(pk=versions[3]).update(status=ModelVersion.Status.REJECTED)

    # The services stamped everything "now": move each release and its audit entry to its day.
    rows = list(Release.objects.filter(deployment=deployment).order_by("id"))
    starts = [ago(days) for days, _, _ in MAIN_RELEASES]
    for i, release in enumerate(rows):
        ended = starts[i + 1] if i + 1 < len(rows) else None
        Release.objects.filter(pk=release.pk).update(started_at=starts[i], ended_at=ended)
        AuditEntry.objects.filter(deployment=deployment, details__release=release.pk).update(created_at=starts[i])
    for item in MAIN_LINEAGE:
        AuditEntry.objects.filter(
            deployment=deployment, action=AuditEntry.Action.UPLOAD_VERSION, to_version_id=versions[item.number]
        ).update(created_at=ago(item.created_days_ago))
    AuditEntry.objects.filter(deployment=deployment, action=AuditEntry.Action.CREATE_DEPLOYMENT).update(
        created_at=ago(31.5)
    )
    Deployment.objects.filter(pk=deployment.pk).update(created_at=ago(31.5))
    schedule = [(start, number) for start, (_, _, number) in zip(starts, MAIN_RELEASES, strict=True)]
    return Seeded(MAIN_SLUG, deployment.pk, versions, schedule, 0, 0, deployment.memory_capacity)


def seed_small(deployment: Any, v1: int, now: datetime, days: float) -> Seeded:
    from adaptive.models import AuditEntry, Deployment, ModelVersion, Release

    start = now - timedelta(days=days)
    ModelVersion.objects.filter(pk=v1).update(created_at=start)
    Release.objects.filter(deployment=deployment).update(started_at=start)
    AuditEntry.objects.filter(deployment=deployment).update(created_at=start)
    Deployment.objects.filter(pk=deployment.pk).update(created_at=start)
    return Seeded(deployment.slug, deployment.pk, {1: v1}, [(start, 1)], 0, 0, deployment.memory_capacity)


# --- seeding: events, windows, drift, samples -----------------------------------------------------


def simulate_traffic(dep: Seeded, span_start: datetime, rng: np.random.Generator) -> Traffic:
    n = dep.events
    span_s = SPAN.total_seconds()
    # Steady traffic over the deployment's life, and a busier last few minutes (the per-minute rate).
    n_live = min(n // 2, max(20, round(n * LIVE_SHARE)))
    live_from = span_s - LIVE_MINUTES * 60.0
    received = np.sort(
        np.concatenate(
            [
                rng.uniform(dep.first_second(span_start), live_from, n - n_live),
                rng.uniform(live_from, span_s - 1.0, n_live),
            ]
        )
    )
    z = rng.normal(-0.7, 1.3, n)
    truth = sigmoid(1.2 * z + rng.normal(0.0, 1.0, n))
    labels = (rng.random(n) < truth).astype(np.int8)
    base = sigmoid(z)
    # The compensated score leans toward what the neighbours' labels say.
    score = np.clip(base + 0.3 * (truth - base) + rng.normal(0.0, 0.02, n), 0.0, 1.0)
    labeled_at = received + rng.exponential(LABEL_DELAY_S, n)
    labeled = (rng.random(n) >= UNLABELED_SHARE) & (labeled_at < span_s)
    starts = np.array([(start - span_start).total_seconds() for start, _ in dep.schedule])
    release = np.clip(np.searchsorted(starts, received, side="right") - 1, 0, None)
    keyed = release == len(starts) - 1

    # Memory revisions: the live version's labels in label order, after the earlier versions' writes.
    in_memory = np.flatnonzero(keyed & labeled)
    in_memory = in_memory[np.argsort(labeled_at[in_memory], kind="stable")]
    offset = int((labeled & ~keyed).sum())
    memory_revision = np.zeros(n, dtype=np.int64)
    memory_revision[in_memory] = offset + np.arange(1, len(in_memory) + 1)
    memory_revision[in_memory[-PENDING_LABELS:]] = 0
    served_revision = np.zeros(n, dtype=np.int64)
    taken = np.sort(labeled_at[in_memory])
    served_revision[keyed] = offset + np.searchsorted(taken, received[keyed], side="right")
    return Traffic(received, labeled_at, labeled, labels, base, score, release, keyed, served_revision, memory_revision)


def event_rows(
    dep: Seeded, traffic: Traffic, span_start: datetime, pool: list[str], rng: np.random.Generator
) -> Iterator[tuple[Any, ...]]:
    version_ids = [dep.versions[number] for _, number in dep.schedule]
    for lo in range(0, dep.events, COPY_CHUNK):
        hi = min(lo + COPY_CHUNK, dep.events)
        received = traffic.received[lo:hi]
        received_at = iso(span_start, received)
        event_time = iso(span_start, received - rng.uniform(0.0, 3.0, hi - lo))
        labeled_at = iso(span_start, np.where(traffic.labeled[lo:hi], traffic.labeled_at[lo:hi], 0.0))
        keyed = traffic.keyed[lo:hi]
        keys = rng.standard_normal((int(keyed.sum()), KEY_DIM)).astype("<f4")
        keys /= np.linalg.norm(keys, axis=1, keepdims=True)
        next_key = iter(keys)
        # Plain lists: indexing numpy arrays one element at a time costs more than the COPY.
        columns = zip(
            range(lo, hi),
            event_time,
            received_at,
            traffic.release[lo:hi].tolist(),
            traffic.base[lo:hi].tolist(),
            traffic.score[lo:hi].tolist(),
            traffic.labeled[lo:hi].tolist(),
            traffic.labels[lo:hi].tolist(),
            labeled_at,
            keyed.tolist(),
            traffic.served_revision[lo:hi].tolist(),
            traffic.memory_revision[lo:hi].tolist(),
            strict=True,
        )
        for (
            i,
            event_at,
            received_on,
            release,
            base,
            score,
            labeled,
            label,
            label_at,
            has_key,
            served,
            memory,
        ) in columns:
            yield (
                dep.pk,
                f"{dep.slug}-{i:08d}",
                event_at,
                received_on,
                pool[i % len(pool)],
                version_ids[release],
                base,
                score,
                label if labeled else None,
                label_at if labeled else None,
                next(next_key).tobytes() if has_key else None,
                served if has_key else None,
                memory or None,
            )


EVENT_COLUMNS: Final = [
    "deployment_id",
    "external_id",
    "event_time",
    "received_at",
    "features",
    "version_id",
    "base_score",
    "score",
    "label",
    "labeled_at",
    "key",
    "served_revision",
    "memory_revision",
]


def detector_signals(rng: np.random.Generator, n_seen: int, n_new: int, episode: float) -> dict[str, Any]:
    """What the four detectors said on each error stream in one window (monitoring's shape)."""
    signals: dict[str, Any] = {}
    for stream, rate in (("raw", 0.05), ("compensated", 0.015)):
        kinds: dict[str, Any] = {}
        for kind in ("adwin", "page_hinkley", "kswin", "ddm"):
            fired = bool(rng.random() < rate + episode * (0.5 if stream == "raw" else 0.2))
            kinds[kind] = {
                "drift": fired,
                "detections": [int(rng.integers(0, max(1, n_new)))] if fired else [],
                "warning": bool(kind == "ddm" and (fired or rng.random() < 0.05)),
                "n_seen": n_seen,
                "n_detections": int(n_seen // 4000) + int(fired),
            }
        signals[stream] = kinds
    return signals


def window_rows(
    dep: Seeded, traffic: Traffic, span_start: datetime, rng: np.random.Generator
) -> tuple[list[tuple[Any, ...]], list[float]]:
    """The deployment's windows (counts from its events) and, per window, how much it drifts."""
    span_s = SPAN.total_seconds()
    edges = np.linspace(dep.first_second(span_start), span_s, dep.windows + 1)
    n_events = np.histogram(traffic.received, edges)[0]
    label_times = np.sort(traffic.labeled_at[traffic.labeled])
    n_labeled = np.histogram(label_times, edges)[0]
    cumulative = np.searchsorted(label_times, edges[1:], side="right")
    starts = np.array([(start - span_start).total_seconds() for start, _ in dep.schedule])
    rows, episodes = [], []
    phase = rng.uniform(0, 2 * np.pi)
    for j in range(dep.windows):
        release = max(0, int(np.searchsorted(starts, edges[j + 1], side="right")) - 1)
        since_release = int(cumulative[j] - np.searchsorted(label_times, max(starts[release], 0.0), side="right"))
        # Drift episodes: about one window in twelve, where AUC dips and drift columns light up.
        episode = float(rng.random() < 1 / 12) * rng.uniform(0.5, 1.0)
        episodes.append(episode)
        auc = 0.745 + 0.02 * np.sin(phase + 2 * np.pi * j / max(dep.windows / 5, 1)) - 0.05 * episode
        auc += rng.normal(0, 0.008)
        lift = rng.uniform(0.004, 0.03) + 0.02 * episode
        metrics: list[float | None] = []
        for value in (auc, auc + lift):
            loss = 0.52 - 0.8 * (value - 0.745) + rng.normal(0, 0.005)
            metrics += [float(value), float(loss), float(0.78 + 0.5 * (value - 0.745)), float(loss * 0.33)]
        if n_labeled[j] < 10:
            metrics = [None] * 8
        start_at, end_at = iso(span_start, np.array([edges[j], edges[j + 1] - 1.0]))
        rows.append(
            (
                dep.pk,
                dep.versions[dep.schedule[release][1]],
                start_at,
                end_at,
                int(n_events[j]),
                int(n_labeled[j]),
                metrics[0],
                metrics[4],
                metrics[1],
                metrics[5],
                metrics[2],
                metrics[6],
                metrics[3],
                metrics[7],
                min(dep.capacity, max(since_release, 0)),
                int(cumulative[j]),
                start_at,
                end_at,
                dumps(detector_signals(rng, max(since_release, 0), int(n_labeled[j]), episode)),
                end_at,
                # The calibrated status and its alarm, as a drift episode would raise them.
                "drift" if episode else "ok",
                dumps([{"kind": "drift_status", "level": "drift", "calibrated": True, "reason": "drift in wind_kt"}])
                if episode
                else "[]",
            )
        )
    return rows, episodes


WINDOW_COLUMNS: Final = [
    "deployment_id",
    "version_id",
    "start",
    "end",
    "n_events",
    "n_labeled",
    "base_auc",
    "compensated_auc",
    "base_log_loss",
    "compensated_log_loss",
    "base_accuracy",
    "compensated_accuracy",
    "base_brier",
    "compensated_brier",
    "memory_size",
    "memory_revision",
    "labeled_from",
    "labeled_to",
    "detector_signals",
    "created_at",
    "drift_status",
    "alarms",
]
# (column, kind, method): distances, because the 2,000-row reference is over Evidently's 1,000.
DRIFT_COLUMNS: Final = [
    *((c["name"], "feature", "wasserstein" if c["type"] == "numeric" else "jensenshannon") for c in SCHEMA),
    ("prediction", "prediction", "wasserstein"),
    ("label", "label", "jensenshannon"),
    ("error", "error", "wasserstein"),
]
# Columns that move in an episode (the weather and the delays, and what follows from them).
DRIFTING: Final = {"dep_delay_min", "wind_kt", "temp_c", "prediction", "error"}


def drift_rows(
    window_ids: list[int], episodes: list[float], threshold: float, rng: np.random.Generator
) -> Iterator[tuple[Any, ...]]:
    for window_id, episode in zip(window_ids, episodes, strict=True):
        for column, kind, method in DRIFT_COLUMNS:
            statistic = abs(rng.normal(0.022, 0.012))
            if column in DRIFTING:
                statistic += episode * rng.uniform(0.03, 0.12)
            level = "drift" if statistic >= threshold else "warn" if statistic >= 0.5 * threshold else "ok"
            severity = float(statistic) / threshold
            yield (window_id, column, kind, method, float(statistic), None, threshold, level, severity, "{}")


DRIFT_METRIC_COLUMNS: Final = [
    "window_id",
    "column",
    "column_kind",
    "method",
    "statistic",
    "p_value",
    "threshold",
    "level",
    "severity",
    "histogram",
]


def seed_traffic(dep: Seeded, span_start: datetime, pool: list[str], rng: np.random.Generator) -> Traffic:
    """Events, windows, drift metrics, the live memory's samples and detector state of one deployment."""
    from django.db import connection

    from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, MonitorState, Window
    from adaptive.services.monitoring import ErrorStreamDetectors

    traffic = simulate_traffic(dep, span_start, rng)
    copy_rows(Event._meta.db_table, EVENT_COLUMNS, event_rows(dep, traffic, span_start, pool, rng))
    windows, episodes = window_rows(dep, traffic, span_start, rng)
    copy_rows(Window._meta.db_table, WINDOW_COLUMNS, windows)
    # One COPY in one session: the identity values follow the rows' order.
    window_ids = list(Window.objects.filter(deployment_id=dep.pk).order_by("id").values_list("id", flat=True))
    threshold = Deployment.objects.values_list("drift_distance", flat=True).get(pk=dep.pk)
    copy_rows(DriftMetric._meta.db_table, DRIFT_METRIC_COLUMNS, drift_rows(window_ids, episodes, threshold, rng))

    # The live memory: the newest labels it took in, the samples' keys, labels and scores are the events'.
    live_id = dep.versions[dep.live_number]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ErrorSample._meta.db_table} (deployment_id, version_id, event_id, key, label, base_score, "
            "revision, written_at, active) "
            "SELECT deployment_id, version_id, id, key, label, base_score, memory_revision, "
            "labeled_at + interval '1 second', true "
            f"FROM {Event._meta.db_table} WHERE deployment_id = %s AND version_id = %s AND memory_revision IS NOT NULL "
            "ORDER BY memory_revision DESC LIMIT %s",
            [dep.pk, live_id, dep.capacity],
        )
        dep.samples = cursor.rowcount
    revision = int(traffic.memory_revision.max(initial=0))
    Deployment.objects.filter(pk=dep.pk).update(memory_revision=revision)

    # The live version's detectors, fed its latest labeled errors by the real detector banks.
    recent = np.flatnonzero(traffic.keyed & traffic.labeled)[-5000:]
    y = traffic.labels[recent].astype(np.float64)
    state = {}
    for stream, p in (("raw", traffic.base[recent]), ("compensated", traffic.score[recent])):
        detectors = ErrorStreamDetectors()
        detectors.update(np.round(np.abs(y - p), 6).tolist(), ((p >= 0.5) != (y == 1)).astype(float).tolist())
        state[stream] = detectors.state_dict()
    MonitorState.objects.create(deployment_id=dep.pk, version_id=live_id, detectors=state)
    return traffic


# --- seeding: flip reports, jobs, audit ----------------------------------------------------------


def seed_flip_reports(main: Seeded, traffic: Traffic, users: Users, now: datetime, rng: np.random.Generator) -> None:
    from adaptive.ml.flips import evaluate_gate, flip_report
    from adaptive.models import Deployment, FlipReport, Job
    from adaptive.services.evaluation import report_columns

    deployment = Deployment.objects.get(pk=main.pk)
    labeled = np.flatnonzero(traffic.labeled)
    for days, old, new, kind in MAIN_FLIPS:
        at = now - timedelta(days=days)
        z = rng.normal(-0.7, 1.3, FLIP_EVENTS)
        y = (rng.random(FLIP_EVENTS) < sigmoid(1.2 * z + rng.normal(0, 1, FLIP_EVENTS))).astype(np.int64)
        # v3 churns (many negative flips): its gate fails; the others improve a little, quietly.
        churn, gain = (0.9, -0.02) if new == 3 else (0.25, 0.12)
        old_p = sigmoid(z + rng.normal(0, 0.3, FLIP_EVENTS))
        new_p = sigmoid(z + gain * (2 * y - 1) + rng.normal(0, churn, FLIP_EVENTS))
        report = flip_report(old_p, new_p, y)
        passed, reasons = evaluate_gate(
            report, min_metric_delta=deployment.gate_min_metric_delta, max_nfr=deployment.gate_max_nfr
        )
        job = Job.objects.create(
            deployment=deployment,
            kind=Job.Kind.EVALUATION,
            status=Job.Status.SUCCEEDED,
            progress=1.0,
            message=f"v{old} vs v{new} on {FLIP_EVENTS:,} labeled events",
            device="cpu",
            params={"old": old, "new": new, "n_events": FLIP_EVENTS, "reason": f"bench: {kind}"},
            metrics={"nfr": report.nfr, "gate_passed": passed},
            attempts=1,
            requested_by=users.operator if kind == "compare" else None,
        )
        examples = rng.choice(
            labeled[: max(1, int(len(labeled) * (1 - days / 30)))], len(report.negative_flip_examples)
        )
        flips = FlipReport.objects.create(
            deployment=deployment,
            old_version_id=main.versions[old],
            new_version_id=main.versions[new],
            job=job,
            **report_columns(report),
            example_event_ids=[f"{main.slug}-{int(i):08d}" for i in examples],
            gate_passed=passed,
            gate_reasons=reasons,
        )
        FlipReport.objects.filter(pk=flips.pk).update(created_at=at)
        Job.objects.filter(pk=job.pk).update(
            created_at=at - timedelta(minutes=6),
            started_at=at - timedelta(minutes=5),
            heartbeat_at=at,
            finished_at=at,
        )


JOB_COLUMNS: Final = [
    "deployment_id",
    "kind",
    "status",
    "progress",
    "message",
    "device",
    "params",
    "metrics",
    "celery_task_id",
    "attempts",
    "created_at",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "requested_by_id",
]


def job_rows(
    deps: list[Seeded], users: Users, now: datetime, count: int, rng: np.random.Generator
) -> Iterator[tuple[Any, ...]]:
    """Finished jobs over the 30 days, then the active ones (within the one-active-per-kind constraints)."""
    span_s = SPAN.total_seconds()
    kinds = ["compensation", "drift_scan", "retrain", "evaluation", "ping"]
    weights = [0.6, 0.3, 0.02, 0.03, 0.05]
    main = deps[0]
    active = [
        (main.pk, "retrain", "running", 0.42, "epoch 2/4: loss 0.481", "cuda:0", users.operator.pk),
        (main.pk, "evaluation", "running", 0.8, "scoring v6: 4,000 of 5,000 events", "cpu", users.operator.pk),
        (main.pk, "drift_scan", "queued", 0.0, "", "", None),
        (deps[1].pk, "compensation", "running", 0.3, "writing 212 samples", "cpu", None),
        (deps[2].pk, "compensation", "queued", 0.0, "", "", None),
    ]
    for i in range(count - len(active)):
        kind = str(rng.choice(kinds, p=weights))
        created = now - timedelta(seconds=float(rng.uniform(60, span_s)))
        duration = {"compensation": 0.4, "drift_scan": 1.5, "retrain": 900.0, "evaluation": 40.0, "ping": 0.01}[kind]
        duration *= float(rng.uniform(0.5, 2.0))
        roll = rng.random()
        status = "failed" if roll < 0.03 else "cancelled" if roll < 0.05 else "succeeded"
        message = {
            "succeeded": f"{kind.replace('_', ' ')} done",
            "failed": "worker lost: the task was acknowledged late and re-run out of attempts",
            "cancelled": "cancelled by bench-operator",
        }[status]
        started = created + timedelta(seconds=0.05)
        finished = started + timedelta(seconds=duration)
        yield (
            None if kind == "ping" else deps[int(rng.choice(3, p=[0.8, 0.1, 0.1]))].pk,
            kind,
            status,
            1.0 if status == "succeeded" else float(rng.uniform(0, 1)),
            message,
            "cuda:0" if kind == "retrain" else "cpu",
            dumps({"labels": int(rng.integers(1, 500))} if kind == "compensation" else {}),
            dumps({"seconds": round(duration, 3)} if status == "succeeded" else {}),
            f"bench-{i:06d}",
            1 + int(status == "failed"),
            created.isoformat(),
            started.isoformat(),
            finished.isoformat(),
            finished.isoformat(),
            users.operator.pk if kind in ("retrain", "evaluation") and rng.random() < 0.5 else None,
        )
    for deployment_id, kind, status, progress, message, device, requested_by in active:
        created = now - timedelta(minutes=3)
        running = status == "running"
        yield (
            deployment_id,
            kind,
            status,
            progress,
            message,
            device,
            dumps({}),
            dumps({}),
            "bench-active",
            int(running),
            created.isoformat(),
            (created + timedelta(seconds=1)).isoformat() if running else None,
            (now - timedelta(seconds=2)).isoformat() if running else None,
            None,
            requested_by,
        )


AUDIT_COLUMNS: Final = [
    "deployment_id",
    "actor_id",
    "actor_label",
    "action",
    "from_version_id",
    "to_version_id",
    "reason",
    "details",
    "created_at",
]


def audit_rows(
    deps: list[Seeded], users: Users, now: datetime, count: int, rng: np.random.Generator
) -> Iterator[tuple[Any, ...]]:
    """Everyday actions (settings, retrain requests, pauses, memory resets, keys) by people and the policy."""
    span_s = SPAN.total_seconds()
    actions = ["update_settings", "retrain", "pause", "resume", "reset_memory", "create_key", "revoke_key"]
    weights = [0.4, 0.2, 0.12, 0.12, 0.06, 0.06, 0.04]
    for _ in range(count):
        action = str(rng.choice(actions, p=weights))
        dep = deps[int(rng.choice(3, p=[0.8, 0.1, 0.1]))]
        by_policy = action == "retrain" and rng.random() < 0.6
        person = users.operator if rng.random() < 0.8 else users.admin
        details: dict[str, Any] = {}
        if action == "update_settings":
            k = int(rng.integers(60, 180))
            details = {"changed": {"memory_k": [k, k + 10], "compensation_lambda": [0.7, 0.6]}}
        elif action == "retrain":
            details = {
                "job": int(rng.integers(1, 100_000)),
                "trigger": "compensated error drift" if by_policy else "manual",
            }
        elif action in ("create_key", "revoke_key"):
            details = {"prefix": f"ak_{int(rng.integers(0, 16**6)):06x}", "name": "ingest"}
        yield (
            dep.pk,
            None if by_policy else person.pk,
            "policy" if by_policy else person.username,
            action,
            None,
            None,
            "" if by_policy else f"bench: {action.replace('_', ' ')}",
            dumps(details),
            (now - timedelta(seconds=float(rng.uniform(0, span_s)))).isoformat(),
        )


# --- seeding: the whole database ------------------------------------------------------------------


def seed_stamp(args: argparse.Namespace) -> str:
    return f"Seeded by bench/dashboard.py: events={args.events} windows={args.windows} seed={args.seed}"


def seed(args: argparse.Namespace) -> None:
    """Everything the pages read (see the module docstring); prints how long each part took."""
    from django.db import connection
    from django.utils import timezone

    from adaptive.models import AuditEntry, Deployment, Job

    clock = time.perf_counter()
    total = clock
    rng = np.random.default_rng(args.seed)
    now = timezone.now()
    span_start = now - SPAN

    def step(what: str) -> None:
        nonlocal clock
        print(f"  {what}: {time.perf_counter() - clock:.1f} s", flush=True)
        clock = time.perf_counter()

    print("seeding", flush=True)
    pool = feature_pool(random.Random(args.seed))
    users = create_users()
    deployment, v1 = create_deployment(MAIN_SLUG, "Bench: flight delays", pool, users, args.seed)
    main = seed_main_lineage(deployment, v1, pool, users, now, args.seed)
    small: list[Seeded] = []
    for slug, name, days in (("bench-fraud", "Bench: card fraud", 20.0), ("bench-demand", "Bench: demand", 9.0)):
        other, other_v1 = create_deployment(slug, name, pool, users, args.seed + 100 + len(small))
        small.append(seed_small(other, other_v1, now, days))
    Deployment.objects.filter(slug="bench-demand").update(status=Deployment.Status.PAUSED)
    deps = [main, *small]
    for dep in small:
        dep.events = max(1, round(args.events * SMALL_SHARE))
        dep.windows = max(5, args.windows // 20)
    main.events = args.events - sum(dep.events for dep in small)
    main.windows = args.windows
    step(f"users, 3 deployments, {len(main.versions) + 2} versions (services), releases")

    pool_json = [dumps(row) for row in pool[0]]
    traffics = {}
    for dep in deps:
        traffics[dep.slug] = seed_traffic(dep, span_start, pool_json, rng)
        step(
            f"{dep.slug}: {dep.events:,} events, {dep.windows:,} windows, {dep.windows * len(DRIFT_COLUMNS):,} "
            f"drift metrics, {dep.samples:,} error samples, detector state"
        )
    seed_flip_reports(main, traffics[main.slug], users, now, rng)
    done_jobs = Job.objects.count()
    copy_rows(Job._meta.db_table, JOB_COLUMNS, job_rows(deps, users, now, JOBS - done_jobs, rng))
    done_audit = AuditEntry.objects.count()
    copy_rows(AuditEntry._meta.db_table, AUDIT_COLUMNS, audit_rows(deps, users, now, AUDIT_ENTRIES - done_audit, rng))
    step(f"{len(MAIN_FLIPS)} flip reports, {JOBS} jobs, {AUDIT_ENTRIES:,} audit entries")
    with connection.cursor() as cursor:
        # What autovacuum does soon after a bulk load: planner statistics and a visibility map
        # (index-only scans), so the plans timed are the ones a live database would use.
        cursor.execute("VACUUM (ANALYZE)")
    step("VACUUM (ANALYZE)")
    # Stamped last: an interrupted seed is never reused.
    Deployment.objects.filter(pk=main.pk).update(description=seed_stamp(args))
    print(f"seeded in {time.perf_counter() - total:.1f} s", flush=True)


def seeded_with(url: str) -> str | None:
    """The seed stamp of the database at ``url``, or None when it does not exist or was not seeded."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT description FROM adaptive_deployment WHERE slug = %s", [MAIN_SLUG]).fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return str(row[0]) if row else None


def migrate_existing(env: dict[str, str]) -> None:
    (Path(env["VAR_DIR"]) / "staticfiles").mkdir(parents=True, exist_ok=True)  # whitenoise warns otherwise
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One page or REST call: its timings, or why there are none."""

    url: str
    page: bool
    status: int = 0
    error: str = ""
    first_ms: float = 0.0
    times_ms: list[float] = field(default_factory=list)
    queries: int = 0
    sql_ms: float = 0.0  # the database's share of the counted request, as the debug cursor times it
    size: int = 0

    @property
    def verdict(self) -> str:
        if self.status == 404 and not self.error:
            return "missing (404)"
        if self.error:
            return "ERROR"
        return "PASS" if percentile(self.times_ms, 0.95) < TARGET_MS else "MISS"


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else bytes(response.content)


def failure(response: Any, url: str) -> str:
    """Why a response other than 200 is not a page that does not exist yet ("" when it is one)."""
    from django.urls import Resolver404, resolve

    if response.status_code == 404:
        try:
            resolve(url.split("?")[0])
        except Resolver404:
            return ""  # no route yet: the lead's page or endpoint has not landed
    exc_info = getattr(response, "exc_info", None)
    if exc_info:
        return f"HTTP {response.status_code}: {exc_info[1]!r}"
    return f"HTTP {response.status_code}: {body_of(response)[:300].decode(errors='replace')}"


def measure(client: Any, url: str, page: bool, requests: int) -> Measured:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = Measured(url, page)
    started = time.perf_counter()
    response = client.get(url)
    result.first_ms = 1000 * (time.perf_counter() - started)
    result.status = response.status_code
    if response.status_code != 200:
        result.error = failure(response, url)
        return result
    # The second warm-up counts the queries; the timed requests run without the capture's logging.
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    result.queries = len(captured.captured_queries)
    result.sql_ms = 1000 * sum(float(query["time"]) for query in captured.captured_queries)
    result.size = len(body_of(response))
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            result.status = response.status_code
            result.error = failure(response, url) or f"HTTP {response.status_code} after {len(result.times_ms)} x 200"
            return result
        body_of(response)
        result.times_ms.append(1000 * elapsed)
    return result


def run_pages(requests: int) -> list[Measured]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from adaptive.models import FlipReport, Window

    reports = FlipReport.objects.filter(deployment__slug=MAIN_SLUG).order_by("-created_at", "-id")
    grid = Window.objects.filter(deployment__slug=MAIN_SLUG).order_by("-end", "-id")
    grid_since = grid.values_list("end", flat=True)[GRID_WINDOWS - 1 : GRID_WINDOWS].first()
    if grid_since is None:
        grid_since = grid.values_list("end", flat=True).last()
    names = {
        "slug": MAIN_SLUG,
        "report": reports.values_list("id", flat=True).first(),
        # As the page sends it: the curve's ISO time (DRF's "Z" form), URL-encoded.
        "grid_since": quote(grid_since.isoformat().replace("+00:00", "Z"), safe="") if grid_since else "",
        "grid_windows": str(GRID_WINDOWS),
    }
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-operator"))
    results = []
    for page, calls in PAGES.items():
        for url, is_page in [(page, True), *((call, False) for call in calls)]:
            measured = measure(client, url.format(**names), is_page, requests)
            print(f"  {measured.url}: {measured.verdict}", flush=True)
            results.append(measured)
    return results


def report(args: argparse.Namespace, results: list[Measured], server: str, load: str, seeded: str) -> None:
    print()
    print(
        f"dashboard benchmark: {args.events:,} events, {args.windows:,} windows ({seeded}), {args.requests} timed "
        f"requests per page and call after 2 warm-ups, in process through the Django stack (DEBUG off), "
        f"operator session, {os.cpu_count()} CPUs, {server}, load average {load}"
    )
    print()
    width = max(len(r.url) for r in results) + 4
    print(
        f"{'page / call':<{width}}{'first ms':>9}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'queries':>8}"
        f"{'sql ms':>8}{'bytes':>10}  verdict"
    )
    for r in results:
        name = r.url if r.page else f"  {r.url}"
        if r.times_ms:
            print(
                f"{name:<{width}}{r.first_ms:>9.1f}{statistics.median(r.times_ms):>8.1f}"
                f"{percentile(r.times_ms, 0.95):>8.1f}{max(r.times_ms):>8.1f}{r.queries:>8}{r.sql_ms:>8.1f}"
                f"{r.size:>10,}  {r.verdict}"
            )
        else:
            print(f"{name:<{width}}{r.first_ms:>9.1f}  {r.verdict}{': ' + r.error if r.error else ''}")
    verdicts = [r.verdict for r in results]
    print()
    print(
        f"{verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, {verdicts.count('missing (404)')} missing, "
        f"{verdicts.count('ERROR')} ERROR of {len(results)} pages and calls; target p95 < {TARGET_MS:.0f} ms"
    )


def exit_status(results: list[Measured]) -> int:
    verdicts = {r.verdict for r in results}
    if "ERROR" in verdicts:
        return 1
    return 3 if verdicts - {"PASS"} else 0


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in all (default 1000000)")
    parser.add_argument("--windows", type=int, default=2000, help="windows of the main deployment (default 2000)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page and call (default 20)")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="a scratch PostgreSQL database, dropped first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database (for --reuse)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the database as it is when this script seeded it with the same sizes (implies --keep)",
    )
    args = parser.parse_args(argv)
    if args.events < 1000:
        parser.error("--events must be at least 1000")
    for name in ("windows", "requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        scratch_database_name(args.database_url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        parser.error(f"--database-url: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    url = args.database_url
    # The test client's host; the broker is a folder nobody reads (promotions enqueue memory warm-ups).
    env = bench_env(workdir, url, ALLOWED_HOSTS="testserver")
    keep = args.keep or args.reuse
    created = False
    try:
        if args.reuse and seeded_with(url) == seed_stamp(args):
            print(f"database {url}: reusing it ({seed_stamp(args)}); migrating", flush=True)
            migrate_existing(env)
            seeded = "reused"
        else:
            if args.reuse:
                print(f"database {url}: not seeded with these sizes; seeding it afresh", flush=True)
            print(f"database {url}: creating and migrating", flush=True)
            created = True
            prepare_database("postgres", url, env)
            started = time.perf_counter()
            seed(args)
            seeded = f"seeded in {time.perf_counter() - started:.0f} s"
        close_django_connections()
        print("timing pages and calls", flush=True)
        before = os.getloadavg()[0]
        results = run_pages(args.requests)
        server = server_description("postgres", url)
        report(args, results, server, load_average(before), seeded)
        return exit_status(results)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        close_django_connections()
        if keep:
            print(f"kept database {url}", file=sys.stderr)
        elif created:
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
