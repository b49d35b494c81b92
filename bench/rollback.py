"""Rollback benchmark: the server time of a rollback (and a promotion) when each version has a 100k-entry memory.

    .venv/bin/python bench/rollback.py [--samples 100000] [--rounds 50] [--db postgres|sqlite]
        [--database-url postgresql://root@127.0.0.1:5432/bench_rollback] [--predict-reps 5]
        [--fresh-workers 3] [--no-http] [--keep]

Target (the "Slow loop" issue): a rollback takes under 100 ms of server time with a 100k-entry error
memory. Judged on the p95 of the service call and of the endpoint's ``took_ms``.

What it does (see bench/README.md):

1. creates the database (PostgreSQL: drops and re-creates ``--database-url``; SQLite: a file in a
   temporary folder) and migrates it;
2. creates a binary deployment (bench/ingest.py's 16 flight features, an untrained MLP [64, 32], so
   32-dim keys) with two versions, v2 live, an exact memory whose capacity is ``--samples``, and an
   operator with an API token, all through the services; then writes ``--samples`` ErrorSamples per
   version straight into the table (random unit keys of the hidden dim, labels, base scores;
   v1's revisions first), sets the deployment's memory revision past them and (PostgreSQL) vacuums
   and analyzes the table, as autovacuum would have by then;
3. service path: ``--rounds`` times, ``releases.rollback`` to v1 then ``releases.promote`` of v2,
   each call's wall time in this process (one transaction: lock, switch, release, audit, commit);
4. first predict after a rollback, in this process (``--predict-rows`` rows): with the memories
   cached (the process served v1 before the promotion), and with the runtime's caches cleared, the
   stand-in for a fresh process: the model is loaded and v1's memory rebuilt from its samples; a
   second predict gives the steady state;
5. HTTP path (unless ``--no-http``): gunicorn (one sync worker), ``--rounds`` times
   ``POST .../rollback {"version": 1}`` then ``POST .../promote {"version": 2}``, the server's
   ``took_ms`` and the client's round trip; then the first predict after a rollback in the worker
   that served v1 before, and in ``--fresh-workers`` freshly started gunicorns (a real new process);
6. prints p50/p95/max per path and PASS/MISS against 100 ms; drops the database (unless --keep).

The exit status is 0 whether the target is met or not, non-zero when anything fails (a refused
action, a release that did not switch, a predict served by the wrong version).
"""

from __future__ import annotations

import argparse
import os
import random
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
import numpy as np
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.ingest) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    FEATURE_SCHEMA,
    BenchError,
    Gunicorn,
    drop_database,
    scratch_database_name,
    synthetic_flight,
)

# The environment of the bench's processes: a file-system broker in the temporary folder, so no
# message the bench's actions send reaches a worker serving another database.
from bench.predict import (  # noqa: E402
    bench_env,
    close_django_connections,
    prepare_database,
    server_description,
)

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_rollback"
SLUG: Final = "bench-rollback"
TARGET_MS: Final = 100.0
HIDDEN: Final = [64, 32]
INSERT_BATCH: Final = 5_000
OPERATOR: Final = "bench-operator"


# --- set-up: environment, database, deployment, memories ------------------------------------------


@dataclass(frozen=True)
class Fixture:
    deployment_id: int
    versions: dict[int, int]  # number -> id
    hidden_dim: int
    token: str


def create_fixture(samples: int, seed: int) -> Fixture:
    """The deployment with v1 and v2 (v2 live) and an operator with a token, through the services."""
    import torch
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from adaptive.ml.architectures import build_model
    from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
    from adaptive.ml.weights import state_dict_to_bytes
    from adaptive.services import releases
    from adaptive.services.registry import create_deployment, upload_version
    from adaptive.services.tokens import create_token

    deployment, _ = create_deployment(
        fields={
            "slug": SLUG,
            "name": "Bench: rollback",
            "task": "binary",
            "classes": ["on_time", "late"],
            "feature_schema": FEATURE_SCHEMA,
            # Every sample of a version is in its memory: the rebuild reads them all.
            "memory_capacity": samples,
        },
        actor=None,
    )
    schema = parse_schema(FEATURE_SCHEMA)
    fit_rng = random.Random(seed + 1)
    stats = fit_preprocessing(schema, [synthetic_flight(fit_rng)[0] for _ in range(2000)])
    versions: dict[int, int] = {}
    hidden_dim = 0
    for number in (1, 2):
        torch.manual_seed(seed + number)
        config = {"hidden": HIDDEN}
        model = build_model("mlp", config, input_spec(schema, stats), deployment.n_outputs)
        hidden_dim = model.hidden_dim
        spec = {
            "architecture": "mlp",
            "config": config,
            "preprocessing": stats,
            "notes": f"bench/rollback.py v{number}",
        }
        version, _ = upload_version(deployment=deployment, spec=spec, weights=state_dict_to_bytes(model), actor=None)
        versions[version.number] = version.pk
    releases.promote(deployment=deployment, number=2, actor=None, reason="bench: v2 live")
    user = get_user_model().objects.create_user(OPERATOR, password=secrets.token_urlsafe(16))
    user.groups.add(Group.objects.get(name="operator"))
    _, token = create_token(user=user, name="bench", actor=None)
    return Fixture(deployment.pk, versions, hidden_dim, token)


