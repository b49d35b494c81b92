"""Predict benchmark: what compensation costs a predict request, against the same endpoint with it off.

    .venv/bin/python bench/predict.py [--batches 10] [--rounds 10] [--memory-size 100000]
        [--kinds exact,sketch] [--db postgres|sqlite] [--database-url URL] [--architecture deepfm|mlp]
        [--keep]

Target: compensation overhead in predict (batch 256, 100k-entry memory) at most 20% over the same
endpoint with compensation off, measured in one run.

What it does (see bench/README.md):

1. creates the database (PostgreSQL: drops and re-creates ``--database-url``; SQLite: a file in a
   temporary folder) and migrates it;
2. per memory kind, a binary deployment on the nycflights13 stream's schema (``adaptive.ml.streams``,
   11 numeric and 4 categorical features) with an untrained DeepFM [64, 32] (41-dim keys; random
   weights: the cost of a read does not depend on what the model learned), preprocessing fitted on
   the first flights and the key mean of the model on them; its error memory is ``--memory-size``
   ErrorSamples written directly (keys, base scores and labels of real flights embedded by that
   model), revision 1, and ``Deployment.memory_revision = 1``. The exact memory's capacity is the
   memory size, so every sample is read;
3. starts gunicorn (one sync worker, ``TORCH_NUM_THREADS=1`` like bin/up) and warms it up: the first
   request of each deployment loads the model and rebuilds the memory from its samples (timed);
4. alternates rounds: per round and kind, ``--batches`` requests of 256 later flights with
   compensation on, then as many with it off (the order flips every round), toggled through the ORM
   between the two (the API reads the deployment row on every request); every request gets new ids,
   so every request stores 256 events on both arms;
5. prints per kind and arm requests/s, rows/s, p50/p95 latency, the overhead
   ``time(on) / time(off) - 1`` (summed latencies of all rounds) against the 20% target, and an
   in-process breakdown of one request's compute (``memory.estimate`` against encoding and the
   forward pass; for the exact memory also a bare matmul of the same shape) on the same rows, one
   thread.

One client sends requests one after another: latency is the server's time per request plus the
loopback, and requests/s is 1 / mean latency. Responses are checked: with compensation on every row
answers at memory revision 1 and scores move away from the base scores; with it off every score is
its base score. The exit status is 0 whether the target is met or not, non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.ingest) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import BenchError, Gunicorn, drop_database, recreate_database, scratch_database_name  # noqa: E402

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_predict"
TARGET_OVERHEAD: Final = 0.20
# The model: the architecture defaults (and stream_replay's sizes), untrained.
MODEL_CONFIGS: Final[dict[str, dict[str, Any]]] = {
    "deepfm": {"hidden": [64, 32], "embedding_dim": 8, "dropout": 0.0},
    "mlp": {"hidden": [64, 32], "embedding_dim": 8, "dropout": 0.0},
}
# Flights the preprocessing stats and the key mean are fitted on (the stream's first ones).
FIT_ROWS: Final = 20_000
MIN_VOCAB_COUNT: Final = 3
# Query rows are drawn (cyclically) from this many flights after the memory's.
QUERY_POOL: Final = 20_000
INSERT_BATCH: Final = 5_000


# --- the flights stream and a deployment on it -----------------------------------------------------


@dataclass(frozen=True)
class Flights:
    """Rows of the flights dev stream in the API's JSON form, with labels and ISO event times."""

    schema: list[dict[str, str]]
    rows: list[dict[str, Any]]
    labels: list[int]
    times: list[str]

    @classmethod
    def load(cls, limit: int | None = None) -> Flights:
        from adaptive.ml.streams import load_stream

        stream = load_stream("flights", limit=limit)
        times = [f"{t}Z" for t in stream.times.astype(str)]
        return cls(stream.schema, stream.rows, [int(y) for y in stream.labels], times)

    @staticmethod
    def memory_row(i: int, query_start: int) -> int:
        """Row of the ``i``-th memory sample: the flights before the query pool, cycled."""
        return i % query_start

    @staticmethod
    def query_row(i: int, query_start: int) -> int:
        """Row of the ``i``-th query: the ``QUERY_POOL`` flights after the memory's, cycled."""
        return query_start + i % QUERY_POOL


