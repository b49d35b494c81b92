"""The demo end to end: ``bin/up --fast`` on the embedded defaults, run the way a person runs it.

Nothing is mocked: bin/up migrates a fresh SQLite database under its own VAR_DIR, trains the flights
model, starts gunicorn, a Celery worker and beat on a free port, and the replay client streams the
shortened year through the REST API, asking for a retrain part-way through with the admin's token:
the worker trains a candidate, writes its flip report and promotes or rejects it. Each run gets its
own session (``start_new_session``), so after it ends any process still in that session is one bin/up
failed to stop.

Below them: ``manage.py demo_setup`` run twice (the second run must not retrain), and the replay
client's own logic (metrics against the engine's, label delays, retries against a local stub server).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import importlib.util
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.management import call_command

from adaptive.ml import flips
from adaptive.models import Deployment, IngestionKey, Release
from adaptive.services import tokens

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 600  # seconds; the --fast demo takes one to three minutes on two cores
SUMMARY = re.compile(r"^base AUC (?P<base>[0-9.]+) \| compensated AUC (?P<comp>[0-9.]+) \| delta ", re.MULTILINE)
# Settings bin/up must choose itself: the test runs the embedded defaults, as a fresh clone would.
UNSET = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "SECRET_KEY",
    "ARTIFACT_ROOT",
    "STATIC_ROOT",
    "DJANGO_DEBUG",
    "DEMO_EXIT",
    "DEMO_SPEED",
    "DEMO_BATCH",
    "DEMO_LABEL_DELAY",
    "DEMO_TRAIN_MONTHS",
    "DEMO_RETRAIN_AT",
    "DEMO_RETRAIN_PARAMS",
)


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    """A fresh VAR_DIR: a new SQLite database, broker folders, secret key and demo files."""
    _runtime_setup_is_done()
    return tmp_path / "var"


def _runtime_setup_is_done() -> None:
    """Let bin/up's ``bin/setup`` see the runtime requirements as installed when the dev set is.

    bin/setup installs unless a stamp named after the requirements files exists; the test suite runs
    from a venv that ``bin/setup --dev`` made, which holds requirements.txt (requirements-dev.txt
    includes it), so only the runtime stamp is missing and a pip run would be pure waste (and need
    the network).
    """

    def stamp(*names: str) -> Path:
        digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in names)).hexdigest()[:16]
        return ROOT / ".venv" / f".installed-{digest}"

    runtime = stamp("requirements.txt", "requirements.txt")
    if not runtime.exists() and stamp("requirements.txt", "requirements-dev.txt").exists():
        runtime.touch()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs argv[1:] with SIGINT at its default action. A process inherits an ignored SIGINT (pytest
# started with `nohup ... &` from a script), and bash cannot trap a signal ignored when it started:
# bin/up would never see the Ctrl-C the tests send, whatever the shell that started pytest did.
_SIGINT_RESTORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


class BinUp:
    """``bin/up`` in a session of its own, with SIGINT at its default action, its output collected line by line."""

    def __init__(self, var_dir: Path, *args: str) -> None:
        env = {name: value for name, value in os.environ.items() if name not in UNSET}
        env.update(VAR_DIR=str(var_dir), PORT=str(_free_port()), HTTPS="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_RESTORED, str(ROOT / "bin" / "up"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            assert self.proc.poll() is None, f"bin/up exited ({self.proc.returncode}) before {needle!r}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout}s:\n{self.tail()}"
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"bin/up still running after {timeout}s:\n{self.tail()}")
        self._reader.join(timeout=10)
        return status

    def kill(self) -> None:
        """Last resort (a failed test): Ctrl-C, then SIGKILL to everything left in the session."""
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        for pid in _session_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def tail(self, n: int = 60) -> str:
        return "".join(self.lines[-n:])


def _session_members(sid: int) -> Iterator[int]:
    """Live processes of session ``sid`` (zombies, already dead, are not counted)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
        if state != "Z":
            yield int(entry.name)


def _assert_nothing_left(up: BinUp) -> None:
    deadline = time.monotonic() + 5  # a process that has just been reaped may still be listed
    left = list(_session_members(up.proc.pid))
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = list(_session_members(up.proc.pid))
    if left:
        commands = []
        for pid in left:
            with contextlib.suppress(FileNotFoundError):
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
                commands.append(f"{pid}: {command.decode(errors='replace')}")
        up.kill()
        pytest.fail("processes left running after bin/up exited:\n" + "\n".join(commands))


