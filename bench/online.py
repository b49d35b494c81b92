"""Online serving benchmark: one row per request through the real HTTP stack, beside the floor.

    .venv/bin/python bench/online.py [--seconds 5] [--clients 1,4,16] [--servers gthread:2:4,sync:2]
        [--cells sketch,exact,off,compensate] [--memory-size 50000] [--database-url URL] [--keep]

Targets on a 2-core machine (bench/README.md, "Online latency"): single-row predict p50 at most
5 ms and p99 at most 20 ms with one client and the sketch memory; at least 500 single-row requests
per second per core at saturation.

What it does:

1. drops, creates and migrates the PostgreSQL database ``--database-url``; creates one deployment per
   cell on the flights stream's schema (bench/predict.py's set-up, the demo's MLP architecture,
   untrained: the cost does not depend on what it learned). ``sketch`` and ``exact`` hold
   ``--memory-size`` error samples in their memory (the exact memory's capacity is the same, so
   every sample is read), ``off`` has compensation off, and ``compensate`` is an external deployment
   with the sketch memory whose clients send the model's score and key vector;
2. the floor, in this process and without HTTP: per cell the same work for one row in a loop (encode
   and forward pass, the memory's read and correction where the cell has them, and one INSERT of the
   event row through psycopg in autocommit, as the API stores it);
3. per server set-up (``CLASS:WORKERS[:THREADS]``: gunicorn's ``sync`` or ``gthread`` workers, or
   ``granian`` where that server is installed), starts it and per cell and client
   count runs a closed loop for ``--seconds``: each client thread sends one row, reads the answer and
   sends the next (keep-alive where the server keeps connections open). Every request carries a fresh
   id, so every request scores and stores one event; every answer is checked (200 and its id);
4. prints per server, cell and client count the requests/s, p50/p95/p99 latency and the CPU time
   per request of the server's processes, PostgreSQL and the client threads; the floor beside; the
   targets, met or missed.

The exit status is 0 whether the targets are met or not (this is a benchmark, not a test), and
non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.*) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import BenchError, Gunicorn, drop_database, free_port  # noqa: E402
from bench.predict import (  # noqa: E402
    QUERY_POOL,
    Fixture,
    Flights,
    ModelSpec,
    bench_env,
    build_model_spec,
    close_django_connections,
    create_deployment,
    fill_memory,
    percentile,
    prepare_database,
    raise_interrupt,
    server_description,
)

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_online"
CELLS: Final = ("sketch", "exact", "off", "compensate")
TARGET_P50_MS: Final = 5.0
TARGET_P99_MS: Final = 20.0
TARGET_PER_CORE: Final = 500.0
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# --- the deployments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    name: str
    fixture: Fixture
    path: str  # predict or compensate
    # Pre-serialized JSON of the query rows: the part of a row's body after its id.
    row_tails: list[bytes]


def create_cells(names: Sequence[str], flights: Flights, model: ModelSpec, size: int, query_start: int) -> list[Cell]:
    import torch

    cells = []
    hosted_tails = [
        b'","ts":"'
        + flights.times[query_start + i].encode()
        + b'","features":'
        + orjson.dumps(flights.rows[query_start + i])
        for i in range(QUERY_POOL)
    ]
    for name in names:
        started = time.perf_counter()
        if name == "compensate":
            fixture = create_external(flights, model)
            # The server normalises an external key without a training mean: fill the memory alike.
            external_model = dataclasses.replace(model, key_mean=torch.zeros_like(model.key_mean))
            fill_memory(fixture, flights, external_model, size, query_start)
            cells.append(Cell(name, fixture, "compensate", external_tails(flights, model, query_start)))
        else:
            settings: dict[str, Any] = {"memory_kind": "sketch" if name == "off" else name}
            if name == "exact":
                settings["memory_capacity"] = max(size, 1000)
            if name == "off":
                settings["compensation_enabled"] = False
            fixture = create_deployment(f"online-{name}", flights, model, **settings)
            if name != "off":
                fill_memory(fixture, flights, model, size, query_start)
            cells.append(Cell(name, fixture, "predict", hosted_tails))
        print(f"{name}: deployment ready in {time.perf_counter() - started:.1f} s", flush=True)
    return cells


def create_external(flights: Flights, model: ModelSpec) -> Fixture:
    from adaptive.services.keys import create_key
    from adaptive.services.registry import create_deployment as create

    deployment, _ = create(
        fields={
            "slug": "online-compensate",
            "name": "Bench: flight delays (external model)",
            "task": "binary",
            "classes": ["on_time", "late"],
            "feature_schema": flights.schema,
            "serving": "external",
            "key_dim": model.key_dim,
            "memory_kind": "sketch",
            "compensation_gate": False,
        },
        actor=None,
    )
    _, raw = create_key(deployment=deployment, name="bench", actor=None)
    return Fixture("online-compensate", deployment.pk, None, raw)  # type: ignore[arg-type]


def external_tails(flights: Flights, model: ModelSpec, query_start: int) -> list[bytes]:
    """What an external client sends: its model's score and last hidden layer, and the features."""
    import torch

    from adaptive.ml.architectures import logits_to_proba

    rows = flights.rows[query_start : query_start + QUERY_POOL]
    with torch.inference_mode():
        h = model.model.embed(model.encoder.encode(rows))
        scores = logits_to_proba(model.model.head(h)).double().tolist()
        keys = h.double().tolist()
    return [
        b'","ts":"'
        + flights.times[query_start + i].encode()
        + b'","score":'
        + orjson.dumps(scores[i])
        + b',"key":'
        + orjson.dumps(keys[i])
        + b',"features":'
        + orjson.dumps(rows[i])
        for i in range(QUERY_POOL)
    ]


