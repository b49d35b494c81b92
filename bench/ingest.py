"""Ingestion benchmark: the predict/feedback API behind gunicorn against raw psycopg on the same database.

    .venv/bin/python bench/ingest.py [--rows 100000] [--batch 500] [--clients 4] [--workers 2]
        [--repeat 3] [--database-url postgresql://root@127.0.0.1:5432/bench_ingest] [--keep]

What it does (see bench/README.md):

1. drops and creates the database, migrates it, and creates a binary deployment with 16 features
   (12 numeric, 4 categorical), a small MLP version and an ingestion key through the services;
2. starts gunicorn on a free port and waits until the health endpoint reports the database and broker up;
3. HTTP path: ``--clients`` threads, each with its own keep-alive ``httpx.Client``, send ``--rows``
   rows to ``predict`` in batches of ``--batch``, then all their labels to ``feedback``;
4. raw path: the same number of threads, each with its own psycopg connection, write a fresh set of
   ids with the same values: ``COPY`` into ``adaptive_event`` for predict, ``COPY`` into a temporary
   table + one ``UPDATE ... FROM`` for feedback, one transaction per batch;
5. repeats 3 and 4 ``--repeat`` times with fresh ids, checking after each path that every row was
   stored and labeled exactly once; prints the median rows/s, the HTTP/raw ratios against the
   targets and per-batch latencies; stops gunicorn and drops the database (unless --keep).

Request bodies and COPY rows are built before the clock starts: both paths measure the server and
the database, not the client's JSON encoding. The exit status is 0 whether the targets are met or
not (this is a benchmark, not a test), and non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/bench_ingest"
SLUG = "bench-flights"
# Targets (the share of raw psycopg's rows/s the API keeps), defined for batches of 500 rows.
TARGETS = {"predict": 0.35, "feedback": 0.5}
TARGET_BATCH = 500
EVENT_COLUMNS = (
    "deployment_id",
    "external_id",
    "event_time",
    "received_at",
    "features",
    "version_id",
    "base_score",
    "score",
    "base_proba",
    "proba",
)

# --- synthetic data: flight delays, 12 numeric and 4 categorical features -------------------------

CARRIERS = ["AA", "AS", "B6", "DL", "F9", "G4", "HA", "NK", "OO", "UA", "WN", "YX"]
# fmt: off
AIRPORTS = [
    "ATL", "DFW", "DEN", "ORD", "LAX", "JFK", "LAS", "MCO", "MIA", "CLT", "SEA", "PHX", "EWR", "SFO",
    "IAH", "BOS", "FLL", "MSP", "LGA", "DTW", "PHL", "SLC", "DCA", "SAN", "BWI", "TPA", "AUS", "IAD",
    "BNA", "MDW", "HNL", "DAL", "PDX", "STL", "HOU", "SMF", "MSY", "RDU", "SJC", "SNA",
]
# fmt: on
AIRCRAFT = ["A319", "A320", "A321", "B737", "B738", "B739", "B38M", "B752", "CRJ9", "E175"]
NUMERIC = [
    "sched_dep_hour",
    "day_of_week",
    "month",
    "distance_mi",
    "sched_block_min",
    "dep_delay_min",
    "taxi_out_min",
    "origin_load_pct",
    "dest_load_pct",
    "temp_c",
    "wind_kt",
    "visibility_mi",
]
CATEGORICAL = ["carrier", "origin", "dest", "aircraft"]
FEATURE_SCHEMA = [{"name": n, "type": "numeric"} for n in NUMERIC] + [
    {"name": n, "type": "categorical"} for n in CATEGORICAL
]


def synthetic_flight(rng: random.Random) -> tuple[dict[str, Any], int]:
    """One row as a client would send it (rounded like real measurements) and its label (arrived late)."""
    distance = rng.uniform(80, 2700)
    # Most flights leave about on time; one in five carries a long, exponential delay.
    dep_delay = max(-15.0, rng.gauss(0, 12) + (rng.expovariate(1 / 40) if rng.random() < 0.2 else 0.0))
    wind = abs(rng.gauss(8, 6))
    origin, dest = rng.sample(AIRPORTS, 2)
    row = {
        "sched_dep_hour": rng.randint(5, 23),
        "day_of_week": rng.randint(1, 7),
        "month": rng.randint(1, 12),
        "distance_mi": round(distance),
        "sched_block_min": round(distance / 7.5 + 35 + rng.gauss(0, 8)),
        "dep_delay_min": round(dep_delay, 1),
        "taxi_out_min": round(max(5.0, rng.gauss(17, 6)), 1),
        "origin_load_pct": round(rng.uniform(30, 100), 1),
        "dest_load_pct": round(rng.uniform(30, 100), 1),
        "temp_c": round(rng.gauss(15, 10), 1),
        "wind_kt": round(wind, 1),
        "visibility_mi": round(min(10.0, rng.expovariate(1 / 12)), 1),
        "carrier": rng.choice(CARRIERS),
        "origin": origin,
        "dest": dest,
        "aircraft": rng.choice(AIRCRAFT),
    }
    late = dep_delay + 0.4 * wind + rng.gauss(0, 10) > 15
    return row, int(late)


@dataclass(frozen=True)
class Dataset:
    """``--rows`` rows with event times and labels; each path gives them its own ids."""

    features: list[dict[str, Any]]
    labels: list[int]
    event_times: list[datetime]

    @classmethod
    def generate(cls, n: int, seed: int) -> Dataset:
        rng = random.Random(seed)
        pairs = [synthetic_flight(rng) for _ in range(n)]
        start = datetime(2024, 6, 1, 5, 0, tzinfo=UTC)
        times = [start + timedelta(seconds=i) for i in range(n)]
        return cls([p[0] for p in pairs], [p[1] for p in pairs], times)

    def ids(self, prefix: str) -> list[str]:
        return [f"{prefix}-{i:08d}" for i in range(len(self.features))]


def batches(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


# --- set-up: database, Django objects, gunicorn ---------------------------------------------------


class BenchError(RuntimeError):
    """Something went wrong: the run is invalid and the script exits non-zero."""


def scratch_database_name(url: str) -> str:
    """The database named in ``url``, refusing the ones a server cannot do without (it is dropped)."""
    name = str(conninfo_to_dict(url).get("dbname") or "")
    if not name or name in ("postgres", "template0", "template1"):
        raise ValueError(f"the URL must name a scratch database, got {name!r}")
    return name


def recreate_database(url: str) -> None:
    name = sql.Identifier(scratch_database_name(url))
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database(url: str) -> None:
    name = sql.Identifier(scratch_database_name(url))
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@dataclass(frozen=True)
class Fixture:
    deployment_id: int
    version_id: int
    version_number: int
    raw_key: str


def create_fixture(seed: int) -> Fixture:
    """Deployment, live MLP version and ingestion key, made through the services like a user would."""
    import django

    django.setup()
    import torch

    from adaptive.ml.architectures import build_model
    from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
    from adaptive.ml.weights import state_dict_to_bytes
    from adaptive.services.keys import create_key
    from adaptive.services.registry import create_deployment, upload_version

    deployment, _ = create_deployment(
        fields={
            "slug": SLUG,
            "name": "Bench: flight delays",
            "task": "binary",
            "classes": ["on_time", "late"],
            "feature_schema": FEATURE_SCHEMA,
        },
        actor=None,
    )
    schema = parse_schema(FEATURE_SCHEMA)
    fit_rng = random.Random(seed + 1)
    stats = fit_preprocessing(schema, [synthetic_flight(fit_rng)[0] for _ in range(5000)])
    torch.manual_seed(seed)
    config = {"hidden": [64, 32]}
    model = build_model("mlp", config, input_spec(schema, stats), deployment.n_outputs)
    spec = {"architecture": "mlp", "config": config, "preprocessing": stats, "notes": "bench/ingest.py"}
    version, _ = upload_version(deployment=deployment, spec=spec, weights=state_dict_to_bytes(model), actor=None)
    _, raw = create_key(deployment=deployment, name="bench", actor=None)
    from django.db import connections

    connections.close_all()  # the database is dropped at the end; hold no connection to it
    return Fixture(deployment.pk, version.pk, version.number, raw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """A gunicorn master in its own session, so Ctrl-C reaches this script and we stop it in order."""

    def __init__(
        self,
        *,
        workers: int,
        worker_class: str,
        env: dict[str, str],
        log_path: Path,
        extra: Sequence[str] = (),
        cwd: Path = ROOT,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            *extra,
        ]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_healthy(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until /api/v1/health answers ``ok`` or ``degraded``: the database and broker are up (no
        worker needs to run). Anonymous callers get the status only, which is all this needs."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/api/v1/health", timeout=10)
                body = response.json()
                if body.get("status") in ("ok", "degraded"):
                    return dict(body)
                last = f"{response.status_code} {body}"
            except (httpx.TransportError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise BenchError(f"gunicorn not healthy after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: the master stops its workers gracefully
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- running batches concurrently -----------------------------------------------------------------


@dataclass
class Phase:
    """Timing of one path: wall clock from the common start to the last batch, latency per batch."""

    name: str
    rows: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# A client factory opens one client/connection per thread (outside the timed section) and yields
# the function that sends batch number i.
ClientFactory = Callable[[], AbstractContextManager[Callable[[int], None]]]


def run_concurrently(name: str, n_batches: int, rows: int, clients: int, factory: ClientFactory) -> Phase:
    """Send batches 0..n_batches-1 from ``clients`` threads; each takes the next unsent batch."""
    phase = Phase(name, rows)
    next_batch = itertools.count()  # next() on a count is atomic under the GIL
    ready = threading.Barrier(clients + 1)
    failed = threading.Event()
    errors: list[BaseException] = []
    ends: list[float] = []

    def client() -> None:
        try:
            with factory() as send:
                ready.wait()
                for i in next_batch:
                    if i >= n_batches or failed.is_set():
                        break
                    started = time.perf_counter()
                    send(i)
                    phase.latencies_s.append(time.perf_counter() - started)
                ends.append(time.perf_counter())
        except threading.BrokenBarrierError:
            return  # another client failed before the start; its error is reported
        except BaseException as exc:  # any failure, handed to the main thread, which raises it
            errors.append(exc)
            failed.set()
            ready.abort()

    threads = [threading.Thread(target=client, name=f"{name}-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    with suppress(threading.BrokenBarrierError):
        ready.wait()  # broken when a client failed to connect: its error is raised after the join
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"{name}: {len(errors)} client(s) failed; first: {errors[0]!r}") from errors[0]
    if len(phase.latencies_s) != n_batches:
        raise BenchError(f"{name}: sent {len(phase.latencies_s)} of {n_batches} batches")
    phase.wall_s = max(ends) - started
    return phase


def http_clients(url: str, key: str, bodies: list[bytes], check: Callable[[int, Any], None]) -> ClientFactory:
    @contextmanager
    def factory() -> Iterator[Callable[[int], None]]:
        headers = {"Authorization": f"Key {key}", "Content-Type": "application/json"}
        with httpx.Client(headers=headers, timeout=120) as client:

            def send(i: int) -> None:
                response = client.post(url, content=bodies[i])
                if response.status_code != 200:
                    raise BenchError(f"batch {i}: HTTP {response.status_code}: {response.text[:300]}")
                check(i, orjson.loads(response.content))

            yield send

    return factory


def predict_bodies(data: Dataset, ids: list[str], parts: list[range]) -> list[bytes]:
    times = [t.isoformat().replace("+00:00", "Z") for t in data.event_times]
    return [
        orjson.dumps({"rows": [{"id": ids[j], "ts": times[j], "features": data.features[j]} for j in part]})
        for part in parts
    ]


def feedback_bodies(data: Dataset, ids: list[str], parts: list[range]) -> list[bytes]:
    return [orjson.dumps({"labels": [{"id": ids[j], "label": data.labels[j]} for j in part]}) for part in parts]


def run_http(
    server: Gunicorn, url: str, fx: Fixture, data: Dataset, prefix: str, batch: int, clients: int
) -> tuple[Phase, Phase]:
    ids = data.ids(prefix)
    parts = batches(len(ids), batch)
    p_bodies = predict_bodies(data, ids, parts)
    f_bodies = feedback_bodies(data, ids, parts)

    def check_predict(i: int, body: Any) -> None:
        predictions = body["predictions"]
        got = [p["id"] for p in predictions]
        if got != [ids[j] for j in parts[i]]:
            raise BenchError(f"predict batch {i}: answered ids do not match the request")
        if any(p["version"] != fx.version_number or not 0 <= p["score"] <= 1 for p in predictions):
            raise BenchError(f"predict batch {i}: unexpected version or score: {predictions[0]}")

    def check_feedback(i: int, body: Any) -> None:
        if body != {"accepted": len(parts[i]), "unknown": [], "already_labeled": []}:
            raise BenchError(f"feedback batch {i}: {str(body)[:300]}")

    settle(url)
    predict = run_concurrently(
        "predict HTTP",
        len(parts),
        len(ids),
        clients,
        http_clients(f"{server.url}/api/v1/deployments/{SLUG}/predict", fx.raw_key, p_bodies, check_predict),
    )
    settle(url)
    feedback = run_concurrently(
        "feedback HTTP",
        len(parts),
        len(ids),
        clients,
        http_clients(f"{server.url}/api/v1/deployments/{SLUG}/feedback", fx.raw_key, f_bodies, check_feedback),
    )
    return predict, feedback


def run_raw(url: str, fx: Fixture, data: Dataset, prefix: str, batch: int, clients: int) -> tuple[Phase, Phase]:
    """The same writes with psycopg only: what the database can do for this workload."""
    ids = data.ids(prefix)
    parts = batches(len(ids), batch)
    # Exactly what the API stores: features as JSON text, binary scores, no probability vectors.
    # Scores are random: this path measures the database work, not the model.
    rng = random.Random(7)
    scores = [rng.random() for _ in ids]
    features = [orjson.dumps(f).decode() for f in data.features]
    copy_events = sql.SQL("COPY adaptive_event ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
    )

    @contextmanager
    def predict_conn() -> Iterator[Callable[[int], None]]:
        with psycopg.connect(url) as conn:

            def send(i: int) -> None:
                received = datetime.now(UTC)
                with conn.cursor() as cur, cur.copy(copy_events) as copy:
                    for j in parts[i]:
                        s = scores[j]
                        copy.write_row(
                            (
                                fx.deployment_id,
                                ids[j],
                                data.event_times[j],
                                received,
                                features[j],
                                fx.version_id,
                                s,
                                s,
                                None,
                                None,
                            )
                        )
                conn.commit()

            yield send

    @contextmanager
    def feedback_conn() -> Iterator[Callable[[int], None]]:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TEMP TABLE bench_labels (id text NOT NULL, label int2 NOT NULL) ON COMMIT DELETE ROWS")
            conn.commit()

            def send(i: int) -> None:
                with conn.cursor() as cur:
                    with cur.copy("COPY bench_labels (id, label) FROM STDIN") as copy:
                        for j in parts[i]:
                            copy.write_row((ids[j], data.labels[j]))
                    cur.execute(
                        "UPDATE adaptive_event e SET label = t.label, labeled_at = now() FROM bench_labels t "
                        "WHERE e.deployment_id = %s AND e.external_id = t.id AND e.label IS NULL",
                        [fx.deployment_id],
                    )
                    if cur.rowcount != len(parts[i]):
                        raise BenchError(f"raw feedback batch {i}: updated {cur.rowcount} of {len(parts[i])}")
                conn.commit()

            yield send

    settle(url)
    predict = run_concurrently("predict raw", len(parts), len(ids), clients, predict_conn)
    settle(url)
    feedback = run_concurrently("feedback raw", len(parts), len(ids), clients, feedback_conn)
    return predict, feedback


def settle(url: str) -> None:
    """Vacuum, analyze and checkpoint before every timed phase, on both paths alike.

    No phase then pays for the previous one's dead tuples or dirty pages, and the planner sees the
    rows as they are: feedback follows predict within seconds here, where in production autovacuum
    would have analyzed the table in between. Statistics that still say "every event is labeled"
    while thousands are not make PostgreSQL pick a sequential scan for the label UPDATE on a small
    table (see bench/README.md).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) adaptive_event")
        # CHECKPOINT needs superuser or pg_checkpoint; without it the vacuum still evens out most.
        with suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def check_stored(url: str, fx: Fixture, data: Dataset, prefix: str) -> None:
    """Every row stored exactly once, with its label: the unique constraint forbids doubles."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT external_id), count(label), coalesce(sum(label), 0) "
            "FROM adaptive_event WHERE deployment_id = %s AND external_id LIKE %s",
            [fx.deployment_id, f"{prefix}-%"],
        ).fetchone()
    assert row is not None
    expected = (len(data.features), len(data.features), len(data.features), sum(data.labels))
    if tuple(row) != expected:
        raise BenchError(
            f"rows {prefix!r}: (count, distinct, labeled, sum of labels) = {tuple(row)}, expected {expected}"
        )


# --- report ---------------------------------------------------------------------------------------


PATHS = {
    "predict HTTP": "predict HTTP",
    "predict raw": "predict raw (COPY)",
    "feedback HTTP": "feedback HTTP",
    "feedback raw": "feedback raw (COPY+UPDATE)",
}


def report(args: argparse.Namespace, server_info: str, runs: dict[str, list[Phase]]) -> None:
    """Median rows/s over the repetitions; latencies pooled over all batches of all repetitions."""
    print()
    print(
        f"ingest benchmark: {args.rows} rows x {args.repeat} runs per path, batch {args.batch}, "
        f"{args.clients} clients, {args.workers} gunicorn workers ({args.worker_class}), "
        f"{os.cpu_count()} CPUs, {server_info}"
    )
    print()
    print(f"{'path':<28}{'rows/s':>9}{'p50 ms':>9}{'p95 ms':>9}   rows/s of each run")
    for key, label in PATHS.items():
        pooled = Phase(key, 0, latencies_s=[t for p in runs[key] for t in p.latencies_s])
        each = ", ".join(f"{p.rows_per_s:,.0f}" for p in runs[key])
        print(
            f"{label:<28}{median_rate(runs[key]):>9,.0f}{pooled.percentile_ms(0.5):>9.1f}"
            f"{pooled.percentile_ms(0.95):>9.1f}   {each}"
        )
    print()
    note = "" if args.batch == TARGET_BATCH else f"  (targets are set for batch {TARGET_BATCH})"
    for kind, target in TARGETS.items():
        http, raw = runs[f"{kind} HTTP"], runs[f"{kind} raw"]
        ratio = median_rate(http) / median_rate(raw)
        each = ", ".join(f"{h.rows_per_s / r.rows_per_s:.2f}" for h, r in zip(http, raw, strict=True))
        verdict = "PASS" if ratio >= target else "MISS"
        print(f"{kind:<9} HTTP/raw = {ratio:4.2f}   target >= {target:.2f}   {verdict}   (each run: {each}){note}")


def median_rate(phases: list[Phase]) -> float:
    return statistics.median(p.rows_per_s for p in phases)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per path (default 100000)")
    parser.add_argument("--batch", type=int, default=500, help="rows per request / COPY (default 500)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients / connections (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="scratch database, dropped first")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of both paths, alternating; medians are reported (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and artifacts afterwards")
    args = parser.parse_args(argv)
    for name in ("rows", "batch", "clients", "workers", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        scratch_database_name(args.database_url)
    except (ValueError, psycopg.ProgrammingError) as exc:  # ProgrammingError: not a connection URL
        parser.error(f"--database-url: {exc}")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "HTTPS": "0",
        "DJANGO_DEBUG": "0",
        "ARTIFACT_ROOT": str(workdir / "artifacts"),
        "VAR_DIR": str(workdir / "var"),  # keep the broker folders and static root out of the checkout
        "MAX_BATCH_ROWS": str(max(5000, args.batch)),
        "TORCH_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "LOG_LEVEL": "WARNING",
    }
    (workdir / "var" / "staticfiles").mkdir(parents=True)  # whitenoise warns about a missing one
    server: Gunicorn | None = None
    created = False
    try:
        print(f"database {args.database_url}: recreating and migrating", flush=True)
        recreate_database(args.database_url)
        created = True
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        fixture = create_fixture(args.seed)
        data = Dataset.generate(args.rows, args.seed)

        log_path = workdir / "gunicorn.log"
        server = Gunicorn(workers=args.workers, worker_class=args.worker_class, env=env, log_path=log_path)
        health = server.wait_healthy()
        print(f"gunicorn on {server.url}, health: {health.get('status')}; warming up", flush=True)
        # Every worker loads the model and opens its database connection before the clock starts.
        warm = Dataset.generate(max(args.batch, 50) * args.workers * 4, args.seed + 2)
        run_http(server, args.database_url, fixture, warm, "warm", max(args.batch // 4, 10), args.clients)

        # Both paths in turn, several times: a phase lasts a few seconds on this machine, so one run
        # is at the mercy of a background hiccup, and alternating spreads the table's growth evenly.
        runs: dict[str, list[Phase]] = {key: [] for key in PATHS}
        for run in range(args.repeat):
            http = run_http(server, args.database_url, fixture, data, f"h{run}", args.batch, args.clients)
            check_stored(args.database_url, fixture, data, f"h{run}")
            raw = run_raw(args.database_url, fixture, data, f"r{run}", args.batch, args.clients)
            check_stored(args.database_url, fixture, data, f"r{run}")
            for phase in (*http, *raw):
                runs[phase.name].append(phase)
            print(
                f"run {run + 1}/{args.repeat}: "
                + ", ".join(f"{phase.name} {phase.rows_per_s:,.0f}" for phase in (*http, *raw))
                + " rows/s",
                flush=True,
            )
        with psycopg.connect(args.database_url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        report(args, f"PostgreSQL {version[0] if version else '?'}", runs)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, subprocess.CalledProcessError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if server is not None:
            print(f"gunicorn log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept database {args.database_url} and {workdir}", file=sys.stderr)
        else:
            if created:
                drop_database(args.database_url)
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
