"""An evaluation killed half-way never promotes (PostgreSQL: a real lock wait and a real SIGKILL).

The evaluation runs in its own process. The test holds a row lock on the candidate, so the
evaluation stops inside its final transaction: the flip report is inserted and the promotion is
next, nothing is committed. Then the process is killed with SIGKILL. PostgreSQL rolls the
transaction back: no report, no promotion, the candidate still a candidate; the job is left
"running" until the stale-job sweep fails it, and a new evaluation then completes normally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection

from adaptive import runtime
from adaptive.models import Deployment, FlipReport, Job, ModelVersion, Release
from adaptive.services import evaluation, jobs, retraining
from tasks import training
from tests.factories import deployment_with_live_version
from tests.test_retraining import FAST, add_labeled_events
from tests.worker import ROOT, wait_for
from tests.worker import test_database_url as database_url

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks across processes"),
]


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def _waiting_backend(admin: psycopg.Connection[Any]) -> int | None:
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else None


def test_an_evaluation_killed_inside_its_final_transaction_never_promotes(settings: Any) -> None:
    settings.ADAPTIVE_DEVICE = "cpu"
    runtime.clear_cache()
    dep = deployment_with_live_version()
    add_labeled_events(dep, 600)
    Deployment.objects.filter(pk=dep.pk).update(retrain_policy="auto", gate_max_nfr=1.0, gate_min_metric_delta=-1.0)
    retrain_job = retraining.request_retrain(deployment=dep, actor=None, reason="test", params=FAST)
    claimed = jobs.claim(retrain_job.pk, Job.Kind.RETRAIN, device="cpu")
    assert claimed is not None
    candidate = retraining.run_retrain(claimed)
    job = evaluation.request_evaluation(
        deployment=dep, old_number=1, new_number=candidate.number, actor=None, retrain_job=candidate.origin_job
    )
    script = (
        "import django; django.setup(); from tasks.training import evaluate; import sys; evaluate(int(sys.argv[1]))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ADAPTIVE_DEVICE": "cpu",
    }

    with psycopg.connect(_dsn(), autocommit=False) as holder, psycopg.connect(_dsn(), autocommit=True) as admin:
        holder.execute(f"SELECT 1 FROM {ModelVersion._meta.db_table} WHERE id = %s FOR UPDATE", [candidate.pk])
        proc = subprocess.Popen([sys.executable, "-c", script, str(job.pk)], cwd=ROOT, env=env)
        try:
            wait_for(lambda: _waiting_backend(admin), timeout=120)
            assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            holder.rollback()
        wait_for(lambda: _waiting_backend(admin) is None, timeout=30)

    assert not FlipReport.objects.filter(deployment=dep).exists()
    assert Deployment.objects.get(pk=dep.pk).live_version.number == 1  # type: ignore[union-attr]
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelVersion.Status.CANDIDATE
    assert not Release.objects.filter(deployment=dep, kind=Release.Kind.PROMOTION).exists()

    # The job is left running; the sweep fails it once its heartbeat is stale.
    heartbeat_at = Job.objects.get(pk=job.pk).heartbeat_at
    assert heartbeat_at is not None
    Job.objects.filter(pk=job.pk).update(heartbeat_at=heartbeat_at - timedelta(hours=1))
    assert job.pk in training.sweep_stale()["failed"]
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED

    # A new evaluation of the same candidate completes and the policy promotes it.
    retry = evaluation.request_evaluation(
        deployment=dep, old_number=1, new_number=candidate.number, actor=None, retrain_job=candidate.origin_job
    )
    training.evaluate(retry.pk)
    assert FlipReport.objects.filter(deployment=dep).count() == 1
    assert Deployment.objects.get(pk=dep.pk).live_version_id == candidate.pk
