"""Responsiveness benchmark: from a feedback response to the first predict that reflects it.

    .venv/bin/python bench/responsiveness.py [--trials 100] [--batch 32] [--load]
        [--broker redis://127.0.0.1:6379/13] [--db postgres|sqlite] [--database-url URL] [--keep]

Target: p95 under 1 s from a feedback response to a predict that reflects it, with a real worker
on Redis and PostgreSQL.

What it does (see bench/README.md):

1. creates the database (PostgreSQL: drops and re-creates ``--database-url``; SQLite: a file in a
   temporary folder), migrates it, and creates a binary deployment on the flights stream's schema
   with an untrained DeepFM [64, 32] (bench/predict.py's), its error memory empty;
2. purges the broker's queues and starts gunicorn (``--workers``, sync), a real
   ``celery -A tasks worker -Q default`` (prefork, ``--worker-concurrency``) and, as bin/up does, a
   second worker on ``monitoring,gpu`` (one process: window closes and drift scans) on ``--broker``;
3. per trial: predicts ``--batch`` flights with fresh ids and reads the answer's memory revision
   ``r0``; sends their labels to feedback; ``t0`` is the arrival of the feedback response; then
   predicts a probe (the first flight of the batch again, under a fresh id) until an answer
   reflects the labels, and ``t1`` is that answer's arrival. "Reflects" means: the answer's
   ``memory_revision`` is above ``r0`` and at least the revision that applied this trial's labels
   (read from the events' ``memory_revision``; without load the first revision above ``r0`` is that
   one). The probe's key equals the key of a labeled row, so its compensated score also changes
   with the revision: the script counts the trials where it did;
4. prints p50/p95/p99/max of ``t1 - t0`` against the 1 s target, where the time went (feedback
   response to the job's claim by the worker, the job's run), how many compensation jobs the
   feedback calls created (feedback coalesces into at most one queued job per deployment) and what
   other jobs ran (drift scans, which the compensation updates set off);
5. with ``--load``, runs the trials a second time while a background client sends predict and
   feedback batches (``--load-batch`` rows) back to back, and reports both phases.

Polls follow each other with ``--poll-interval`` seconds between them (default 5 ms), so the
figures are at most that plus one predict's latency late. The exit status is 0 whether the target
is met or not, non-zero when anything fails (an HTTP error, a trial that never sees its labels within
``--timeout``, labels left out of the memory at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.*) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import BenchError, Gunicorn, drop_database, scratch_database_name  # noqa: E402
from bench.predict import (  # noqa: E402
    Fixture,
    Flights,
    bench_env,
    build_model_spec,
    close_django_connections,
    create_deployment,
    database_url,
    load_average,
    percentile,
    prepare_database,
    raise_interrupt,
    server_description,
)

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_responsiveness"
# Not database 0, where bin/test's workers listen: a worker there would take this run's messages.
DEFAULT_BROKER: Final = "redis://127.0.0.1:6379/13"
TARGET_SECONDS: Final = 1.0
# Flights the model's preprocessing is fitted on come first; trials and load cycle over the next
# POOL ones: a --load run writes a flight's key twice only after that many labels (when the probe's
# neighbours are all duplicates of it, one more leaves its score as it was).
FIT_SKIP: Final = 20_000
POOL: Final = 180_000


# --- processes ----------------------------------------------------------------------------------------


class CeleryWorker:
    """``celery -A tasks worker -Q <queues>`` in its own session, logging to a file."""

    def __init__(self, *, queues: str, concurrency: int, env: dict[str, str], log_path: Path) -> None:
        self.name = f"bench-{queues.split(',')[0]}-{uuid.uuid4().hex[:8]}@localhost"
        self.queues = queues
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            queues,
            "-n",
            self.name,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
        ]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"the {self.queues} worker exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()  # warm shutdown: finishes the task at hand, then its pool exits
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the pool's children are in its session
            self.process.wait()


def purge_queues() -> int:
    """Drop messages an earlier (interrupted) run left on the broker: they name jobs of another database."""
    from tasks.celery import app

    return int(app.control.purge() or 0)


# --- the API ----------------------------------------------------------------------------------------


class Api:
    """predict and feedback for one deployment over one keep-alive client."""

    def __init__(self, base_url: str, fixture: Fixture) -> None:
        prefix = f"{base_url}/api/v1/deployments/{fixture.slug}"
        self.predict_url, self.feedback_url = f"{prefix}/predict", f"{prefix}/feedback"
        headers = {"Authorization": f"Key {fixture.raw_key}", "Content-Type": "application/json"}
        self.http = httpx.Client(headers=headers, timeout=60)

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        response = self.http.post(url, content=orjson.dumps(body))
        if response.status_code != 200:
            raise BenchError(f"{url.rsplit('/', 1)[1]}: HTTP {response.status_code}: {response.text[:300]}")
        return orjson.loads(response.content)

    def predict(self, flights: Flights, ids: list[str], rows: list[int]) -> list[dict[str, Any]]:
        body = {
            "rows": [
                {"id": i, "ts": flights.times[j], "features": flights.rows[j]} for i, j in zip(ids, rows, strict=True)
            ]
        }
        predictions: list[dict[str, Any]] = self._post(self.predict_url, body)["predictions"]
        return predictions

    def feedback(self, flights: Flights, ids: list[str], rows: list[int]) -> None:
        body = {"labels": [{"id": i, "label": flights.labels[j]} for i, j in zip(ids, rows, strict=True)]}
        answer = self._post(self.feedback_url, body)
        if answer.get("accepted") != len(ids):
            raise BenchError(f"feedback: {str(answer)[:300]}")

    def close(self) -> None:
        self.http.close()


class RowCursor:
    """Hands out flights (cycled over the pool after the fitting rows) and fresh ids; thread-safe."""

    def __init__(self, flights: Flights, start: int) -> None:
        self.flights = flights
        self.next = start
        self.lock = threading.Lock()

    def take(self, n: int, tag: str) -> tuple[list[str], list[int]]:
        with self.lock:
            first, self.next = self.next, self.next + n
        pool = len(self.flights.rows) - FIT_SKIP
        rows = [FIT_SKIP + (first + i) % pool for i in range(n)]
        return [f"{tag}-{first + i:09d}" for i in range(n)], rows


# --- trials --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    seconds: float  # feedback response -> first predict answer that reflects the labels
    polls: int
    r0: int
    revision: int  # the revision that applied this trial's labels
    t0_wall: datetime
    score_changed: bool
    # From the Job rows, once the phase is over: feedback response -> the worker claims the job that
    # applied the labels; that job's claim -> finish.
    claim_s: float | None = None
    run_s: float | None = None


def applied_revision(deployment_id: int, ids: list[str]) -> int | None:
    """The revision that moved these events' labels into the memory; None while any is pending."""
    from django.db.models import Count, Max, Q

    from adaptive.models import Event

    got = Event.objects.filter(deployment_id=deployment_id, external_id__in=ids).aggregate(
        revision=Max("memory_revision"), pending=Count("pk", filter=Q(memory_revision__isnull=True))
    )
    return None if got["pending"] else got["revision"]