@dataclass(frozen=True)
class ModelSpec:
    """An untrained version on the flights schema: the upload spec, its weights, and the model."""

    architecture: str
    spec: dict[str, Any]
    weights: bytes
    model: Any  # TabularModel
    encoder: Any  # FeatureEncoder
    key_mean: Any  # torch.Tensor

    @property
    def key_dim(self) -> int:
        return int(self.model.hidden_dim)

    @property
    def description(self) -> str:
        config = self.spec["config"]
        return f"{self.architecture} {config['hidden']} (embedding {config['embedding_dim']}, key dim {self.key_dim})"


def build_model_spec(flights: Flights, architecture: str, seed: int) -> ModelSpec:
    import torch

    from adaptive.ml.architectures import build_model
    from adaptive.ml.compensation import fit_key_mean
    from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, input_spec, parse_schema
    from adaptive.ml.weights import state_dict_to_bytes

    schema = parse_schema(flights.schema)
    fit = flights.rows[:FIT_ROWS]
    stats = fit_preprocessing(schema, fit, min_count=MIN_VOCAB_COUNT)
    torch.manual_seed(seed)
    config = MODEL_CONFIGS[architecture]
    model = build_model(architecture, config, input_spec(schema, stats), 1)
    model.eval()
    encoder = FeatureEncoder(schema, stats)
    key_mean = fit_key_mean(model, encoder.encode(fit))
    spec = {
        "architecture": architecture,
        "config": config,
        "preprocessing": stats,
        "key_mean": [float(v) for v in key_mean],
        "notes": "bench: untrained, random weights",
    }
    return ModelSpec(architecture, spec, state_dict_to_bytes(model), model, encoder, key_mean)


@dataclass(frozen=True)
class Fixture:
    slug: str
    deployment_id: int
    version_id: int
    raw_key: str


def create_deployment(slug: str, flights: Flights, model: ModelSpec, **settings: Any) -> Fixture:
    """Deployment, live version and ingestion key, through the services like a user would."""
    from adaptive.services.keys import create_key
    from adaptive.services.registry import create_deployment as create
    from adaptive.services.registry import upload_version

    fields = {
        "slug": slug,
        "name": f"Bench: flight delays ({slug})",
        "task": "binary",
        "classes": ["on_time", "late"],
        "feature_schema": flights.schema,
        # The full correction: these benchmarks time the memory's path and look for its effect on
        # a score. The gate only scales the correction; readout and correction are computed (and
        # cost the same) whatever the strength it has learned.
        "compensation_gate": False,
        **settings,
    }
    deployment, _ = create(fields=fields, actor=None)
    version, _ = upload_version(deployment=deployment, spec=model.spec, weights=model.weights, actor=None)
    _, raw = create_key(deployment=deployment, name="bench", actor=None)
    return Fixture(slug, deployment.pk, version.pk, raw)


def fill_memory(fixture: Fixture, flights: Flights, model: ModelSpec, size: int, query_start: int) -> None:
    """``size`` ErrorSamples at revision 1 from the first flights (cycled), then revision 1 goes live."""
    import torch
    from django.db import connection, transaction
    from django.utils import timezone

    from adaptive.ml.architectures import logits_to_proba
    from adaptive.ml.compensation import keys_from_hidden
    from adaptive.models import Deployment, ErrorSample
    from adaptive.runtime import encode_keys

    now = timezone.now()
    table = ErrorSample._meta.db_table
    written_at = connection.ops.adapt_datetimefield_value(now)
    with transaction.atomic():
        for start in range(0, size, INSERT_BATCH):
            part = [flights.memory_row(i, query_start) for i in range(start, min(start + INSERT_BATCH, size))]
            with torch.inference_mode():
                h = model.model.embed(model.encoder.encode([flights.rows[j] for j in part]))
                scores = logits_to_proba(model.model.head(h)).double().tolist()
                keys = encode_keys(keys_from_hidden(h, model.key_mean))
            # executemany rather than bulk_create: Django compiles a 1000-row INSERT slower than
            # the database runs it.
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} (deployment_id, version_id, key, label, base_score, revision, written_at, "
                    "active) VALUES (%s, %s, %s, %s, %s, 1, %s, %s)",
                    [
                        (fixture.deployment_id, fixture.version_id, key, flights.labels[j], score, written_at, True)
                        for j, key, score in zip(part, keys, scores, strict=True)
                    ],
                )
        Deployment.objects.filter(pk=fixture.deployment_id).update(memory_revision=1)