@pytest.mark.worker
def test_fast_demo_runs_end_to_end_and_stops_everything(var_dir: Path) -> None:
    up = BinUp(var_dir, "--fast", "--exit-after-demo")
    try:
        # Late in the replay (after the retrain request at 60%: earlier, the rows served while the
        # worker restarts would weigh on the AUC this test checks), the fast loop's worker dies hard
        # (the OOM killer, say): bin/up restarts it, and the loop catches up before the summary.
        up.wait_for_line("retrain requested after", timeout=RUN_TIMEOUT)
        [worker] = [pid for pid in _session_members(up.proc.pid) if _is_celery_main(pid, "fast@")]
        os.kill(worker, signal.SIGKILL)
        up.wait_for_line("bin/up: worker exited with status 137", timeout=30)
    except BaseException:
        up.kill()
        raise
    status = up.wait(RUN_TIMEOUT)
    output = up.output
    assert status == 0, output[-6000:]
    _assert_nothing_left(up)

    assert "Log in as 'admin' with password" in output
    assert "API token for 'admin'" in output
    assert "uploaded v1" in output  # a fresh VAR_DIR: the first version was trained and uploaded
    match = SUMMARY.search(output)
    assert match, f"no AUC summary line:\n{up.tail()}"
    assert re.search(r"^base log loss [0-9.]+ \| compensated log loss [0-9.]+$", output, re.MULTILINE)

    summary = json.loads((var_dir / "demo" / "last-summary.json").read_text())
    meta = json.loads((var_dir / "demo" / "flights-replay-fast.meta.json").read_text())
    assert 2000 <= meta["rows"] <= 5000
    assert summary["rows_sent"] == summary["labels_sent"] == meta["rows"]
    assert summary["labels_accepted"] == meta["rows"]
    assert summary["exit_status"] == 0 and not summary["interrupted"]
    assert sorted(summary["months"]) == [f"2013-{m:02d}" for m in range(3, 13)]
    base, comp = summary["overall"]["base_auc"], summary["overall"]["compensated_auc"]
    assert (f"{base:.4f}", f"{comp:.4f}") == (match["base"], match["comp"])
    assert 0.55 < base < 0.7  # the model trained on Jan-Feb ranks later months better than chance
    if summary["compensated_rows"]:
        # The target: with the demo's stream, compensation beats the base model.
        assert comp > base, summary["overall"]

    key_file = var_dir / "demo" / "flights-ingestion-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    for private in ("admin-token", "admin-password", "secret_key", "db.sqlite3"):
        assert (var_dir / private).stat().st_mode & 0o777 == 0o600, private
    _assert_the_retrain_is_reported(output, summary, var_dir)

    # The killed worker was restarted and the loop kept up: its lags are in the summary.
    assert re.search(r"^bin/up: worker exited with status 137 at [\d:]+; restarting it$", output, re.MULTILINE)
    loop = summary["loop"]
    assert loop["stalled"] == [], loop
    assert loop["end"]["pending_labels"] == 0, loop
    assert loop["samples"] >= 2 and loop["memory_lag_s"]["max"] is not None
    assert re.search(r"^loop: label-to-memory lag p50 [\d.]+s, p95 [\d.]+s, max [\d.]+s ", output, re.MULTILINE)
    assert "LOOP STALLED" not in output


