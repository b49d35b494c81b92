"""The demo end to end: ``bin/up --fast`` on the embedded defaults, run the way a person runs it.

Nothing is mocked: bin/up migrates a fresh SQLite database under its own VAR_DIR, trains the flights
model, starts gunicorn, a Celery worker and beat on a free port, and the replay client streams the
shortened year through the REST API. Each run gets its own session (``start_new_session``), so after
it ends any process still in that session is one bin/up failed to stop.

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

import numpy as np
import pytest
import torch
from django.core.management import call_command

from adaptive.ml import flips
from adaptive.models import Deployment, IngestionKey, Release

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


class BinUp:
    """``bin/up`` in a session of its own, its output collected line by line."""

    def __init__(self, var_dir: Path, *args: str) -> None:
        env = {name: value for name, value in os.environ.items() if name not in UNSET}
        env.update(VAR_DIR=str(var_dir), PORT=str(_free_port()), HTTPS="0", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [str(ROOT / "bin" / "up"), *args],
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
        call_command("demo_setup", "--fast", "--fast-rows", "300", stdout=second)
    finally:
        torch.set_num_threads(threads)

    assert "uploaded v1" in first.getvalue()
    assert "not retraining" in second.getvalue() and "training" not in second.getvalue().replace("not retraining", "")
    assert "(reused)" in second.getvalue()
    deployment = Deployment.objects.get(slug="flights")
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


def _client_module():  # type: ignore[no-untyped-def]
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
