"""A venv with the runtime requirements only (bin/setup without --dev) runs a worker on every broker
docs/operations.md offers: Redis and RabbitMQ.

The dev venv hid a missing dependency once: kombu's Redis transport imports ``packaging``, which
pytest brought in. So the venv here is built by bin/setup itself (``VENV=var/runtime-venv``, reused
while the requirements do not change), and the worker and the client both run on its Python.

Runs once, on the embedded pass: it names its own brokers.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from kombu import Connection

from tests.worker import ROOT, stop
from tests.worker import test_database_url as database_url

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="runs once: on the embedded pass"
    ),
]

VENV = ROOT / "var" / "runtime-venv"
REDIS_URL = "redis://127.0.0.1:6379/12"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"

CLIENT = """
import json, sys
from tasks.celery import app
result = app.send_task("tasks.system.ping", args=[{"via": sys.argv[1]}], queue=sys.argv[2])
print(json.dumps(result.get(timeout=60)))
"""


def reachable(url: str) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 0), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def runtime_python() -> Path:
    """The runtime venv's python, built (or brought up to date) by bin/setup."""
    VENV.parent.mkdir(exist_ok=True)
    # Two test runs on one checkout would otherwise install into the same venv at once.
    with open(VENV.parent / "runtime-venv.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        started = time.monotonic()
        completed = subprocess.run(
            ["bin/setup"],
            cwd=ROOT,
            env={**os.environ, "VENV": str(VENV.relative_to(ROOT))},
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        print(f"runtime venv ready in {time.monotonic() - started:.0f} s")
    return VENV / "bin" / "python"


def runtime_env(broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_RESULT_BACKEND", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {
            "CELERY_BROKER_URL": broker_url,
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def runtime_worker(python: Path, broker_url: str, queue: str) -> Iterator[Path]:
    """``celery -A tasks worker`` on the runtime venv's python; yields its log file."""
    log_path = Path(settings.VAR_DIR) / f"runtime-worker-{queue}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        command = [str(python), "-m", "celery", "-A", "tasks", "worker", "-n", f"{queue}@localhost", "-Q", queue]
        command += ["--pool", "solo", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        proc = subprocess.Popen(command, cwd=ROOT, env=runtime_env(broker_url), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield log_path
        finally:
            stop(proc)
    log_path.unlink(missing_ok=True)


def delete_queue(broker_url: str, queue: str) -> None:
    """Celery declared the private queue (and, on RabbitMQ, its exchange): leave the broker as found."""
    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
        if broker_url.startswith("amqp://"):
            channel.exchange_delete(queue)


def test_runtime_venv_has_no_dev_packages(runtime_python: Path) -> None:
    completed = subprocess.run([str(runtime_python), "-c", "import pytest"], capture_output=True, text=True)

    assert completed.returncode != 0
    assert "No module named 'pytest'" in completed.stderr


@pytest.mark.parametrize("broker_url", [REDIS_URL, AMQP_URL], ids=["redis", "rabbitmq"])
def test_runtime_venv_worker_answers_a_ping_on_the_broker(runtime_python: Path, broker_url: str) -> None:
    if not reachable(broker_url):
        pytest.skip(f"{urlparse(broker_url).scheme} broker not reachable at {broker_url}")
    queue = f"test-runtime-{uuid.uuid4().hex[:8]}"
    try:
        with runtime_worker(runtime_python, broker_url, queue) as log_path:
            completed = subprocess.run(
                [str(runtime_python), "-c", CLIENT, broker_url, queue],
                cwd=ROOT,
                env=runtime_env(broker_url),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            log = log_path.read_text()

        assert completed.returncode == 0, completed.stderr + "\n--- worker log\n" + log
        reply = json.loads(completed.stdout.strip().splitlines()[-1])
        assert reply == {"pong": {"via": broker_url}, "database": True, "vendor": "sqlite"}
        assert f"Connected to {urlparse(broker_url).scheme}://" in log
    finally:
        delete_queue(broker_url, queue)
