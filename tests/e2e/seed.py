"""A realistic deployment for the browser tests, built through the project's own services.

v1 is uploaded and goes live; a real in-process retrain round trains v2 from v1 on labeled events,
its evaluation writes a flip report, and an operator promotes v2, so that a rollback has somewhere
to go. Windows with drift metrics, error samples and detector states fill the deployment page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from adaptive.models import Deployment, DriftMetric, ErrorSample, Job, ModelVersion
from adaptive.services import evaluation, jobs, releases, retraining
from adaptive.services.deployments import update_settings
from adaptive.services.registry import create_deployment, upload_version
from tests.factories import (
    SCHEMA,
    DriftMetricFactory,
    ErrorSampleFactory,
    EventFactory,
    MonitorStateFactory,
    WindowFactory,
    error_stream_state,
    model_artifacts,
)
from tests.test_retraining import FAST, add_labeled_events

N_WINDOWS = 12
N_SAMPLES = 30
# Events received over the last five minutes: the overview's events per minute.
N_RECENT_EVENTS = 50
# The newest window's AUCs, chosen so that any rounding to 2, 3 or 4 places starts the same way.
LATEST_BASE_AUC = 0.7310
LATEST_COMPENSATED_AUC = 0.8120


@dataclass(frozen=True)
class Seeded:
    deployment: Deployment
    v1: ModelVersion
    v2: ModelVersion
    n_windows: int
    memory_size: int  # v2's active samples: its warm-up at promotion (the 300 labeled events) + N_SAMPLES


def create_flights_deployment(*, slug: str, admin: Any) -> tuple[Deployment, ModelVersion]:
    """A binary deployment with the test schema and its uploaded v1 live."""
    fields = {"slug": slug, "name": f"{slug.title()} delays", "task": "binary", "classes": ["0", "1"]}
    deployment, _ = create_deployment(fields={**fields, "feature_schema": SCHEMA}, actor=admin)
    weights, spec = model_artifacts()
    v1, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=admin)
    deployment.refresh_from_db()
    return deployment, v1


def retrained_and_promoted(deployment: Deployment, *, operator: Any) -> ModelVersion:
    """Train v2 from the live version in this process, evaluate it, and promote it as ``operator``."""
    job = retraining.request_retrain(deployment=deployment, actor=operator, reason="drift on carrier", params=FAST)
    claimed = jobs.claim(job.pk, Job.Kind.RETRAIN, device="cpu")
    assert claimed is not None
    candidate = retraining.run_retrain(claimed)
    jobs.succeed(
        claimed, message=f"candidate v{candidate.number} trained on cpu", metrics={"version": candidate.number}
    )
    comparison = evaluation.request_evaluation(
        deployment=deployment,
        old_number=1,
        new_number=candidate.number,
        actor=operator,
        retrain_job=claimed,
    )
    claimed_comparison = jobs.claim(comparison.pk, Job.Kind.EVALUATION, device="cpu")
    assert claimed_comparison is not None
    report = evaluation.run_evaluation(claimed_comparison)
    assert report.gate_passed, report.gate_reasons
    jobs.succeed(claimed_comparison, metrics=evaluation.outcome(report))
    releases.promote(
        deployment=deployment, number=candidate.number, actor=operator, reason="gates passed, flip report looks fine"
    )
    candidate.refresh_from_db()
    return candidate


def add_windows(deployment: Deployment, version: ModelVersion, hours: range, n: int = N_WINDOWS) -> None:
    """Hourly windows served by ``version`` (hour ``i`` of ``n`` ending now), each with drift metrics."""
    first = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=n)
    for i in hours:
        latest = i == n - 1
        late = i >= n - 3
        window = WindowFactory.create(
            deployment=deployment,
            version=version,
            start=first + timedelta(hours=i),
            n_labeled=80 + i,
            base_auc=LATEST_BASE_AUC if latest else 0.66 + 0.005 * i,
            compensated_auc=LATEST_COMPENSATED_AUC if latest else 0.70 + 0.008 * i,
            base_log_loss=0.65 - 0.004 * i,
            compensated_log_loss=0.60 - 0.006 * i,
            memory_size=40 + 10 * i,
            memory_revision=i + 1,
            # The calibrated status the monitoring service would write for carrier's drift.
            drift_status="drift" if late else "ok",
            alarms=[{"kind": "drift_status", "level": "drift", "calibrated": True, "reason": "drift in carrier"}]
            if late
            else [],
        )
        levels = {
            "dep_delay": DriftMetric.Level.OK,
            "distance": DriftMetric.Level.WARN if late else DriftMetric.Level.OK,
            "carrier": DriftMetric.Level.DRIFT if late else DriftMetric.Level.OK,
        }
        for column, level in levels.items():
            method = "chi2" if column == "carrier" else "ks"
            statistic = {"ok": 0.05, "warn": 0.15, "drift": 0.4}[level]
            DriftMetricFactory.create(window=window, column=column, method=method, statistic=statistic, level=level)
        DriftMetricFactory.create(
            window=window, column="prediction", column_kind=DriftMetric.ColumnKind.PREDICTION, statistic=0.04
        )


def seed(*, admin: Any, operator: Any, slug: str = "flights") -> Seeded:
    deployment, v1 = create_flights_deployment(slug=slug, admin=admin)
    # The untrained v1 flips many events; a loose NFR gate lets the retrained v2 pass on its merits.
    deployment = update_settings(
        deployment=deployment, changes={"gate_max_nfr": 0.5}, actor=admin, reason="v1 is an untrained baseline"
    )
    add_labeled_events(deployment, 300)
    # Windows close before and after the retrain and promotion, so the curve's markers fall between.
    add_windows(deployment, v1, range(N_WINDOWS // 2))
    v2 = retrained_and_promoted(deployment, operator=operator)
    deployment.refresh_from_db()
    add_windows(deployment, v2, range(N_WINDOWS // 2, N_WINDOWS))
    now = timezone.now()
    for i in range(N_SAMPLES):
        ErrorSampleFactory.create(
            deployment=deployment,
            version=v2,
            label=i % 2,
            base_score=0.2 + 0.02 * i,
            revision=i + 1,
            written_at=now - timedelta(minutes=N_SAMPLES - i),
        )
    for i in range(N_RECENT_EVENTS):
        received = now - timedelta(seconds=5 * i + 1)
        EventFactory.create(deployment=deployment, version=v2, event_time=received, received_at=received)
    errors = [0.1, 0.2, 0.7, 0.3, 0.9] * 20
    MonitorStateFactory.create(
        deployment=deployment,
        version=v2,
        detectors={"raw": error_stream_state(errors), "compensated": error_stream_state([e / 2 for e in errors])},
    )
    memory_size = ErrorSample.objects.filter(version=v2, active=True).count()
    return Seeded(deployment=deployment, v1=v1, v2=v2, n_windows=N_WINDOWS, memory_size=memory_size)