def run_trial(
    api: Api,
    cursor: RowCursor,
    fixture: Fixture,
    worker: CeleryWorker,
    tag: str,
    args: argparse.Namespace,
    timeout: float,
) -> Trial:
    from django.utils import timezone

    ids, rows = cursor.take(args.batch, tag)
    served = api.predict(cursor.flights, ids, rows)
    r0 = int(served[0]["memory_revision"])
    before = served[0]["score"]
    api.feedback(cursor.flights, ids, rows)
    t0 = time.perf_counter()
    t0_wall = timezone.now()
    deadline = t0 + timeout
    polls = 0
    checked = r0  # revisions up to this one are known not to hold all the labels
    needed: int | None = None
    while True:
        polls += 1
        (probe,) = api.predict(cursor.flights, [f"{tag}-probe-{polls}"], rows[:1])
        arrived = time.perf_counter()
        revision = int(probe["memory_revision"])
        if revision > checked:
            needed = needed or applied_revision(fixture.deployment_id, ids)
            if needed is not None and revision >= needed:
                return Trial(arrived - t0, polls, r0, needed, t0_wall, probe["score"] != before)
            checked = revision
        if arrived > deadline:
            worker.check_alive()
            raise BenchError(
                f"trial {tag}: no answer reflected the labels within {timeout:.0f}s (r0 {r0}, last revision "
                f"{revision}, labels applied at {needed})\nworker log:\n{worker.log_tail()}"
            )
        if args.poll_interval:
            time.sleep(args.poll_interval)


@dataclass
class Load:
    """A background client: predict a batch, send its labels, again, until stopped."""

    api: Api
    cursor: RowCursor
    batch: int
    stop: threading.Event = field(default_factory=threading.Event)
    feedback_calls: int = 0
    rows: int = 0
    seconds: float = 0.0
    error: BaseException | None = None

    def run(self) -> None:
        started = time.perf_counter()
        try:
            while not self.stop.is_set():
                ids, rows = self.cursor.take(self.batch, "load")
                self.api.predict(self.cursor.flights, ids, rows)
                self.api.feedback(self.cursor.flights, ids, rows)
                self.feedback_calls += 1
                self.rows += len(ids)
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - started


