"""Embedded broker benchmark: which server-less Celery transport, polled how often.

    .venv/bin/python bench/broker.py [--samples 40] [--idle-seconds 20] [--backlog 2000] [--producers 4]
        [--messages 100] [--intervals 0.01,0.02,0.05,0.1] [--cpu-budget 1.5] [--no-baseline] [--keep]

Candidates, each a real Celery worker (prefork, one process, consuming ``default,monitoring,gpu``
and its control queue, with task events, gossip and mingle on, as ``bin/up`` starts it):

- ``kombu``: kombu's file-system transport as the project used it, polled every 1 s (the baseline);
- ``hardened``: tasks.filesystem_broker (atomic publish, a folder per queue, quarantine), at each
  of ``--intervals``;
- ``sqlite``: kombu's SQLAlchemy transport on a SQLite file at the middle interval, when
  SQLAlchemy is importable (it is not in requirements.txt: ``PYTHONPATH`` a ``pip --target`` copy).

Per candidate it measures:

1. latency: ``--samples`` messages one at a time, each sent at a random moment of the worker's
   poll cycle; from just before ``send_task`` to the first line of the task (wall clock in both
   processes), p50/p95/max;
2. idle CPU: the worker's processes' CPU time over ``--idle-seconds`` with no message, in % of
   one core;
3. publish cost: ``--backlog`` messages published one after another by this process to a queue no
   worker reads, in microseconds of this process's CPU (user + system) per message; then idle CPU
   again while they wait there (a backlog on another queue);
4. concurrency: a second worker on the same queues, then ``--producers`` processes publish
   ``--messages`` each at once; every message must run exactly once and both workers stay up;
   drain/s is how many ran per second from the common start to the last one;
5. bad files: an empty message, half of a message, binary garbage and JSON that is no kombu
   message are dropped into the queue (rows into the table for SQLite), then one good message is
   sent: the workers must stay up and run it (and, hardened, quarantine the four).

It prints a table, ratios against the baseline, and the choice: among candidates that pass 4 and
5, the lowest latency p95 whose idle CPU, with and without the backlog, stays within
``--cpu-budget`` % of a core. The exit status is 0 whether or not a candidate passes; non-zero
when the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the publisher imports tasks.filesystem_broker too
QUEUES = ("default", "monitoring", "gpu")
CONFIG_ENV = "BROKER_BENCH_CONFIG"
BASELINE_INTERVAL = 1.0
# Files a crashed producer or disk could leave, and a hand-written stray: (file name tag, content).
BAD_MESSAGES = [
    ("empty", b""),
    ("half", b'{"body": "eyJhcmdzIjogWzFdfQ==", "content-encoding": "utf-8", "prop'),
    ("binary", bytes(range(256))),
    ("not-a-message", b'{"hello": "world"}'),
]
ELSEWHERE = "elsewhere"  # a queue no worker reads
GARBAGE_PREFIX = "0" * 20  # sorts before every real message name: the worker meets them first
BAD_ROW_TIME = "2000-01-01 00:00:00"  # the SQLite candidate's bad rows: oldest, so read first
BAD_ROW = f"timestamp = '{BAD_ROW_TIME}'"


@dataclass(frozen=True)
class Candidate:
    """One transport at one polling interval, with its folders (or database) under ``workdir``."""

    label: str
    transport: str
    interval: float
    workdir: Path

    @property
    def url(self) -> str:
        # A plain SQLAlchemy URL: "sqla+sqlite://" would name kombu's transport and override the class below.
        return f"sqlite:///{self.workdir / 'broker.sqlite3'}" if self.label == "sqlite" else "filesystem://"

    @property
    def queue_folder(self) -> Path:
        return self.workdir / "queue"

    def message_files(self, queue: str) -> list[Path]:
        """The files waiting on ``queue``: kombu keeps them all in one folder, the hardened transport
        in a folder per queue."""
        if self.label == "kombu":
            return list(self.queue_folder.glob(f"*.{queue}.msg"))
        return list(self.queue_folder.glob(f"{queue}/*.msg"))

    def bad_file_path(self, tag: str) -> Path:
        if self.label == "kombu":
            return self.queue_folder / f"{GARBAGE_PREFIX}_{tag}.default.msg"
        return self.queue_folder / "default" / f"{GARBAGE_PREFIX}_{tag}.msg"

    @property
    def quarantine_folder(self) -> Path:
        return self.workdir / "quarantine"

    def config(self, results: Path) -> dict[str, Any]:
        if self.label == "sqlite":
            # kombu hands every transport option to SQLAlchemy's create_engine, which rejects
            # polling_interval: the interval travels as a class attribute (SQLiteTransport).
            options: dict[str, Any] = {}
        else:
            options = {
                "data_folder_in": str(self.queue_folder),
                "data_folder_out": str(self.queue_folder),
                "control_folder": str(self.workdir / "control"),
                "tmp_folder": str(self.workdir / "tmp"),
                "processing_folder": str(self.workdir / "processing"),
                "quarantine_folder": str(self.quarantine_folder),
                "store_processed": False,
                "polling_interval": self.interval,
            }
        return {
            "url": self.url,
            "transport": self.transport,
            "options": options,
            "interval": self.interval,
            "results": str(results),
        }

    @property
    def name(self) -> str:
        return f"{self.label} {self.interval * 1000:g} ms"


# --- the benchmark's own Celery app (the worker imports this module as bench.broker) ------------

_results_path: str | None = None


def record(seq: int, sent_at: float) -> None:
    """Note when this message's task started (the wall clock is shared by every process here)."""
    started = time.time()
    assert _results_path is not None
    with open(_results_path, "a") as file:  # one short O_APPEND write per line: lines never interleave
        file.write(f"{seq} {sent_at:.6f} {started:.6f} {os.getpid()}\n")