def fill_memories(db: str, fixture: Fixture, samples: int, seed: int) -> None:
    """``samples`` ErrorSamples per version: random unit keys, labels, base scores; v1's revisions first."""
    from django.db import connection, transaction
    from django.utils import timezone

    from adaptive.models import Deployment, ErrorSample

    rng = np.random.default_rng(seed)
    table = ErrorSample._meta.db_table
    written_at = connection.ops.adapt_datetimefield_value(timezone.now())
    revision = 0
    with transaction.atomic():
        for number in (1, 2):
            for start in range(0, samples, INSERT_BATCH):
                n = min(INSERT_BATCH, samples - start)
                keys = rng.standard_normal((n, fixture.hidden_dim)).astype("<f4")
                keys /= np.linalg.norm(keys, axis=1, keepdims=True)
                labels = (rng.random(n) < 0.35).astype(int).tolist()
                scores = rng.random(n).tolist()
                rows = []
                for i in range(n):
                    revision += 1
                    rows.append(
                        (
                            fixture.deployment_id,
                            fixture.versions[number],
                            keys[i].tobytes(),
                            labels[i],
                            scores[i],
                            revision,
                            written_at,
                            True,
                        )
                    )
                # executemany rather than bulk_create: Django compiles a 1000-row INSERT slower than
                # the database runs it.
                with connection.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO {table} (deployment_id, version_id, key, label, base_score, revision, "
                        "written_at, active) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        rows,
                    )
        Deployment.objects.filter(pk=fixture.deployment_id).update(memory_revision=revision)
    if db == "postgres":
        # What autovacuum does soon after a bulk load: statistics for the planner and a visibility
        # map, so counting a version's samples is an index-only scan.
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {table}")


# --- measuring ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Series:
    """Milliseconds of one path."""

    name: str
    ms: list[float] = field(default_factory=list)

    def row(self) -> str:
        if not self.ms:
            return f"{self.name:<48}{0:>5}{'-':>10}{'-':>10}{'-':>10}"
        return (
            f"{self.name:<48}{len(self.ms):>5}{statistics.median(self.ms):>10.1f}"
            f"{percentile(self.ms, 0.95):>10.1f}{max(self.ms):>10.1f}"
        )


def live_number(fixture: Fixture) -> int:
    from adaptive.models import Deployment

    number: int = (
        Deployment.objects.filter(pk=fixture.deployment_id).values_list("live_version__number", flat=True).get()
    )
    return number


def service_rounds(fixture: Fixture, rounds: int) -> tuple[Series, Series]:
    """Rollback to v1 and promotion of v2, ``rounds`` times each, timed around the service call."""
    from adaptive.models import Deployment
    from adaptive.services import releases

    rollback, promote = Series("service: rollback"), Series("service: promote")
    deployment = Deployment.objects.get(pk=fixture.deployment_id)
    for r in range(rounds):
        started = time.perf_counter()
        releases.rollback(deployment=deployment, actor=None, reason=f"bench round {r}", number=1)
        rollback.ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        releases.promote(deployment=deployment, number=2, actor=None, reason=f"bench round {r}")
        promote.ms.append(1000 * (time.perf_counter() - started))
    if live_number(fixture) != 2:
        raise BenchError("service rounds: v2 is not live at the end")
    return rollback, promote


class Rows:
    """Predict bodies with fresh ids (an id seen before is answered from storage, not served)."""

    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        self.features = [synthetic_flight(rng)[0] for _ in range(n)]
        self.sent = 0

    def payload(self, tag: str) -> dict[str, Any]:
        rows = [{"id": f"{tag}-{self.sent}-{i}", "features": f} for i, f in enumerate(self.features)]
        self.sent += 1
        return {"rows": rows}