# --- the floor: the same work without HTTP -----------------------------------------------------------


def floor(cell: Cell, flights: Flights, model: ModelSpec, url: str, query_start: int, n: int) -> list[float]:
    """Latency of one row's compute and one INSERT of its event, ``n`` times, one thread."""
    import torch
    from psycopg.types.json import Jsonb

    from adaptive import runtime
    from adaptive.ml.architectures import logits_to_proba
    from adaptive.ml.compensation import compensate, keys_from_hidden
    from adaptive.models import Deployment

    deployment = Deployment.objects.select_related("live_version").get(pk=cell.fixture.deployment_id)
    hosted = deployment.live_version is not None
    loaded = runtime.load_version(deployment, deployment.live_version) if hosted else None  # type: ignore[arg-type]
    live = None
    if deployment.compensation_enabled:
        live = runtime.live_memory(deployment, cell.fixture.version_id, model.key_dim)
    config = runtime.compensation_config(deployment)
    external = [orjson.loads(b'{"x":"' + tail + b"}") for tail in cell.row_tails[:n]] if not hosted else []
    latencies = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            j = query_start + i % QUERY_POOL
            row = flights.rows[j]
            started = time.perf_counter()
            with torch.inference_mode():
                if loaded is not None:
                    h = loaded.model.embed(loaded.encoder.encode([row]))
                    p_base = logits_to_proba(loaded.model.head(h))
                    keys = keys_from_hidden(h, loaded.key_mean)
                else:
                    p_base = torch.tensor([external[i]["score"]])
                    key = torch.tensor([external[i]["key"]])
                    keys = keys_from_hidden(key, torch.zeros(key.shape[1]))
                p = p_base
                if live is not None:
                    p = compensate(p_base, live.memory.estimate(keys), config)
            key_bytes = runtime.encode_keys(keys)[0]
            conn.execute(
                "INSERT INTO adaptive_event (deployment_id, external_id, event_time, received_at, features, "
                "version_id, base_score, score, key, served_revision, full_score) "
                "VALUES (%s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (deployment_id, external_id) DO NOTHING RETURNING external_id",
                [
                    cell.fixture.deployment_id,
                    f"floor-{i}",
                    flights.times[j],
                    Jsonb(row),
                    cell.fixture.version_id,
                    float(p_base[0]),
                    float(p[0]),
                    key_bytes,
                    1,
                    float(p[0]),
                ],
            ).fetchall()
            latencies.append(time.perf_counter() - started)
    return latencies