@dataclass(frozen=True)
class JobCount:
    """The jobs of one kind a phase created: how many, how many failed, their run times (claim -> finish)."""

    kind: str
    created: int
    failed: int
    active: int  # still queued or running when the phase ended
    run_s: list[float]


@dataclass
class Phase:
    name: str
    trials: list[Trial]
    feedback_calls: int
    labels: int
    jobs: dict[str, JobCount]  # by kind: compensation, and what else ran on the same worker
    revisions: int
    windows: int  # monitoring windows closed by the drift scans
    load: Load | None = None

    @property
    def claim_s(self) -> list[float]:
        return [t.claim_s for t in self.trials if t.claim_s is not None]

    @property
    def run_s(self) -> list[float]:
        return [t.run_s for t in self.trials if t.run_s is not None]

    @property
    def compensation(self) -> JobCount:
        return self.jobs.get("compensation") or JobCount("compensation", 0, 0, 0, [])


def mark(deployment_id: int) -> tuple[int, int, int]:
    """(the highest job id so far, the memory revision, windows closed so far): where a phase starts."""
    from django.db.models import Max

    from adaptive.models import Deployment, Job, Window

    last_job = Job.objects.aggregate(last=Max("pk"))["last"] or 0
    revision = Deployment.objects.values_list("memory_revision", flat=True).get(pk=deployment_id)
    return last_job, revision, Window.objects.filter(deployment_id=deployment_id).count()


def jobs_since(deployment_id: int, last_job: int) -> dict[str, JobCount]:
    from adaptive.models import Job

    by_kind: dict[str, list[Job]] = {}
    for job in Job.objects.filter(deployment_id=deployment_id, pk__gt=last_job).order_by("pk"):
        by_kind.setdefault(job.kind, []).append(job)
    return {
        kind: JobCount(
            kind,
            len(jobs),
            sum(job.status == Job.Status.FAILED for job in jobs),
            sum(job.status in Job.ACTIVE_STATUSES for job in jobs),
            [(j.finished_at - j.started_at).total_seconds() for j in jobs if j.started_at and j.finished_at],
        )
        for kind, jobs in by_kind.items()
    }


def wait_until_applied(deployment_id: int, worker: CeleryWorker, timeout: float) -> None:
    """Every label in the memory and no compensation job left queued or running: nothing was lost.

    Other kinds of jobs the compensation updates set off (drift scans) are only counted.
    """
    from adaptive.models import Deployment, Job
    from adaptive.services.memory import pending_labels

    deployment = Deployment.objects.get(pk=deployment_id)
    deadline = time.monotonic() + timeout
    while True:
        pending = pending_labels(deployment)
        active = Job.objects.filter(
            deployment_id=deployment_id, kind=Job.Kind.COMPENSATION, status__in=Job.ACTIVE_STATUSES
        ).count()
        if not pending and not active:
            return
        if time.monotonic() > deadline:
            worker.check_alive()
            raise BenchError(
                f"after {timeout:.0f}s: {pending} labels not in the memory, {active} compensation jobs active"
            )
        time.sleep(0.1)


def job_timings(deployment_id: int, trials: list[Trial]) -> None:
    """Per trial: feedback response -> the worker claims the job that applied its labels; claim -> finish."""
    from adaptive.models import Job

    jobs = {
        job.metrics.get("revision"): job
        for job in Job.objects.filter(
            deployment_id=deployment_id, kind=Job.Kind.COMPENSATION, status=Job.Status.SUCCEEDED
        )
    }
    for trial in trials:
        job = jobs.get(trial.revision)
        if job is None or job.started_at is None or job.finished_at is None:
            continue  # its labels were applied by a job that went on past them (a backlog of several batches)
        trial.claim_s = (job.started_at - trial.t0_wall).total_seconds()
        trial.run_s = (job.finished_at - job.started_at).total_seconds()