def predict_in_process(fixture: Fixture, rows: Rows, tag: str, expect: int) -> float:
    """One predict as the endpoint makes it (deployment read, score, store); milliseconds."""
    from adaptive.models import Deployment
    from adaptive.services import ingest

    payload = rows.payload(tag)
    started = time.perf_counter()
    deployment = Deployment.objects.select_related("live_version").get(pk=fixture.deployment_id)
    predictions = ingest.predict(deployment=deployment, payload=payload)
    elapsed = 1000 * (time.perf_counter() - started)
    if {p.version for p in predictions} != {expect}:
        raise BenchError(f"predict after switching to v{expect} was served by { ({p.version for p in predictions}) }")
    return elapsed


def first_predicts_in_process(fixture: Fixture, rows: Rows, reps: int) -> list[Series]:
    """First predict after a rollback to v1: memories cached vs caches cleared; and the steady state."""
    from adaptive import runtime
    from adaptive.models import Deployment
    from adaptive.services import releases

    cached = Series("in process: first predict, memory cached")
    fresh = Series("in process: first predict, caches cleared")
    steady = Series("in process: second predict (steady)")
    deployment = Deployment.objects.get(pk=fixture.deployment_id)
    runtime.clear_cache()
    # Serve v1 once, so this process holds its model and memory, then go to v2.
    releases.rollback(deployment=deployment, actor=None, reason="bench: serve v1", number=1)
    predict_in_process(fixture, rows, "warm1", 1)
    for r in range(reps):
        for cold in (False, True):
            releases.promote(deployment=deployment, number=2, actor=None, reason="bench")
            predict_in_process(fixture, rows, f"v2-{r}-{cold}", 2)
            releases.rollback(deployment=deployment, actor=None, reason="bench", number=1)
            if cold:
                runtime.clear_cache()
            (fresh if cold else cached).ms.append(predict_in_process(fixture, rows, f"first-{r}-{cold}", 1))
            steady.ms.append(predict_in_process(fixture, rows, f"steady-{r}-{cold}", 1))
    releases.promote(deployment=deployment, number=2, actor=None, reason="bench: v2 live")
    runtime.clear_cache()
    return [cached, fresh, steady]