# --- environment, database and server --------------------------------------------------------------


def bench_env(workdir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of gunicorn, the Celery worker and this process's Django.

    The broker is the file-system one in the temporary folder unless ``extra`` names one (predict
    sends no task); results go where the broker's settings put them.
    """
    inherited = {k: v for k, v in os.environ.items() if k not in ("CELERY_RESULT_BACKEND", "DB_CONN_MAX_AGE")}
    return {
        **inherited,
        "CELERY_BROKER_URL": "filesystem://",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "HTTPS": "0",
        "DJANGO_DEBUG": "0",
        "ARTIFACT_ROOT": str(workdir / "artifacts"),
        "VAR_DIR": str(workdir / "var"),  # broker folders and static root out of the checkout
        "TORCH_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def database_url(db: str, url: str, workdir: Path) -> str:
    return url if db == "postgres" else f"sqlite:///{workdir / 'bench.sqlite3'}"


def prepare_database(db: str, url: str, env: dict[str, str]) -> None:
    """Create (PostgreSQL: drop and re-create) and migrate; then set up Django in this process."""
    (Path(env["VAR_DIR"]) / "staticfiles").mkdir(parents=True, exist_ok=True)  # whitenoise warns otherwise
    if db == "postgres":
        recreate_database(url)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def close_django_connections() -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def server_description(db: str, url: str) -> str:
    if db == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (WAL)"
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def load_average(before: float) -> str:
    """The 1-minute load average before and after the measurement: other work on the box shows here."""
    return f"{before:.1f} -> {os.getloadavg()[0]:.1f}"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class Arm:
    """One memory kind with compensation on or off: latency of every request, per round."""

    kind: str
    on: bool
    rows_per_request: int
    rounds: list[list[float]] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [t for r in self.rounds for t in r]

    @property
    def seconds(self) -> float:
        return sum(self.latencies)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def rows_per_s(self) -> float:
        return len(self.latencies) * self.rows_per_request / self.seconds


class Client:
    """One keep-alive client for a deployment's predict endpoint with fresh ids on every request."""

    def __init__(self, base_url: str, fixture: Fixture, flights: Flights, query_start: int, batch: int) -> None:
        self.url = f"{base_url}/api/v1/deployments/{fixture.slug}/predict"
        self.http = httpx.Client(
            headers={"Authorization": f"Key {fixture.raw_key}", "Content-Type": "application/json"}, timeout=120
        )
        self.flights = flights
        self.query_start = query_start
        self.batch = batch
        self.sent = 0
        self.slug = fixture.slug

    def body(self, tag: str) -> tuple[list[str], bytes]:
        ids, rows = [], []
        for _ in range(self.batch):
            j = Flights.query_row(self.sent, self.query_start)
            ids.append(f"{tag}-{self.sent:09d}")
            rows.append({"id": ids[-1], "ts": self.flights.times[j], "features": self.flights.rows[j]})
            self.sent += 1
        return ids, orjson.dumps({"rows": rows})

    def send(self, tag: str) -> tuple[float, list[dict[str, Any]]]:
        """One request; returns its latency (send to last byte) and the predictions."""
        ids, body = self.body(tag)
        started = time.perf_counter()
        response = self.http.post(self.url, content=body)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"{self.slug}: HTTP {response.status_code}: {response.text[:300]}")
        predictions: list[dict[str, Any]] = orjson.loads(response.content)["predictions"]
        if [p["id"] for p in predictions] != ids:
            raise BenchError(f"{self.slug}: answered ids do not match the request")
        return elapsed, predictions

    def close(self) -> None:
        self.http.close()