def _is_celery_main(pid: int, name: str) -> bool:
    """Whether ``pid`` is the main process of the Celery worker whose node name starts with ``name``."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    if b"worker" not in argv or not any(a.startswith(name.encode()) for a in argv):
        return False
    # Pool processes are forks of the main process: their parent runs the same command line.
    parent = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1]
    try:
        return (Path("/proc") / parent / "cmdline").read_bytes() != b"\0".join(argv)
    except FileNotFoundError:
        return True


def _assert_the_retrain_is_reported(output: str, summary: dict, var_dir: Path) -> None:
    """The slow loop in the demo: a retrain job, its flip report, and a promotion or a block."""
    token_file = var_dir / "demo" / "operator-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert token not in output  # the demo's own token: in the file only (ensure_admin prints another)

    retrain = summary["retrain"]
    assert retrain is not None and retrain["error"] is None, retrain
    assert retrain["requested_after"]["rows"] >= 0.6 * summary["rows_sent"]
    job, evaluation, report = retrain["job"], retrain["evaluation"], retrain["flip_report"]
    assert (job["kind"], job["status"], job["device"]) == ("retrain", "succeeded", "cpu")
    assert evaluation["params"]["retrain_job"] == job["id"] and evaluation["status"] == "succeeded"
    assert report["n"] > 0 and report["nfr_low"] <= report["nfr"] <= report["nfr_high"]
    assert report["gate_reasons"]
    # The auto policy may have retrained on drift before the client asked (then this 'job' is either
    # the client's, trained from the policy's promoted candidate, or the policy's own, followed after
    # a 409); either way the report compares the candidate with the version it was trained from.
    old, new = report["old_version"], report["new_version"]
    assert 1 <= old < new == job["metrics"]["version"]
    if retrain["note"] is None:
        assert (job["params"]["epochs"], job["params"]["recent"]) == (3, 3000)  # bin/up's --fast parameters

    assert re.search(r"^== Retrain: requested after \d+ rows \(2013-\d\d, \d+ labels\)$", output, re.MULTILINE)
    assert re.search(
        rf"^retrain job {job['id']}: succeeded in [0-9.]+s \(queued [0-9.]+s\) on cpu; epochs \d+, recent \d+, "
        r"distill True$",
        output,
        re.MULTILINE,
    ), output[-4000:]
    assert re.search(rf"^  candidate v{new}: \d+ epochs run \(best \d+\), \d+ training rows", output, re.MULTILINE)
    assert re.search(
        rf"^flip report {report['id']}: v{old} -> v{new} on {report['n']} held-out labeled events$", output, re.M
    )
    assert re.search(r"^  accuracy [0-9.]+ -> [0-9.]+ \| AUC [0-9.]+ -> [0-9.]+$", output, re.MULTILINE)
    assert re.search(
        r"^  NFR [0-9.]+ \[[0-9.]+, [0-9.]+\] \| PFR [0-9.]+ \| relative NFR ([0-9.]+|-)$", output, re.MULTILINE
    )
    assert re.search(rf"^  gate {'passed' if report['gate_passed'] else 'failed'}:$", output, re.MULTILINE)
    if report["gate_passed"]:  # the demo deployment's retrain policy is auto: a passing candidate goes live
        assert re.search(rf"^promoted: v{new} live since \S+ by policy, replacing v{old}$", output, re.M), output[
            -4000:
        ]
        assert retrain["release"]["version"] == new and retrain["release"]["actor"] == "policy"
    else:
        assert re.search(rf"^blocked: v{new} rejected by the gate; v{old} stays live$", output, re.M), output[-4000:]
        assert str(new) not in summary["versions"]
    # The per-version table: every version that served rows, with its AUCs.
    for version, figures in summary["per_version"].items():
        assert re.search(rf"^v{version} +{figures['n']} +2013-\d\d\.\.2013-\d\d ", output, re.MULTILINE)


@pytest.mark.worker
def test_ctrl_c_during_the_replay_stops_everything(var_dir: Path) -> None:
    up = BinUp(var_dir, "--fast")
    try:
        up.wait_for_line("replaying ", timeout=RUN_TIMEOUT)
        time.sleep(3)  # mid-replay: the --fast replay runs about 20 s
        assert up.proc.poll() is None, up.tail()
        # What a terminal does on Ctrl-C: SIGINT to the foreground process group.
        os.killpg(up.proc.pid, signal.SIGINT)
        status = up.wait(90)
    except BaseException:
        up.kill()
        raise
    assert status == 130, up.tail()
    assert "stopping..." in up.output
    assert "== Replay summary: flights (interrupted)" in up.output
    _assert_nothing_left(up)


@pytest.mark.django_db
def test_demo_setup_twice_reuses_the_deployment_version_and_key(settings, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as bin/up runs it: one thread is several times faster on a busy machine
    try:
        call_command("demo_setup", "--fast", "--fast-rows", "300", stdout=first)
        key = (tmp_path / "demo" / "flights-ingestion-key").read_text()
        # No admin on the first run: no token file (the replay then cannot retrain); bin/up runs
        # ensure_admin first, as here before the second run.
        assert not (tmp_path / "demo" / "operator-token").exists()
        admin = get_user_model().objects.create_superuser("admin", password="x")
        call_command("demo_setup", "--fast", "--fast-rows", "300", stdout=second)
    finally:
        torch.set_num_threads(threads)

    assert "uploaded v1" in first.getvalue() and "no operator 'admin'" in first.getvalue()
    assert "not retraining" in second.getvalue() and "training" not in second.getvalue().replace("not retraining", "")
    assert "(reused)" in second.getvalue()
    deployment = Deployment.objects.get(slug="flights")
    assert deployment.retrain_policy == Deployment.RetrainPolicy.AUTO  # a passing candidate goes live
    token_file = tmp_path / "demo" / "operator-token"
    token = tokens.find_active(token_file.read_text().strip())
    assert token is not None and token.user == admin
    assert token_file.stat().st_mode & 0o777 == 0o600
    version = deployment.live_version
    assert version is not None and deployment.versions.count() == 1
    assert version.key_mean is not None and len(version.key_mean) == 32
    assert version.data_end == datetime(2013, 3, 1, tzinfo=UTC)
    assert Release.objects.filter(deployment=deployment, version=version).count() == 1
    assert IngestionKey.objects.filter(deployment=deployment, revoked_at__isnull=True).count() == 1
    assert (tmp_path / "demo" / "flights-ingestion-key").read_text() == key

    rows = [json.loads(line) for line in (tmp_path / "demo" / "flights-replay-fast.jsonl").read_text().splitlines()]
    assert 250 <= len(rows) <= 300
    times = [row["ts"] for row in rows]
    assert times == sorted(times) and times[0] >= "2013-03-01" and times[-1] < "2014"
    assert {row["label"] for row in rows} == {0, 1}
    assert set(rows[0]["features"]) == {entry["name"] for entry in deployment.feature_schema}


# --- the replay client's own logic (a plain script: loaded from its file) -------------------------


def _client_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay_client", ROOT / "examples" / "replay_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_client_metrics_match_the_engine() -> None:
    client = _client_module()
    rng = random.Random(7)
    labels = [rng.random() < 0.3 for _ in range(500)]
    scores = [round(rng.random() * 0.5 + 0.3 * y, 2) for y in labels]  # rounded: many ties
    y = [int(v) for v in labels]
    assert client.roc_auc(scores, y) == pytest.approx(flips.roc_auc(np.array(scores), np.array(y)), abs=1e-12)
    assert client.log_loss(scores, y) == pytest.approx(flips.log_loss(np.array(scores), np.array(y)), abs=1e-12)
    assert client.roc_auc([0.1, 0.2], [1, 1]) is None


def test_client_label_delay_reads_batches_or_seconds() -> None:
    client = _client_module()
    assert client.LabelDelay.parse("3") == client.LabelDelay(batches=3)
    assert client.LabelDelay.parse("2.5s") == client.LabelDelay(seconds=2.5)
    for bad in ("-1", "x", "-2s", "nans"):
        with pytest.raises(argparse.ArgumentTypeError):
            client.LabelDelay.parse(bad)
    pending = client.PendingLabels(client.LabelDelay(batches=2))
    for number in (1, 2, 3):
        pending.add(number, [{"id": str(number), "label": 0}])
    assert [labels[0]["id"] for labels in pending.due(3)] == ["1"]  # batch 1 waited for batches 2 and 3
    assert [labels[0]["id"] for labels in pending.drain()] == ["2", "3"]


def test_client_retries_503_and_connection_errors_then_gives_up() -> None:
    client = _client_module()
    answers = [503, 503, 200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status = answers.pop(0)
            body = b'{"predictions": []}' if status == 200 else b'{"error": "unavailable"}'
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = client.Api(f"http://127.0.0.1:{server.server_port}", "flights", "Key k", timeout=5, retries=3)
        assert api.post("predict", {"rows": []}) == {"predictions": []}
        assert api.retried == 2
        api.close()
    finally:
        server.shutdown()
        server.server_close()
    dead = client.Api(f"http://127.0.0.1:{_free_port()}", "flights", "Key k", timeout=1, retries=1)
    with pytest.raises(client.ApiError, match="gave up after 1 retries"):
        dead.post("predict", {"rows": []})


def test_client_follows_a_retrain_already_running_to_its_promotion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 409 on the retrain request (the auto policy started one): the client follows that job instead."""
    client = _client_module()
    monkeypatch.setattr(client, "RETRAIN_POLL_SECONDS", 0.0)
    stamp = "2013-09-01T10:00:0{}Z"
    job = {"id": 7, "kind": "retrain", "status": "running", "message": "epoch 2/10", "device": "cpu",
           "requested_by": None, "params": {"epochs": 10, "recent": 5000, "distill": True}, "metrics": {},
           "created_at": stamp.format(0), "started_at": stamp.format(1), "finished_at": None}  # fmt: skip
    done = {**job, "status": "succeeded", "message": "candidate v2 trained on cpu", "finished_at": stamp.format(4),
            "metrics": {"version": 2, "epochs_run": 10, "best_epoch": 8, "n_train": 7000, "n_replay": 2500,
                        "val_auc": 0.71, "seconds": 2.5}}  # fmt: skip
    evaluation = {"id": 9, "kind": "evaluation", "status": "succeeded", "message": "v1 vs v2: gate passed",
                  "params": {"retrain_job": 7}, "created_at": stamp.format(4), "started_at": stamp.format(5),
                  "finished_at": stamp.format(6),
                  "metrics": {"report": 3, "old": 1, "new": 2, "promoted": True, "new_status": "live"}}  # fmt: skip
    report = {"id": 3, "job": 9, "old_version": 1, "new_version": 2, "n": 440, "old_accuracy": 0.68,
              "new_accuracy": 0.69, "old_auc": 0.64, "new_auc": 0.70, "nfr": 0.002, "nfr_low": 0.0004,
              "nfr_high": 0.01, "pfr": 0.01, "relative_nfr": 0.02, "gate_passed": True,
              "gate_reasons": ["pass: auc delta +0.06", "pass: NFR upper bound 0.01"]}  # fmt: skip
    routes = {
        ("POST", "/api/v1/deployments/flights/retrain", ""): (409, {"error": "conflict"}),
        ("GET", "/api/v1/jobs", "deployment=flights&limit=1"): (200, {"results": [{"id": 5}]}),
        ("GET", "/api/v1/jobs", "retrain"): (200, {"results": [job]}),
        ("GET", "/api/v1/jobs/7", ""): (200, done),
        ("GET", "/api/v1/jobs", "evaluation"): (200, {"results": [evaluation]}),
        ("GET", "/api/v1/deployments/flights/releases", ""): (
            200,
            {"results": [{"version": 2, "kind": "promotion", "actor": "policy", "started_at": stamp.format(6)}]},
        ),
        ("GET", "/api/v1/deployments/flights/flip-reports/3", ""): (200, report),
        ("GET", "/api/v1/deployments/flights/flip-reports", ""): (
            200,
            {"results": [report, {**report, "id": 2, "job": 4}]},  # job 4: before the replay, not listed
        ),
    }
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            seen.append(f"{method} {self.path}")
            if method == "POST":
                self.rfile.read(int(self.headers["Content-Length"]))
            status, body = next(
                (answer for (m, p, q), answer in routes.items() if m == method and p == path and q in query),
                (404, {"error": "not_found"}),
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.answer("GET")

        def do_POST(self) -> None:
            self.answer("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = client.Api(f"http://127.0.0.1:{server.server_port}", "flights", "Token t", timeout=5, retries=0)
        retrain = client.Retrain(api, 0.6, {"epochs": 3}, "test")
        retrain.start()
        tally = client.Tally(rows_sent=600, accepted=550)
        assert retrain.due(tally, 1000)
        retrain.request(tally, "2013-09")
        retrain.wait(10)
        retrain.collect_others()
        api.close()
    finally:
        server.shutdown()
        server.server_close()

    assert retrain.error is None and retrain.done, seen
    lines = "\n".join(retrain.lines())
    assert "a retrain was already running (job 7, by the retrain policy): followed it" in lines
    assert "retrain job 7: succeeded in 3.0s (queued 1.0s) on cpu; epochs 10, recent 5000, distill True" in lines
    assert "evaluation job 9: succeeded in 1.0s (queued 1.0s)" in lines
    assert "flip report 3: v1 -> v2 on 440 held-out labeled events" in lines
    assert "  NFR 0.0020 [0.0004, 0.0100] | PFR 0.0100 | relative NFR 0.0200" in lines
    assert "    pass: NFR upper bound 0.01" in lines
    assert "promoted: v2 live since 2013-09-01T10:00:06Z by policy, replacing v1" in lines
    assert "other comparisons" not in lines  # report 2 came from job 4, before the replay