class Api:
    """A keep-alive client with the operator's token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url}/api/v1/deployments/{SLUG}"
        self.http = httpx.Client(
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"}, timeout=120
        )

    def post(self, action: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = self.http.post(f"{self.base}/{action}", content=orjson.dumps(body))
        elapsed = 1000 * (time.perf_counter() - started)
        if response.status_code != 200:
            raise BenchError(f"{action}: HTTP {response.status_code}: {response.text[:300]}")
        answer: dict[str, Any] = orjson.loads(response.content)
        return elapsed, answer

    def switch(self, action: str, number: int) -> tuple[float, float]:
        """Roll back to / promote version ``number``; (server took_ms, client round trip ms)."""
        elapsed, answer = self.post(action, {"version": number, "reason": f"bench {action}"})
        if answer["live_version"]["number"] != number or answer["release"]["version"] != number:
            raise BenchError(f"{action} to v{number}: answered {answer}")
        return float(answer["took_ms"]), elapsed

    def predict(self, rows: Rows, tag: str, expect: int) -> float:
        elapsed, answer = self.post("predict", rows.payload(tag))
        if {p["version"] for p in answer["predictions"]} != {expect}:
            raise BenchError(f"HTTP predict after switching to v{expect}: {answer['predictions'][0]}")
        return elapsed

    def close(self) -> None:
        self.http.close()


def http_rounds(api: Api, rounds: int) -> list[Series]:
    rollback_server, rollback_client = Series("HTTP: rollback, took_ms"), Series("HTTP: rollback, round trip")
    promote_server, promote_client = Series("HTTP: promote, took_ms"), Series("HTTP: promote, round trip")
    for _ in range(rounds):
        took, elapsed = api.switch("rollback", 1)
        rollback_server.ms.append(took)
        rollback_client.ms.append(elapsed)
        took, elapsed = api.switch("promote", 2)
        promote_server.ms.append(took)
        promote_client.ms.append(elapsed)
    return [rollback_server, rollback_client, promote_server, promote_client]


def http_first_predicts(api: Api, rows: Rows, reps: int) -> Series:
    """First predict after a rollback in the one worker, which served v1 (and v2) before; ends with v1 live."""
    cached = Series("HTTP: first predict, worker served v1 before")
    api.switch("rollback", 1)
    api.predict(rows, "hwarm1", 1)
    for r in range(reps):
        api.switch("promote", 2)
        api.predict(rows, f"hv2-{r}", 2)
        api.switch("rollback", 1)
        cached.ms.append(api.predict(rows, f"hfirst-{r}", 1))
    return cached


# --- report -------------------------------------------------------------------------------------------


def verdict(series: Series) -> str:
    p95 = percentile(series.ms, 0.95)
    return (
        f"{series.name:<28} p95 = {p95:6.1f} ms   target < {TARGET_MS:.0f} ms   {'PASS' if p95 < TARGET_MS else 'MISS'}"
    )


def report(args: argparse.Namespace, info: str, switches: list[Series], predicts: list[Series], load: str) -> None:
    print()
    print(
        f"rollback benchmark: {args.samples:,} error samples per version (2 versions, exact memory, "
        f"MLP {HIDDEN}, key dim {HIDDEN[-1]}), {args.rounds} rollbacks + {args.rounds} promotions per path, "
        f"{os.cpu_count()} CPUs, {info}, load {load}"
    )
    print()
    print(f"{'switch':<48}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for series in switches:
        print(series.row())
    print()
    print(
        f"{'first predict after a rollback (' + str(args.predict_rows) + ' rows)':<48}{'n':>5}"
        f"{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"
    )
    for series in predicts:
        print(series.row())
    print()
    for series in switches:
        if series.name in ("service: rollback", "HTTP: rollback, took_ms"):
            print(verdict(series))


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000, help="error samples per version (default 100000)")
    parser.add_argument("--rounds", type=int, default=50, help="rollback + promotion pairs per path (default 50)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL scratch database, dropped first"
    )
    parser.add_argument("--predict-rows", type=int, default=100, help="rows per predict request (default 100)")
    parser.add_argument("--predict-reps", type=int, default=5, help="first predicts measured per case (default 5)")
    parser.add_argument(
        "--fresh-workers", type=int, default=3, help="gunicorns started for the fresh-process predict (default 3)"
    )
    parser.add_argument("--no-http", action="store_true", help="service and in-process figures only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    for name in ("samples", "rounds", "predict_rows", "predict_reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.fresh_workers < 0:
        parser.error("--fresh-workers must be at least 0")
    if args.db == "postgres":
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
    workdir = Path(tempfile.mkdtemp(prefix="bench_rollback_"))
    url = args.database_url if args.db == "postgres" else f"sqlite:///{workdir / 'bench.sqlite3'}"
    env = bench_env(workdir, url)
    servers: list[Gunicorn] = []
    api: Api | None = None
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, env)
        started = time.perf_counter()
        fixture = create_fixture(args.samples, args.seed)
        fill_memories(args.db, fixture, args.samples, args.seed)
        print(f"deployment, 2 versions and {2 * args.samples:,} error samples in {time.perf_counter() - started:.1f} s")
        rows = Rows(args.predict_rows, args.seed + 3)
        load_before = os.getloadavg()[0]

        switches = list(service_rounds(fixture, args.rounds))
        print(f"service: {args.rounds} rollbacks and promotions done", flush=True)
        predicts = first_predicts_in_process(fixture, rows, args.predict_reps)
        print("in-process first predicts done", flush=True)
        close_django_connections()  # hold no connection (or SQLite lock) while the server works

        if not args.no_http:
            servers.append(Gunicorn(workers=1, worker_class="sync", env=env, log_path=workdir / "gunicorn.log"))
            servers[-1].wait_healthy()
            api = Api(servers[-1].url, fixture.token)
            api.predict(rows, "hwarm2", 2)  # the worker loads v2 before the clock starts
            switches += http_rounds(api, args.rounds)
            print(f"HTTP: {args.rounds} rollbacks and promotions done", flush=True)
            predicts.append(http_first_predicts(api, rows, args.predict_reps))
            # v1 is live (the last rollback above): every fresh worker below serves it.
            api.close()
            api = None
            servers.pop().stop()
            fresh = Series("HTTP: first predict, fresh gunicorn worker")
            for n in range(args.fresh_workers):
                servers.append(
                    Gunicorn(workers=1, worker_class="sync", env=env, log_path=workdir / f"gunicorn-{n}.log")
                )
                servers[-1].wait_healthy()  # the health check loads the URLconf, not the model
                api = Api(servers[-1].url, fixture.token)
                fresh.ms.append(api.predict(rows, f"fresh-{n}", 1))
                api.close()
                api = None
                servers.pop().stop()
            if args.fresh_workers:
                predicts.append(fresh)
            print("HTTP first predicts done", flush=True)
        info = server_description(args.db, url)
        close_django_connections()
        report(args, info, switches, predicts, f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for server in servers:
            print(f"gunicorn log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        if api is not None:
            api.close()
        for server in servers:
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
