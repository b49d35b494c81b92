"""The embedded broker (tasks.filesystem_broker) with real workers: a bad message file cannot stop a
worker, and concurrent publishers lose or repeat nothing.

Only on the embedded pass: on Redis or RabbitMQ there is no message file to spoil.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from celery.result import AsyncResult
from django.conf import settings

from tasks import filesystem_broker
from tasks.celery import app
from tasks.system import ping
from tests.worker import ROOT, celery_worker, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="the embedded (file-system) broker only"
    ),
]

# Sorts before every real message name, so the worker meets the bad files before the next task.
FIRST = "0" * 20
BAD_FILES = {
    "empty": b"",  # created, never written: kombu#1551
    "truncated": b'{"body": "eyJhcmdzIjogW119", "content-encoding": "utf-8", "prop',
    "binary": bytes(range(256)),
    "not-a-message": b'{"hello": "world"}',
}


def broker_folder(option: str) -> Path:
    return Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS[option]))


def worker_log(name: str) -> str:
    """tests.worker.celery_worker logs to VAR_DIR/worker-<tag>.log while the worker runs."""
    tag = name.split("@")[0].removeprefix("test-")
    return (Path(settings.VAR_DIR) / f"worker-{tag}.log").read_text()


def queue_files(queue: str) -> list[str]:
    folder = filesystem_broker.queue_folder(str(broker_folder("data_folder_in")), queue)
    return os.listdir(folder) if folder.exists() else []


def drop_into_queue(queue: str, tag: str, content: bytes) -> str:
    """Put a file in the queue's folder whole (staged elsewhere, renamed in), as a stray writer would."""
    name = f"{FIRST}_{tag}-{uuid.uuid4().hex}.msg"
    staged = broker_folder("tmp_folder") / f"staged-{name}"
    staged.write_bytes(content)
    os.replace(staged, filesystem_broker.queue_folder(str(broker_folder("data_folder_in")), queue) / name)
    return name


def test_the_app_uses_the_hardened_transport_for_filesystem_urls_only() -> None:
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, filesystem_broker.Transport)
        assert conn.transport.polling_interval == settings.CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"]
    # A broker named on the command line or in a test keeps its own transport.
    with app.connection_for_write("redis://127.0.0.1:6379/2") as conn:
        assert conn.transport_cls == "redis"
        assert not issubclass(conn.get_transport_cls(), filesystem_broker.Transport)


def test_worker_quarantines_bad_message_files_and_runs_the_next_task() -> None:
    with celery_worker() as (name, queue):
        assert ping.apply_async(args=[{"n": 1}], queue=queue).get(timeout=90)["pong"] == {"n": 1}
        dropped = {tag: drop_into_queue(queue, tag, content) for tag, content in BAD_FILES.items()}

        reply = ping.apply_async(args=[{"n": 2}], queue=queue).get(timeout=60)

        assert reply["pong"] == {"n": 2}
        quarantined = [p.name for p in broker_folder("quarantine_folder").iterdir() if p.name.startswith(f"{queue}.")]
        assert sorted(quarantined) == sorted(f"{queue}.{name}" for name in dropped.values())
        assert not set(queue_files(queue)) & set(dropped.values())
        log = worker_log(name)
        for file_name in dropped.values():
            assert re.search(rf"ERROR tasks\.filesystem_broker .*unreadable.*{re.escape(file_name)}", log), log
        assert "Unrecoverable error" not in log
        # Still consuming after all four.
        assert ping.apply_async(args=[{"n": 3}], queue=queue).get(timeout=60)["pong"] == {"n": 3}


PUBLISHER = """
import sys
from tasks.celery import app
queue, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n in range(first, first + count):
    print(app.send_task("tasks.system.ping", args=[{"n": n}], queue=queue).id, flush=True)
"""


def succeeded_pings(worker_names: tuple[str, ...]) -> Counter[tuple[str, str]]:
    """(worker, task id) for every ping a worker's log says succeeded."""
    return Counter(
        (name, task_id)
        for name in worker_names
        for task_id in re.findall(r"Task tasks\.system\.ping\[([0-9a-f-]+)\] succeeded", worker_log(name))
    )


def test_concurrent_publishers_and_two_workers_run_every_message_exactly_once() -> None:
    publishers, per_publisher = 4, 50
    total = publishers * per_publisher
    shared = f"test-shared-{uuid.uuid4().hex[:8]}"
    with (
        celery_worker([f"{shared}-a", shared]) as (first, own_a),
        celery_worker([f"{shared}-b", shared]) as (second, own_b),
    ):
        # Both workers consume before anything is published to the shared queue.
        for own in (own_a, own_b):
            ping.apply_async(queue=own).get(timeout=90)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, shared, str(p * per_publisher), str(per_publisher)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(publishers)
        ]
        task_ids: list[str] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            task_ids += out.split()
        assert len(task_ids) == total

        wait_for(lambda: all(AsyncResult(t, app=app).ready() for t in task_ids), timeout=120)
        pongs = sorted(AsyncResult(t, app=app).get(timeout=5)["pong"]["n"] for t in task_ids)
        assert pongs == list(range(total))

        # Each message ran once, in one of the two workers: their logs together name every id once.
        wait_for(lambda: sum(succeeded_pings((first, second)).values()) >= total + 2, timeout=30)
        runs = Counter(task_id for (_, task_id), n in succeeded_pings((first, second)).items() for _ in range(n))
        assert {t: runs[t] for t in task_ids} == dict.fromkeys(task_ids, 1)
        assert sum(runs.values()) == total + 2  # and nothing else ran: the two readiness pings
        assert {worker for worker, task_id in succeeded_pings((first, second)) if task_id in task_ids} == {
            first,
            second,
        }
        assert queue_files(shared) == []