def make_app(config: dict[str, Any] | None) -> Celery:
    """A bare Celery app (no Django fixup: only the transport differs between candidates)."""
    bench_app = Celery("broker_bench", fixups=[], set_as_current=False)
    bench_app.task(name="broker_bench.record")(record)
    if config is None:
        return bench_app
    bench_app.conf.update(
        broker_url=config["url"],
        broker_transport=config["transport"],
        broker_transport_options=config["options"],
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue="default",
        task_default_routing_key="default",
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
    )
    return bench_app


try:
    from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
except ImportError:  # SQLAlchemy is not installed: no sqlite candidate
    pass
else:

    class SQLiteTransport(SQLAlchemyTransport):
        """kombu's SQLAlchemy transport, polled at the benchmark's interval."""

        polling_interval = float(json.loads(os.environ.get(CONFIG_ENV, "{}")).get("interval", 1.0))


_config = json.loads(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None
if _config is not None:
    _results_path = _config["results"]
app = make_app(_config)


# --- processes -----------------------------------------------------------------------------------


def child_env(candidate: Candidate, results: Path) -> dict[str, str]:
    # The app's own broker and database settings play no part: each candidate names its broker.
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    }
    env.update(
        {
            CONFIG_ENV: json.dumps(candidate.config(results)),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
            # tasks.filesystem_broker lives in the tasks package, whose import loads Django's settings.
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "bench-broker-only-secret-key-0123456789-abcdefghijklmnop",
            "VAR_DIR": str(candidate.workdir / "var"),
            "HTTPS": "0",
        }
    )
    return env


class Worker:
    """``celery -A bench.broker worker`` (prefork, one process) with its log in the work folder."""

    def __init__(self, candidate: Candidate, results: Path, name: str) -> None:
        self.log_path = candidate.workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        command = [sys.executable, "-m", "celery", "-A", "bench.broker", "worker", "-n", f"{name}@%h"]
        command += ["-Q", ",".join(QUEUES), "--concurrency", "1", "--loglevel", "INFO"]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=child_env(candidate, results), stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready." not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def crashed(self) -> bool:
        return self.proc.poll() is not None or "Unrecoverable error" in self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time of the worker and its pool processes so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return found