class Granian(Gunicorn):
    """Granian (a WSGI server written in Rust), when it is installed: measured beside gunicorn."""

    def __init__(self, *, workers: int, threads: int, env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--blocking-threads",
            str(threads),
            "--log-level",
            "warning",
            "config.wsgi:application",
        ]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )


# --- a lean HTTP/1.1 client ----------------------------------------------------------------------------


class RawClient:
    """POSTs over one socket with the request bytes built by hand: the client must cost little next
    to the server it measures. Reconnects when the server closes (gunicorn's sync workers do after
    every answer); a request is resent once if a kept-alive connection turns out closed (predict and
    compensate are idempotent by id, so a resend is harmless)."""

    def __init__(self, port: int, path: str, raw_key: str) -> None:
        self.port = port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Key {raw_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.sock: socket.socket | None = None
        self.buffer = b""

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            fresh = self.sock is None
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffer = b""
            try:
                self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
                return self._read()
            except (ConnectionError, EOFError):
                self.close()
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self) -> tuple[int, bytes]:
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        self.buffer = rest
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if close:
            self.close()
        return status, body

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# --- CPU accounting ----------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(command, parent pid, CPU seconds) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return command, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(server_pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of the server's processes (the master and its children) and PostgreSQL's, by pid."""
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        command, parent, seconds = stat
        if pid == server_pid or parent == server_pid:
            out[pid] = ("server", seconds)
        elif command.startswith("postgres"):
            out[pid] = ("postgres", seconds)
    return out


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds between two snapshots: a process that ended in between is left out (its last
    ticks are lost), one that started counts whole."""
    used = {"server": 0.0, "postgres": 0.0}
    for pid, (part, seconds) in after.items():
        used[part] += seconds - before.get(pid, (part, 0.0))[1]
    return used


# --- the closed loop -----------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    cell: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.seconds

    def ms(self, q: float) -> float:
        return 1000 * percentile(self.latencies, q)

    def cpu_ms(self, part: str) -> float:
        return 1000 * self.cpu.get(part, 0.0) / max(1, len(self.latencies))


def closed_loop(port: int, cell: Cell, clients: int, seconds: float, tag: str) -> tuple[list[float], float]:
    """``clients`` threads, each sending one row at a time for ``seconds``; latencies and wall time."""
    url_path = f"/api/v1/deployments/{cell.fixture.slug}/{cell.path}"
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(c: int) -> None:
        raw = RawClient(port, url_path, cell.fixture.raw_key)
        out = results[c]
        n = 0
        try:
            start.wait()
            while True:
                ident = f"{tag}-{c}-{n}".encode()
                body = b'{"rows":[{"id":"' + ident + cell.row_tails[(c * 7919 + n) % len(cell.row_tails)] + b"}]}"
                sent = time.perf_counter()
                if sent >= stop_at[0]:
                    break
                status, answer = raw.post(body)
                out.append(time.perf_counter() - sent)
                if status != 200 or b'"id":"' + ident + b'"' not in answer:
                    errors.append(f"HTTP {status}: {answer[:300]!r}")
                    return
                n += 1
        except (OSError, EOFError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            raw.close()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise BenchError(f"{cell.name}, {clients} clients: {errors[0]}")
    return [t for r in results for t in r], wall


def measure(server: Gunicorn, label: str, cell: Cell, clients: int, seconds: float, tag: str) -> Run:
    closed_loop(server.port, cell, clients, min(1.0, seconds), f"{tag}w")  # connections, caches, JIT paths
    before_cpu, before_client = cpu_snapshot(server.process.pid), time.process_time()
    latencies, wall = closed_loop(server.port, cell, clients, seconds, tag)
    after_cpu, after_client = cpu_snapshot(server.process.pid), time.process_time()
    cpu = cpu_used(before_cpu, after_cpu)
    cpu["client"] = after_client - before_client
    return Run(label, cell.name, clients, wall, latencies, cpu)


# --- where the time goes: a sampling profile of the server --------------------------------------------

# (row, frame that starts it): inclusive shares of py-spy's samples; rows are differences of these.
FRAMES: Final = {
    "wsgi": "WSGIHandler.__call__",
    "dispatch": "APIView.dispatch",
    "view": "PredictView.post",
    "auth": "APIView.perform_authentication",
    "lookup": "serving_deployment",
    "score": "score_hosted",
    "memory": "_compensate",
    "store": "_store",
}


def profile(server: Gunicorn, py_spy: str, cell: Cell, clients: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Sample every worker with py-spy while ``clients`` send single rows; inclusive shares of FRAMES."""
    workers = [
        int(p) for p in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    ]
    outputs = [workdir / f"profile-{pid}.txt" for pid in workers]
    spies = [
        subprocess.Popen(
            [py_spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "200", "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, out in zip(workers, outputs, strict=True)
    ]
    time.sleep(0.5)  # py-spy attaches
    closed_loop(server.port, cell, clients, seconds, "profile")
    for spy in spies:
        spy.wait()
    total = 0
    counts = dict.fromkeys(FRAMES, 0)
    for out in outputs:
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            total += int(n)
            names = {frame.split(" (")[0] for frame in stack.split(";")}
            for key, frame in FRAMES.items():
                counts[key] += int(n) * (frame in names)
    if total == 0:
        raise BenchError("py-spy recorded no samples (is ptrace allowed?)")
    return {key: count / total for key, count in counts.items()}


def report_profile(shares: dict[str, float], label: str, clients: int) -> None:
    rows = [
        ("HTTP server outside Django (accept, parse, write, close)", 1 - shares["wsgi"]),
        ("Django: handler, middleware, URL routing", shares["wsgi"] - shares["dispatch"]),
        ("DRF: request, negotiation, permission, throttle", shares["dispatch"] - shares["view"] - shares["auth"]),
        ("authentication (ingestion key, remembered)", shares["auth"]),
        ("deployment lookup (one query)", shares["lookup"]),
        ("encoding and forward pass", shares["score"] - shares["memory"]),
        ("error memory read and correction", shares["memory"]),
        ("event insert (one statement)", shares["store"]),
        (
            "body parsing, validation, response",
            shares["view"] - shares["lookup"] - shares["score"] - shares["store"],
        ),
    ]
    print()
    print(f"Where a worker's time goes ({label}, sketch, {clients} clients; py-spy samples, waits included):")
    print()
    print("| part of the request | share |")
    print("|---|---|")
    for name, share in rows:
        print(f"| {name} | {100 * share:.0f}% |")


# --- reporting -----------------------------------------------------------------------------------------


def report(args: argparse.Namespace, info: str, floors: dict[str, list[float]], runs: list[Run]) -> None:
    cores = os.cpu_count() or 1
    print()
    print(
        f"## Online serving: one row per request ({info}, {cores} cores, {args.memory_size:,} samples "
        f"in the memories, {args.seconds:g} s per cell)"
    )
    print()
    print("Floor (this process, no HTTP: the row's compute and one INSERT of its event, autocommit):")
    print()
    print("| cell | p50 ms | p95 ms | p99 ms | rows/s, one thread |")
    print("|---|---|---|---|---|")
    for name, lat in floors.items():
        print(
            f"| {name} | {1000 * percentile(lat, 0.5):.2f} | {1000 * percentile(lat, 0.95):.2f} | "
            f"{1000 * percentile(lat, 0.99):.2f} | {len(lat) / sum(lat):,.0f} |"
        )
    print()
    print("Through HTTP (CPU ms per request: the server's processes / PostgreSQL / the client):")
    print()
    print("| server | cell | clients | requests/s | p50 ms | p95 ms | p99 ms | p50 / floor | CPU ms per request |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        floor_p50 = 1000 * percentile(floors[run.cell], 0.5) if run.cell in floors else float("nan")
        print(
            f"| {run.server} | {run.cell} | {run.clients} | {run.requests_per_s:,.0f} | {run.ms(0.5):.2f} | "
            f"{run.ms(0.95):.2f} | {run.ms(0.99):.2f} | {run.ms(0.5) / floor_p50:.1f}x | "
            f"{run.cpu_ms('server'):.2f} / {run.cpu_ms('postgres'):.2f} / {run.cpu_ms('client'):.2f} |"
        )
    print()
    baseline = {
        (run.server.removeprefix("before "), run.cell, run.clients): run
        for run in runs
        if run.server.startswith("before ")
    }
    if baseline:
        print("Before and after (the same server set-up from --baseline's checkout, then this one's):")
        print()
        print("| server | cell | clients | requests/s | p50 ms | p99 ms | server CPU ms per request |")
        print("|---|---|---|---|---|---|---|")
        for run in runs:
            old = baseline.get((run.server, run.cell, run.clients))
            if old is None:
                continue
            print(
                f"| {run.server} | {run.cell} | {run.clients} | "
                f"{old.requests_per_s:,.0f} → {run.requests_per_s:,.0f} | "
                f"{old.ms(0.5):.2f} → {run.ms(0.5):.2f} | {old.ms(0.99):.2f} → {run.ms(0.99):.2f} | "
                f"{old.cpu_ms('server'):.2f} → {run.cpu_ms('server'):.2f} |"
            )
        print()
    for label in dict.fromkeys(run.server for run in runs if not run.server.startswith("before ")):
        mine = [run for run in runs if run.server == label]
        single = next((r for r in mine if r.cell == "sketch" and r.clients == 1), None)
        if single is not None:
            ok = single.ms(0.5) <= TARGET_P50_MS and single.ms(0.99) <= TARGET_P99_MS
            print(
                f"{label}: sketch, one client: p50 {single.ms(0.5):.2f} ms (target <= {TARGET_P50_MS:g}), "
                f"p99 {single.ms(0.99):.2f} ms (target <= {TARGET_P99_MS:g}): {'MET' if ok else 'MISSED'}"
            )
        saturated = [r for r in mine if r.cell == "sketch"]
        if saturated:
            best = max(saturated, key=lambda r: r.requests_per_s)
            per_core = best.requests_per_s / cores
            # The web server's own cores: its processes' CPU seconds per second of the run.
            per_server_core = 1000 / best.cpu_ms("server") if best.cpu_ms("server") > 0 else float("nan")
            print(
                f"{label}: sketch at saturation ({best.clients} clients): {best.requests_per_s:,.0f} requests/s; "
                f"{per_core:,.0f} per core of the machine, {per_server_core:,.0f} per core the web server used "
                f"(target >= {TARGET_PER_CORE:g} per core): "
                f"{'MET' if per_core >= TARGET_PER_CORE else 'MISSED'} / "
                f"{'MET' if per_server_core >= TARGET_PER_CORE else 'MISSED'}"
            )


# --- main ----------------------------------------------------------------------------------------------


def start_server(kind: str, workers: int, threads: int, env: dict[str, str], log_path: Path, cwd: Path) -> Gunicorn:
    if kind == "granian":
        server: Gunicorn = Granian(workers=workers, threads=threads, env=env, log_path=log_path, cwd=cwd)
    else:
        extra = ["--threads", str(threads)] if kind == "gthread" else []
        server = Gunicorn(workers=workers, worker_class=kind, env=env, log_path=log_path, extra=extra, cwd=cwd)
    server.wait_healthy()
    return server


def run_cells(server: Gunicorn, label: str, cells: list[Cell], args: argparse.Namespace) -> list[Run]:
    tag = label.replace(" ", "-")
    for cell in cells:
        # Every worker loads the model and rebuilds the memory on its first request of a cell.
        closed_loop(server.port, cell, max(args.client_counts) * 2, 2.0, f"{tag}-warm")
    runs = []
    for cell in cells:
        for clients in args.client_counts:
            run = measure(server, label, cell, clients, args.seconds, f"{tag}-{clients}")
            runs.append(run)
            print(
                f"{label}, {cell.name}, {clients} clients: {run.requests_per_s:,.0f}/s, "
                f"p50 {run.ms(0.5):.2f} ms, p99 {run.ms(0.99):.2f} ms",
                flush=True,
            )
    return runs


def parse_server(text: str) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("sync", "gthread", "granian"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected sync:WORKERS, gthread:WORKERS:THREADS or granian:WORKERS[:THREADS]"
        )
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop seconds per cell (default 5)")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated (default 1,4,16)")
    parser.add_argument(
        "--servers",
        default="gthread:2:4,sync:2,sync:4",
        help="gunicorn set-ups, CLASS:WORKERS[:THREADS], comma-separated (default gthread:2:4,sync:2,sync:4)",
    )
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    parser.add_argument("--memory-size", type=int, default=50_000, help="error samples per memory (default 50,000)")
    parser.add_argument("--floor-rows", type=int, default=2000, help="floor iterations per cell (default 2,000)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="a scratch database: it is dropped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the first server's workers with py-spy (on PATH, or --py-spy) during a saturated sketch run",
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "", help="the py-spy executable")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier commit (same migrations): each server set-up also runs from it, "
        "just before this checkout's, for a before/after comparison in one run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    args.client_counts = [int(c) for c in args.clients.split(",")]
    args.server_specs = [parse_server(s) for s in args.servers.split(",")]
    args.cell_names = [c for c in args.cells.split(",") if c]
    unknown = set(args.cell_names) - set(CELLS)
    if unknown:
        parser.error(f"unknown cells: {', '.join(sorted(unknown))}")
    if args.profile and not args.py_spy:
        parser.error("--profile needs py-spy: pip install py-spy, or name it with --py-spy")
    if args.profile and "sketch" not in args.cell_names:
        parser.error("--profile samples the sketch cell: keep it in --cells")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="bench_online_"))
    url = args.database_url
    env = bench_env(workdir, url)
    server: Gunicorn | None = None
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = True
        prepare_database("postgres", url, env)
        query_start = max(1000, min(args.memory_size, 200_000))
        flights = Flights.load(query_start + QUERY_POOL)
        model = build_model_spec(flights, "mlp", args.seed)
        cells = create_cells(args.cell_names, flights, model, args.memory_size, query_start)
        floors = {cell.name: floor(cell, flights, model, url, query_start, args.floor_rows) for cell in cells}
        info = server_description("postgres", url)
        close_django_connections()
        runs: list[Run] = []
        profiled: tuple[str, dict[str, float]] | None = None
        checkouts = [("before ", args.baseline), ("", ROOT)] if args.baseline else [("", ROOT)]
        for kind, workers, threads in args.server_specs:
            for prefix, checkout in checkouts:
                label = prefix + f"{kind} {workers}" + (f"x{threads}" if kind != "sync" else "")
                server = start_server(kind, workers, threads, env, workdir / f"{label.replace(' ', '-')}.log", checkout)
                runs += run_cells(server, label, cells, args)
                if args.profile and not profiled and not prefix:
                    sketch = next(cell for cell in cells if cell.name == "sketch")
                    clients = max(args.client_counts)
                    profiled = (label, profile(server, args.py_spy, sketch, clients, args.seconds, workdir))
                server.stop()
                server = None
        report(args, info, floors, runs)
        if profiled:
            report_profile(profiled[1], profiled[0], max(args.client_counts))
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if server is not None:
            print(f"server log ({server.log_path}):\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
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