def run_phase(
    name: str,
    api: Api,
    cursor: RowCursor,
    fixture: Fixture,
    worker: CeleryWorker,
    args: argparse.Namespace,
    load: Load | None,
) -> Phase:
    last_job, revision_before, windows_before = mark(fixture.deployment_id)
    thread = None
    if load is not None:
        thread = threading.Thread(target=load.run, name="load", daemon=True)
        thread.start()
    trials: list[Trial] = []
    try:
        for t in range(args.trials):
            if load is not None and load.error is not None:
                raise BenchError(f"background load failed: {load.error!r}") from load.error
            trials.append(run_trial(api, cursor, fixture, worker, f"{name}{t}", args, args.timeout))
            if (t + 1) % max(1, args.trials // 5) == 0:
                recent = trials[-max(1, args.trials // 5) :]
                median = statistics.median(x.seconds for x in recent)
                print(f"  {name}: {t + 1}/{args.trials} trials, median {1000 * median:.0f} ms", flush=True)
    finally:
        if load is not None and thread is not None:
            load.stop.set()
            thread.join(timeout=120)
    if load is not None and load.error is not None:
        raise BenchError(f"background load failed: {load.error!r}") from load.error
    wait_until_applied(fixture.deployment_id, worker, args.timeout)
    _, revision_after, windows_after = mark(fixture.deployment_id)
    job_timings(fixture.deployment_id, trials)
    feedback_calls = len(trials) + (load.feedback_calls if load else 0)
    labels = len(trials) * args.batch + (load.rows if load else 0)
    jobs = jobs_since(fixture.deployment_id, last_job)
    revisions, windows = revision_after - revision_before, windows_after - windows_before
    return Phase(name, trials, feedback_calls, labels, jobs, revisions, windows, load)


# --- report and main -------------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return str(round(1000 * percentile(values, q))) if values else "n/a"  # round: no "-0"


def ms_or_unknown(seconds: float | None) -> str:
    return "?" if seconds is None else str(round(1000 * seconds))


def report(args: argparse.Namespace, setting: str, phases: list[Phase]) -> None:
    print()
    print(
        f"responsiveness benchmark: {args.trials} trials per phase, feedback of {args.batch} labels, "
        f"probe of 1 row polled every {1000 * args.poll_interval:.0f} ms; {setting}"
    )
    print()
    print(f"{'phase':<10}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'polls p50':>11}   probe score changed")
    for phase in phases:
        seconds = [t.seconds for t in phase.trials]
        changed = sum(t.score_changed for t in phase.trials)
        print(
            f"{phase.name:<10}{ms(seconds, 0.5):>8}{ms(seconds, 0.95):>8}{ms(seconds, 0.99):>8}"
            f"{1000 * max(seconds):>8.0f}{statistics.median(t.polls for t in phase.trials):>11.0f}"
            f"   {changed}/{len(phase.trials)}"
        )
    print()
    print(
        "where the time went (p50 / p95 ms): feedback response -> the worker claims the job (negative when it "
        "claimed it before the response reached the client); the job's run (claim -> finish)"
    )
    for phase in phases:
        print(
            f"  {phase.name:<8} claim {ms(phase.claim_s, 0.5)} / {ms(phase.claim_s, 0.95)}; "
            f"run {ms(phase.run_s, 0.5)} / {ms(phase.run_s, 0.95)}  ({len(phase.claim_s)} of {len(phase.trials)} "
            "trials matched to their job)"
        )
        slowest = sorted(phase.trials, key=lambda t: t.seconds)[-3:][::-1]
        print(
            f"  {'':<8} slowest: "
            + ", ".join(
                f"{1000 * t.seconds:.0f} ms (claim {ms_or_unknown(t.claim_s)}, run {ms_or_unknown(t.run_s)})"
                for t in slowest
            )
        )
    print()
    for phase in phases:
        jobs = phase.compensation
        line = (
            f"{phase.name:<8} compensation jobs: {jobs.created} for {phase.feedback_calls} feedback calls "
            f"({phase.labels:,} labels), {phase.revisions} memory revisions, {jobs.failed} failed"
        )
        if phase.load is not None and phase.load.seconds:
            line += (
                f"; background load: {phase.load.feedback_calls} predict+feedback pairs of {args.batch_load} rows, "
                f"{phase.load.rows / phase.load.seconds:,.0f} rows/s"
            )
        print(line)
        others = [job for kind, job in sorted(phase.jobs.items()) if kind != "compensation"]
        if others:
            print(
                f"{'':<8} other jobs ({phase.windows} monitoring windows closed): "
                + "; ".join(
                    f"{job.kind} {job.created} (run p50 {ms(job.run_s, 0.5)} ms, {sum(job.run_s):.1f} s in all, "
                    f"{job.failed} failed, {job.active} still queued or running)"
                    for job in others
                )
            )
    print()
    for phase in phases:
        p95 = percentile([t.seconds for t in phase.trials], 0.95)
        verdict = "PASS" if p95 < TARGET_SECONDS else "MISS"
        print(f"{phase.name:<8} p95 = {1000 * p95:.0f} ms   target < {1000 * TARGET_SECONDS:.0f} ms   {verdict}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per phase (default 100)")
    parser.add_argument("--batch", type=int, default=32, help="rows predicted and labeled per trial (default 32)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed trials first (default 3)")
    parser.add_argument("--load", action="store_true", help="also run the trials under background predict+feedback")
    parser.add_argument("--load-batch", dest="batch_load", type=int, default=64, help="rows per load batch (64)")
    parser.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"Celery broker URL; purged first (default {DEFAULT_BROKER})"
    )
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres", help="database (default postgres)")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="with --db postgres: a scratch database, dropped first"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="default-queue worker processes (2)")
    parser.add_argument(
        "--no-slow-worker",
        dest="slow_worker",
        action="store_false",
        help="no second worker on the monitoring and gpu queues (bin/up runs one): drift scans then wait",
    )
    parser.add_argument("--memory-kind", choices=["exact", "sketch"], default="exact")
    parser.add_argument("--poll-interval", type=float, default=0.005, help="seconds between probe predicts")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a trial may wait (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    for name in ("trials", "batch", "batch_load", "workers", "worker_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.poll_interval < 0 or args.timeout <= 0:
        parser.error("--poll-interval must be >= 0 and --timeout > 0")
    if args.db == "postgres":
        try:
            scratch_database_name(args.database_url)
        except (ValueError, psycopg.ProgrammingError) as exc:
            parser.error(f"--database-url: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_responsiveness_"))
    url = database_url(args.db, args.database_url, workdir)
    env = bench_env(workdir, url, CELERY_BROKER_URL=args.broker)
    server: Gunicorn | None = None
    worker: CeleryWorker | None = None
    slow: CeleryWorker | None = None
    apis: list[Api] = []
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, env)
        flights = Flights.load(FIT_SKIP + POOL)
        model = build_model_spec(flights, "deepfm", args.seed)
        fixture = create_deployment("bench-responsiveness", flights, model, memory_kind=args.memory_kind)
        purged = purge_queues()
        close_django_connections()

        server = Gunicorn(workers=args.workers, worker_class="sync", env=env, log_path=workdir / "gunicorn.log")
        worker = CeleryWorker(
            queues="default", concurrency=args.worker_concurrency, env=env, log_path=workdir / "worker.log"
        )
        if args.slow_worker:
            # As bin/up runs it: window closes and drift scans on their own worker, off the fast loop's.
            slow = CeleryWorker(queues="monitoring,gpu", concurrency=1, env=env, log_path=workdir / "slow.log")
        health = server.wait_healthy()
        print(
            f"gunicorn on {server.url}, health: {health.get('status')}; worker {worker.name} on {args.broker} "
            f"({purged} stale messages purged); warming up",
            flush=True,
        )
        api = Api(server.url, fixture)
        apis.append(api)
        cursor = RowCursor(flights, 0)
        for w in range(args.warmup):
            # The first trial also waits for the worker to start; every gunicorn worker loads the model.
            for _ in range(2 * args.workers):
                ids, rows = cursor.take(args.batch, f"warm{w}")
                api.predict(flights, ids, rows)
            run_trial(api, cursor, fixture, worker, f"warm{w}", args, max(args.timeout, 120.0))

        load_before = os.getloadavg()[0]
        phases = [run_phase("quiet", api, cursor, fixture, worker, args, None)]
        if args.load:
            load_api = Api(server.url, fixture)
            apis.append(load_api)
            load = Load(load_api, cursor, args.batch_load)
            phases.append(run_phase("load", api, cursor, fixture, worker, args, load))
        worker.check_alive()
        if slow is not None:
            slow.check_alive()
        setting = (
            f"{args.workers} gunicorn workers (sync), celery workers (prefork) default x{args.worker_concurrency}"
            f"{', monitoring,gpu x1' if slow is not None else ''} on {args.broker.split('://')[0]}, "
            f"{server_description(args.db, url)}, {args.memory_kind} memory, "
            f"{os.cpu_count()} CPUs, load average {load_average(load_before)}"
        )
        close_django_connections()
        report(args, setting, phases)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if server is not None:
            print(f"gunicorn log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        if worker is not None:
            print(f"worker log ({worker.log_path}):\n{worker.log_tail()}", file=sys.stderr)
        if slow is not None:
            print(f"monitoring worker log ({slow.log_path}):\n{slow.log_tail()}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        for api in apis:
            api.close()
        if worker is not None:
            worker.stop()
        if slow is not None:
            slow.stop()
        if server is not None:
            server.stop()
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