class Results:
    """The lines ``record`` appended: seq -> (sent, started, pid), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self.rows: list[tuple[int, float, float, int]] = []
        self._offset = 0

    def refresh(self) -> list[tuple[int, float, float, int]]:
        with self.path.open() as file:
            file.seek(self._offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written waits for the next read
        self._offset += len(complete.encode())
        for line in complete.splitlines():
            seq, sent, started, pid = line.split()
            self.rows.append((int(seq), float(sent), float(started), int(pid)))
        return self.rows

    def wait_for(self, seqs: set[int], timeout: float, workers: list[Worker]) -> set[int]:
        """Wait until every seq in ``seqs`` ran, the timeout passes or every worker is down."""
        deadline = time.monotonic() + timeout
        next_crash_check = time.monotonic() + 0.25
        while True:
            seen = {row[0] for row in self.refresh()}
            if seqs <= seen or time.monotonic() > deadline:
                return seen & seqs
            # Reading the workers' logs costs more than the results file: only now and then.
            if workers and time.monotonic() >= next_crash_check:
                if all(w.crashed for w in workers):
                    return seen & seqs
                next_crash_check = time.monotonic() + 0.25
            time.sleep(0.002)


# --- phases --------------------------------------------------------------------------------------


@dataclass
class Figures:
    candidate: Candidate
    latencies_ms: list[float] = field(default_factory=list)
    idle_cpu_percent: float = float("nan")
    backlog_cpu_percent: float = float("nan")
    publish_us: float = float("nan")
    sent: int = 0
    lost: int = 0
    queued: int = 0
    drain_per_s: float = float("nan")
    duplicated: int = 0
    consumers: int = 0
    crashed: int = 0
    bad_survived: bool = False
    bad_quarantined: int = 0
    bad_next_ok: bool = False
    note: str = ""

    @property
    def robust(self) -> bool:
        ran_all = not (self.lost or self.queued or self.duplicated)
        return ran_all and not self.crashed and self.bad_survived and self.bad_next_ok

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def measure_latency(publisher: Celery, candidate: Candidate, results: Results, samples: int, figures: Figures) -> None:
    for seq in range(-3, samples):  # three warm-up messages: connections open, code paths loaded
        # A random moment of the worker's poll cycle, as a label arrives in production.
        time.sleep(random.uniform(0, max(candidate.interval, 0.05)))
        sent = time.time()
        publisher.send_task("broker_bench.record", args=[seq, sent], queue="default")
        if not results.wait_for({seq}, timeout=30, workers=[]):
            raise RuntimeError(f"{candidate.name}: message {seq} did not run within 30 s")
        if seq >= 0:
            sent_at, started = next((r[1], r[2]) for r in results.rows if r[0] == seq)
            figures.latencies_ms.append((started - sent_at) * 1000)


def measure_idle_cpu(worker: Worker, seconds: float) -> float:
    """The worker's CPU while no message for it arrives, in % of one core."""
    time.sleep(1.0)  # let the last task's bookkeeping finish
    before, started = worker.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (worker.cpu_seconds() - before) / (time.monotonic() - started)


def produce(count: int, offset: int, start_at: float) -> None:
    """A producer process: publish ``count`` messages as fast as possible from ``start_at``."""
    time.sleep(max(0.0, start_at - time.time()))
    with app.producer_or_acquire() as producer:
        for seq in range(offset, offset + count):
            app.send_task("broker_bench.record", args=[seq, time.time()], queue="default", producer=producer)


def measure_publish(publisher: Celery, count: int, figures: Figures) -> None:
    """What one publish costs, alone: to a queue no worker reads (the backlog of the next phase)."""
    with publisher.producer_or_acquire() as producer:
        publisher.send_task("broker_bench.record", args=[-1, 0.0], queue=ELSEWHERE, producer=producer)  # declares
        # CPU time of this process (system time included: the file system's work is most of it), not
        # the wall clock, which on a shared machine mostly measures the neighbours.
        started = time.process_time()
        for _ in range(count - 1):
            publisher.send_task("broker_bench.record", args=[-1, 0.0], queue=ELSEWHERE, producer=producer)
        figures.publish_us = 1e6 * (time.process_time() - started) / (count - 1)


def purge_elsewhere(candidate: Candidate) -> None:
    if candidate.label == "sqlite":
        with sqlite3.connect(candidate.workdir / "broker.sqlite3") as db:
            db.execute("DELETE FROM kombu_message WHERE queue_id IN (SELECT id FROM kombu_queue WHERE name = ?)",
                       [ELSEWHERE])  # fmt: skip
        return
    for path in candidate.message_files(ELSEWHERE):
        path.unlink()