def check_predictions(kind: str, on: bool, predictions: list[dict[str, Any]]) -> None:
    """Compensation on: revision 1 and some scores moved; off: every score is its base score."""
    if on:
        if {p["memory_revision"] for p in predictions} != {1}:
            raise BenchError(f"{kind}: expected memory revision 1, got {predictions[0]['memory_revision']}")
        if all(p["score"] == p["base_score"] for p in predictions):
            raise BenchError(f"{kind}: compensation on, but no score differs from its base score")
    elif any(p["score"] != p["base_score"] for p in predictions):
        raise BenchError(f"{kind}: compensation off, but a score differs from its base score")


def set_compensation(fixture: Fixture, on: bool) -> None:
    from adaptive.models import Deployment

    Deployment.objects.filter(pk=fixture.deployment_id).update(compensation_enabled=on)


# --- in-process breakdown ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    """Median milliseconds per batch of the compute steps of one predict request, one thread."""

    memory_load_s: float
    encode_ms: float
    forward_ms: float
    estimate_ms: float
    compensate_ms: float
    # Exact memories: one dense [batch x D] @ [D x size] product, the floor of a full scan.
    matmul_ms: float | None


def breakdown(fixture: Fixture, flights: Flights, query_start: int, batch: int, reps: int) -> Breakdown:
    """The steps of ``score_hosted`` timed one by one in this process, on a fresh runtime."""
    import torch

    from adaptive import runtime
    from adaptive.ml.architectures import logits_to_proba
    from adaptive.ml.compensation import compensate, keys_from_hidden
    from adaptive.ml.memory import EXACT_CHUNK_ELEMENTS
    from adaptive.models import Deployment

    deployment = Deployment.objects.select_related("live_version").get(pk=fixture.deployment_id)
    assert deployment.live_version is not None
    loaded = runtime.load_version(deployment, deployment.live_version)
    started = time.perf_counter()
    live = runtime.live_memory(deployment, fixture.version_id, loaded.model.hidden_dim)
    memory_load_s = time.perf_counter() - started
    config = runtime.compensation_config(deployment)
    steps = ("encode", "forward", "estimate", "compensate")
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.inference_mode():
        for r in range(reps):
            rows = [flights.rows[flights.query_row(i, query_start)] for i in range(r * batch, (r + 1) * batch)]
            clock = [time.perf_counter()]
            encoded = loaded.encoder.encode(rows)
            clock.append(time.perf_counter())
            h = loaded.model.embed(encoded)
            p_base, keys = logits_to_proba(loaded.model.head(h)), keys_from_hidden(h, loaded.key_mean)
            clock.append(time.perf_counter())
            readout = live.memory.estimate(keys)
            clock.append(time.perf_counter())
            compensate(p_base, readout, config)
            clock.append(time.perf_counter())
            for name, start, end in zip(steps, clock, clock[1:], strict=False):
                times[name].append(1000 * (end - start))
    matmul_ms = None
    if deployment.memory_kind == Deployment.MemoryKind.EXACT:
        # In blocks of the engine's width into one reused buffer, as ExactMemory scans: one product of
        # the full width would spend as long in page faults on its 100 MB result as in arithmetic.
        stored = torch.nn.functional.normalize(torch.randn(len(live.memory), keys.shape[1]), dim=1)
        width = min(max(1, EXACT_CHUNK_ELEMENTS // batch), len(stored))
        scratch = torch.empty(batch * width)
        scans = []
        for _ in range(max(3, reps // 3)):
            started = time.perf_counter()
            for start in range(0, len(stored), width):
                block = stored[start : start + width]
                torch.mm(keys, block.t(), out=scratch[: batch * len(block)].view(batch, len(block)))
            scans.append(1000 * (time.perf_counter() - started))
        matmul_ms = statistics.median(scans)
    runtime.clear_cache()
    medians = {f"{name}_ms": statistics.median(times[name]) for name in steps}
    return Breakdown(memory_load_s=memory_load_s, matmul_ms=matmul_ms, **medians)


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="requests per arm and round (default 10)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of on/off per memory kind (default 10)")
    parser.add_argument("--batch", type=int, default=256, help="rows per request (default 256)")
    parser.add_argument("--memory-size", type=int, default=100_000, help="ErrorSamples per memory (default 100000)")
    parser.add_argument("--kinds", default="exact,sketch", help="memory kinds, comma-separated (default exact,sketch)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres", help="database (default postgres)")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="with --db postgres: a scratch database, dropped first"
    )
    parser.add_argument("--architecture", choices=sorted(MODEL_CONFIGS), default="deepfm")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per arm before the rounds")
    parser.add_argument("--breakdown-reps", type=int, default=30, help="batches timed in process (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    for name in ("batches", "rounds", "batch", "memory_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if (
        not args.kinds
        or any(k not in ("exact", "sketch") for k in args.kinds)
        or len(set(args.kinds)) < len(args.kinds)
    ):
        parser.error("--kinds: a comma-separated list of exact and sketch")
    if args.db == "postgres":
        try:
            scratch_database_name(args.database_url)
        except (ValueError, psycopg.ProgrammingError) as exc:
            parser.error(f"--database-url: {exc}")
    return args


def report(
    args: argparse.Namespace,
    model: ModelSpec,
    server_info: str,
    arms: dict[tuple[str, bool], Arm],
    first_request_s: dict[str, float],
    parts: dict[str, Breakdown],
    load_average: str,
) -> None:
    print()
    print(
        f"predict benchmark: batch {args.batch}, {args.memory_size:,}-entry memory, {model.description}, "
        f"{args.rounds} rounds x {args.batches} requests per arm, 1 gunicorn worker (sync, TORCH_NUM_THREADS=1), "
        f"{os.cpu_count()} CPUs, {server_info}, load average {load_average}"
    )
    print()
    print(f"{'memory':<8}{'compensation':<14}{'requests/s':>11}{'rows/s':>10}{'p50 ms':>9}{'p95 ms':>9}")
    for kind in args.kinds:
        for on in (True, False):
            arm = arms[kind, on]
            print(
                f"{kind:<8}{'on' if on else 'off':<14}{arm.requests_per_s:>11.1f}{arm.rows_per_s:>10,.0f}"
                f"{1000 * percentile(arm.latencies, 0.5):>9.1f}{1000 * percentile(arm.latencies, 0.95):>9.1f}"
            )
    print()
    for kind in args.kinds:
        arm_on, arm_off = arms[kind, True], arms[kind, False]
        overhead = arm_on.seconds / arm_off.seconds - 1
        rounds = [sum(a) / sum(b) - 1 for a, b in zip(arm_on.rounds, arm_off.rounds, strict=True)]
        verdict = "PASS" if overhead <= TARGET_OVERHEAD else "MISS"
        print(
            f"{kind:<7} overhead = time(on)/time(off) - 1 = {overhead:+.1%}   target <= {TARGET_OVERHEAD:.0%}   "
            f"{verdict}   (median of rounds {statistics.median(rounds):+.1%}; each round: "
            + ", ".join(f"{r:+.1%}" for r in rounds)
            + ")"
        )
    print()
    print("first request of each deployment (loads the model and rebuilds the memory from its samples):")
    for kind in args.kinds:
        print(f"  {kind:<7} {first_request_s[kind]:.2f} s")
    if parts:
        print()
        print(
            f"in process, one thread, median ms per batch of {args.batch} over {args.breakdown_reps} batches "
            "(HTTP off p50 for scale):"
        )
        print(
            f"  {'memory':<8}{'encode':>8}{'forward+keys':>14}{'estimate':>10}{'compensate':>12}"
            f"{'HTTP off p50':>14}{'estimate/off':>14}{'memory load s':>15}"
        )
        for kind, part in parts.items():
            off_p50 = 1000 * percentile(arms[kind, False].latencies, 0.5)
            print(
                f"  {kind:<8}{part.encode_ms:>8.2f}{part.forward_ms:>14.2f}{part.estimate_ms:>10.2f}"
                f"{part.compensate_ms:>12.3f}{off_p50:>14.1f}{part.estimate_ms / off_p50:>14.1%}"
                f"{part.memory_load_s:>15.2f}"
            )
        for kind, part in parts.items():
            if part.matmul_ms is not None:
                print(
                    f"  {kind}: of its {part.estimate_ms:.1f} ms read, one dense [{args.batch} x {model.key_dim}] "
                    f"@ [{model.key_dim} x {args.memory_size:,}] product (the similarities) takes "
                    f"{part.matmul_ms:.1f} ms; the other {part.estimate_ms - part.matmul_ms:.1f} ms select the top k "
                    "of every row and weigh them"
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    url = database_url(args.db, args.database_url, workdir)
    env = bench_env(workdir, url, MAX_BATCH_ROWS=str(max(5000, args.batch)))
    server: Gunicorn | None = None
    created = False
    clients: list[Client] = []
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, env)
        query_start = min(args.memory_size, 200_000)
        flights = Flights.load(query_start + QUERY_POOL)
        model = build_model_spec(flights, args.architecture, args.seed)
        fixtures: dict[str, Fixture] = {}
        for kind in args.kinds:
            started = time.perf_counter()
            fixtures[kind] = create_deployment(
                f"bench-{kind}", flights, model, memory_kind=kind, memory_capacity=max(args.memory_size, 50_000)
            )
            fill_memory(fixtures[kind], flights, model, args.memory_size, query_start)
            print(
                f"{kind}: deployment and {args.memory_size:,} error samples in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        close_django_connections()

        server = Gunicorn(workers=1, worker_class="sync", env=env, log_path=workdir / "gunicorn.log")
        health = server.wait_healthy()
        print(f"gunicorn on {server.url}, health: {health.get('status')}; warming up", flush=True)
        clients_by_kind = {
            kind: Client(server.url, fixtures[kind], flights, query_start, args.batch) for kind in args.kinds
        }
        clients = list(clients_by_kind.values())
        first_request_s: dict[str, float] = {}
        for kind, client in clients_by_kind.items():
            for on in (True, False):
                set_compensation(fixtures[kind], on)
                for i in range(max(1, args.warmup)):
                    elapsed, predictions = client.send(f"w{int(on)}")
                    check_predictions(kind, on, predictions)
                    if on and i == 0:
                        first_request_s[kind] = elapsed

        arms = {(k, on): Arm(k, on, args.batch) for k in args.kinds for on in (True, False)}
        load_before = os.getloadavg()[0]
        for r in range(args.rounds):
            for kind, client in clients_by_kind.items():
                for on in (True, False) if r % 2 == 0 else (False, True):
                    set_compensation(fixtures[kind], on)
                    close_django_connections()  # hold no connection (or SQLite lock) while timing
                    latencies = []
                    for _ in range(args.batches):
                        elapsed, predictions = client.send(f"r{r}{int(on)}")
                        check_predictions(kind, on, predictions)
                        latencies.append(elapsed)
                    arms[kind, on].rounds.append(latencies)
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(
                    f"{kind} on {statistics.median(arms[kind, True].rounds[-1]) * 1000:.1f} ms / "
                    f"off {statistics.median(arms[kind, False].rounds[-1]) * 1000:.1f} ms"
                    for kind in args.kinds
                )
                + " (medians)",
                flush=True,
            )
        server.stop()  # frees its core for the in-process timing
        parts: dict[str, Breakdown] = {}
        if args.breakdown_reps > 0:
            for kind in args.kinds:
                set_compensation(fixtures[kind], True)
                parts[kind] = breakdown(fixtures[kind], flights, query_start, args.batch, args.breakdown_reps)
        info = server_description(args.db, url)
        close_django_connections()
        report(args, model, info, arms, first_request_s, parts, load_average(load_before))
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
        for client in clients:
            client.close()
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