def measure_concurrency(
    candidate: Candidate, results: Results, workers: list[Worker], producers: int, messages: int, figures: Figures
) -> None:
    first = 1_000_000
    start_at = time.time() + 2.0  # every producer has imported and connected by then
    env = child_env(candidate, results.path)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--produce", str(messages), str(first + p * messages), f"{start_at:.6f}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(producers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            figures.note += f" producer failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode};"
    figures.sent = producers * messages
    expected = set(range(first, first + figures.sent))
    # kombu's consumer sleeps a whole interval whenever its prefetch is full, so draining can take
    # about an interval per message and worker: give slow pollers the time that takes.
    seen = results.wait_for(expected, timeout=60 + figures.sent * candidate.interval, workers=workers)
    runs = [row for row in results.rows if row[0] in expected]
    figures.queued = messages_left(candidate, "default")
    figures.lost = len(expected - seen) - figures.queued
    figures.duplicated = len(runs) - len({row[0] for row in runs})
    figures.consumers = len({row[3] for row in runs})
    if runs:
        figures.drain_per_s = len(runs) / (max(row[2] for row in runs) - start_at)


def messages_left(candidate: Candidate, queue: str) -> int:
    if candidate.label == "sqlite":
        with sqlite3.connect(candidate.workdir / "broker.sqlite3") as db:
            (left,) = db.execute(
                "SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
                "WHERE m.visible = 1 AND q.name = ?",
                [queue],
            ).fetchone()
        return int(left)
    return len(candidate.message_files(queue))


def drop_bad_messages(candidate: Candidate) -> None:
    if candidate.label == "sqlite":
        with sqlite3.connect(candidate.workdir / "broker.sqlite3") as db:
            (queue_id,) = db.execute("SELECT id FROM kombu_queue WHERE name = 'default'").fetchone()
            for _, content in BAD_MESSAGES:
                db.execute(
                    "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id) "
                    f"VALUES (1, '{BAD_ROW_TIME}', ?, 1, ?)",
                    [content.decode("latin-1"), queue_id],
                )
        return
    for tag, content in BAD_MESSAGES:
        # Written elsewhere and renamed in, so the test itself never shows a worker half a file.
        staged = candidate.workdir / f"bad-{tag}"
        staged.write_bytes(content)
        os.replace(staged, candidate.bad_file_path(tag))


def bad_messages_left(candidate: Candidate) -> int:
    if candidate.label == "sqlite":
        with sqlite3.connect(candidate.workdir / "broker.sqlite3") as db:
            (left,) = db.execute(f"SELECT count(*) FROM kombu_message WHERE visible = 1 AND {BAD_ROW}").fetchone()
        return int(left)
    return sum(1 for path in candidate.message_files("default") if path.name.startswith(GARBAGE_PREFIX))


def measure_bad_messages(
    publisher: Celery, candidate: Candidate, results: Results, workers: list[Worker], figures: Figures
) -> None:
    drop_bad_messages(candidate)
    seq = 2_000_000
    publisher.send_task("broker_bench.record", args=[seq, time.time()], queue="default")
    figures.bad_next_ok = bool(results.wait_for({seq}, timeout=30, workers=workers))
    # One worker can run the good message while the other is still meeting the bad ones.
    deadline = time.monotonic() + 15
    while bad_messages_left(candidate) and not all(w.crashed for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a worker that took the last one logs its crash within microseconds; leave it time
    figures.crashed = sum(w.crashed for w in workers)
    figures.bad_survived = figures.crashed == 0
    if candidate.quarantine_folder.is_dir():
        figures.bad_quarantined = sum(1 for p in candidate.quarantine_folder.iterdir() if GARBAGE_PREFIX in p.name)


def run_candidate(candidate: Candidate, args: argparse.Namespace) -> Figures:
    candidate.workdir.mkdir(parents=True)
    for folder in ("queue", "control"):  # kombu's transport needs them made (the app does it: tasks.celery)
        (candidate.workdir / folder).mkdir()
    results = Results(candidate.workdir / "results.txt")
    publisher = make_app(candidate.config(results.path))
    figures = Figures(candidate)
    workers = [Worker(candidate, results.path, "bench-a")]
    try:
        workers[0].wait_ready()
        measure_latency(publisher, candidate, results, args.samples, figures)
        figures.idle_cpu_percent = measure_idle_cpu(workers[0], args.idle_seconds)
        measure_publish(publisher, args.backlog, figures)
        figures.backlog_cpu_percent = measure_idle_cpu(workers[0], args.idle_seconds)
        purge_elsewhere(candidate)
        workers.append(Worker(candidate, results.path, "bench-b"))
        workers[1].wait_ready()
        measure_concurrency(candidate, results, workers, args.producers, args.messages, figures)
        measure_bad_messages(publisher, candidate, results, workers, figures)
        crash_logs = [w.log_tail(4) for w in workers if w.crashed]
        if crash_logs:
            figures.note += " " + crash_logs[0].splitlines()[-1][:160]
    finally:
        for worker in workers:
            worker.stop()
        publisher.pool.force_close_all()
    return figures


# --- report --------------------------------------------------------------------------------------


def print_report(rows: list[Figures], args: argparse.Namespace) -> None:
    header = (
        f"{'candidate':<18}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'idle CPU %':>12}{'w/ backlog':>12}"
        f"{'publish CPU':>12}{'drain/s':>9}  {'ran/sent':>9}  queued  lost  dup  consumers"
        "   bad files: up / quarantined / next ran"
    )
    print(header)
    for f in rows:
        ran = f.sent - f.lost - f.queued
        bad = f"{'yes' if f.bad_survived else 'NO':>3} / {f.bad_quarantined} of {len(BAD_MESSAGES)} / "
        bad += "yes" if f.bad_next_ok else "NO"
        print(
            f"{f.candidate.name:<18}{f.percentile(0.5):>8.1f}{f.percentile(0.95):>8.1f}{max(f.latencies_ms):>8.1f}"
            f"{f.idle_cpu_percent:>12.2f}{f.backlog_cpu_percent:>12.2f}{f.publish_us:>12.0f}{f.drain_per_s:>9.0f}"
            f"  {ran:>4}/{f.sent:<4}  "
            f"{f.queued:>6}  {f.lost:>4}  {f.duplicated:>3}  {f.consumers:>9}   {bad}"
            + (f"  {f.note.strip()}" if f.note.strip() else "")
        )
    baseline = next((f for f in rows if f.candidate.label == "kombu"), None)
    if baseline is not None:
        print(f"ratios against {baseline.candidate.name} (measured in this run):")
        for f in rows:
            if f is baseline:
                continue
            print(
                f"  {f.candidate.name:<16} latency p50 x{f.percentile(0.5) / baseline.percentile(0.5):.3f}, "
                f"p95 x{f.percentile(0.95) / baseline.percentile(0.95):.3f}; publish x"
                f"{f.publish_us / baseline.publish_us:.2f}; drain x{f.drain_per_s / baseline.drain_per_s:.1f}; "
                f"idle CPU {f.idle_cpu_percent:.2f}% against {baseline.idle_cpu_percent:.2f}%"
            )
    eligible = [f for f in rows if f.robust and max(f.idle_cpu_percent, f.backlog_cpu_percent) <= args.cpu_budget]
    if not eligible:
        print(
            "choice: none (no candidate ran every message once, survived bad files and idled within "
            f"{args.cpu_budget}% of a core, with and without a backlog elsewhere)"
        )
        return
    best = min(eligible, key=lambda f: (f.percentile(0.95), f.idle_cpu_percent))
    failed = [f.candidate.name for f in rows if not f.robust]
    print(
        f"choice: {best.candidate.name}: lowest latency p95 ({best.percentile(0.95):.0f} ms) among the candidates "
        f"that ran every message exactly once, kept their workers up through bad files and idled within "
        f"{args.cpu_budget}% of a core ({best.idle_cpu_percent:.2f}%, {best.backlog_cpu_percent:.2f}% with a "
        f"backlog elsewhere)" + (f"; failed robustness: {', '.join(failed)}" if failed else "")
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40, help="latency messages per candidate")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="CPU is read in 10 ms ticks")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100, help="per producer")
    parser.add_argument("--backlog", type=int, default=2000, help="messages timed alone, left on a queue no one reads")
    parser.add_argument("--intervals", default="0.01,0.02,0.05,0.1", help="hardened polling intervals, seconds")
    parser.add_argument("--cpu-budget", type=float, default=1.5, help="idle CPU allowed per worker, % of one core")
    parser.add_argument("--no-baseline", action="store_true", help="skip kombu's transport at 1 s")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, broker files)")
    parser.add_argument("--produce", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.produce:
        count, offset, start_at = args.produce
        produce(int(count), int(offset), float(start_at))
        return 0
    intervals = [float(x) for x in args.intervals.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench_broker_"))
    # Publishing through the hardened transport imports the tasks package, which loads Django's
    # settings: give them a secret and a folder of their own.
    os.environ.update(child_env(Candidate("kombu", "", 0.0, workdir), workdir / "unused"))
    os.environ.pop(CONFIG_ENV)
    plan = [] if args.no_baseline else [("kombu", "kombu.transport.filesystem:Transport", BASELINE_INTERVAL)]
    plan += [("hardened", "tasks.filesystem_broker:Transport", interval) for interval in intervals]
    sqlite_ok = "SQLiteTransport" in globals()
    if sqlite_ok:
        plan.append(("sqlite", "bench.broker:SQLiteTransport", intervals[len(intervals) // 2]))
    print(
        f"broker benchmark: {args.samples} latency samples, idle CPU over {args.idle_seconds:g} s, "
        f"{args.producers} producers x {args.messages} messages to 2 workers, {len(BAD_MESSAGES)} bad files; "
        f"workers prefork x1 on {','.join(QUEUES)}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if not sqlite_ok:
        print("sqlite: skipped (SQLAlchemy is not importable)")
    rows = []
    try:
        for n, (label, transport, interval) in enumerate(plan):
            candidate = Candidate(label, transport, interval, workdir / f"{n}-{label}")
            started = time.monotonic()
            rows.append(run_candidate(candidate, args))
            print(f"  {candidate.name}: done in {time.monotonic() - started:.0f} s", flush=True)
        print_report(rows, args)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
