"""The database keeps the domain's rules: named constraints reject bad rows whatever code writes them.

Each violation runs inside its own ``transaction.atomic()`` so that the IntegrityError rolls back
a savepoint, not the test's transaction (PostgreSQL refuses further queries in an aborted one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from adaptive.models import (
    AuditEntry,
    Deployment,
    DriftMetric,
    ErrorSample,
    Event,
    FlipReport,
    IngestionKey,
    Job,
    ModelVersion,
    Release,
    Window,
)
from tests.factories import DeploymentFactory

T0 = datetime(2013, 6, 1, 5, 15, tzinfo=UTC)


@contextmanager
def violates(constraint: str) -> Iterator[None]:
    """Expect an IntegrityError; PostgreSQL names the constraint, so check it is the right one there.

    SQLite reports a partial unique index by its columns only, so the name is checked on PostgreSQL.
    """
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        yield
    if connection.vendor == "postgresql":
        assert constraint in str(caught.value)


def _version(deployment: Deployment, number: int, status: str = ModelVersion.Status.CANDIDATE) -> ModelVersion:
    return ModelVersion.objects.create(
        deployment=deployment,
        number=number,
        architecture="mlp",
        config={"hidden": [16, 8]},
        preprocessing={},
        weights_path=f"{deployment.slug}/v{number}.safetensors",
        weights_sha256="0" * 64,
        weights_size=1,
        status=status,
    )


def _event(deployment: Deployment, external_id: str) -> Event:
    assert deployment.live_version is not None
    return Event.objects.create(
        deployment=deployment,
        external_id=external_id,
        event_time=T0,
        received_at=T0,
        features={"dep_delay": 1.0, "distance": 500.0, "carrier": "UA"},
        version=deployment.live_version,
        base_score=0.4,
        score=0.4,
    )


# --- Event ----------------------------------------------------------------------------------------


def test_external_id_is_unique_within_a_deployment(deployment: Deployment) -> None:
    _event(deployment, "flight-1")

    with violates("event_external_id_unique_per_deployment"):
        _event(deployment, "flight-1")

    assert Event.objects.filter(deployment=deployment, external_id="flight-1").count() == 1


def test_same_external_id_is_allowed_in_two_deployments(deployment: Deployment) -> None:
    other = DeploymentFactory.create()
    other.live_version = _version(other, 1, ModelVersion.Status.LIVE)
    other.save()

    _event(deployment, "flight-1")
    _event(other, "flight-1")

    assert Event.objects.filter(external_id="flight-1").count() == 2


# --- ModelVersion ---------------------------------------------------------------------------------


def test_a_deployment_has_at_most_one_live_version(deployment: Deployment) -> None:
    assert deployment.live_version is not None and deployment.live_version.status == ModelVersion.Status.LIVE

    with violates("one_live_version_per_deployment"):
        _version(deployment, 2, ModelVersion.Status.LIVE)

    # Candidates and retired versions do not count.
    _version(deployment, 2, ModelVersion.Status.CANDIDATE)
    _version(deployment, 3, ModelVersion.Status.RETIRED)
    assert deployment.versions.filter(status=ModelVersion.Status.LIVE).count() == 1


def test_two_deployments_may_each_have_a_live_version(deployment: Deployment) -> None:
    other = DeploymentFactory.create()

    _version(other, 1, ModelVersion.Status.LIVE)

    assert ModelVersion.objects.filter(status=ModelVersion.Status.LIVE).count() == 2


def test_version_numbers_are_unique_per_deployment(deployment: Deployment) -> None:
    with violates("version_number_unique_per_deployment"):
        _version(deployment, 1)

    other = DeploymentFactory.create()
    _version(other, 1)  # the same number in another deployment is fine
    assert ModelVersion.objects.filter(number=1).count() == 2


def test_version_number_zero_is_rejected(deployment: Deployment) -> None:
    with violates("version_number_positive"):
        _version(deployment, 0)


# --- Release --------------------------------------------------------------------------------------


def test_a_deployment_has_at_most_one_open_release(deployment: Deployment) -> None:
    open_release = Release.objects.get(deployment=deployment, ended_at__isnull=True)
    candidate = _version(deployment, 2)

    with violates("one_open_release_per_deployment"):
        Release.objects.create(deployment=deployment, version=candidate, kind=Release.Kind.PROMOTION, started_at=T0)

    # Closing the open release first makes room for the next one.
    open_release.ended_at = T0
    open_release.save()
    Release.objects.create(deployment=deployment, version=candidate, kind=Release.Kind.PROMOTION, started_at=T0)
    assert Release.objects.filter(deployment=deployment, ended_at__isnull=True).get().version == candidate


# --- Job ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Job.Status.QUEUED, Job.Status.QUEUED),
        (Job.Status.QUEUED, Job.Status.RUNNING),
        (Job.Status.RUNNING, Job.Status.QUEUED),
    ],
)
def test_only_one_active_retrain_job_per_deployment(deployment: Deployment, first: str, second: str) -> None:
    Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=first)

    with violates("one_active_retrain_per_deployment"):
        Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=second)


@pytest.mark.parametrize("finished", [Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED])
def test_a_finished_retrain_does_not_block_a_new_one(deployment: Deployment, finished: str) -> None:
    Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=finished)
    Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=finished)

    Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=Job.Status.QUEUED)

    assert Job.objects.filter(deployment=deployment, kind=Job.Kind.RETRAIN).active().count() == 1


def test_other_job_kinds_and_other_deployments_run_beside_a_retrain(deployment: Deployment) -> None:
    Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN, status=Job.Status.RUNNING)

    Job.objects.create(deployment=deployment, kind=Job.Kind.COMPENSATION, status=Job.Status.RUNNING)
    Job.objects.create(deployment=deployment, kind=Job.Kind.COMPENSATION, status=Job.Status.QUEUED)
    Job.objects.create(deployment=DeploymentFactory.create(), kind=Job.Kind.RETRAIN, status=Job.Status.QUEUED)

    assert Job.objects.active().count() == 4


@pytest.mark.parametrize("kind", [Job.Kind.COMPENSATION, Job.Kind.DRIFT_SCAN])
def test_at_most_one_queued_update_per_deployment_and_kind(deployment: Deployment, kind: str) -> None:
    Job.objects.create(deployment=deployment, kind=kind, status=Job.Status.QUEUED)
    Job.objects.create(deployment=DeploymentFactory.create(), kind=kind, status=Job.Status.QUEUED)
    Job.objects.create(deployment=deployment, kind=kind, status=Job.Status.RUNNING)

    with violates("one_queued_update_per_deployment_kind"):
        Job.objects.create(deployment=deployment, kind=kind, status=Job.Status.QUEUED)


@pytest.mark.parametrize("progress", [-0.1, 1.5])
def test_job_progress_outside_unit_interval_is_rejected(deployment: Deployment, progress: float) -> None:
    with violates("job_progress_in_unit_interval"):
        Job.objects.create(deployment=deployment, kind=Job.Kind.DRIFT_SCAN, progress=progress)


# --- Deployment -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.01, 1.01, 5.0])
def test_compensation_lambda_outside_unit_interval_is_rejected(db: None, value: float) -> None:
    with violates("deployment_lambda_in_unit_interval"):
        DeploymentFactory.create(compensation_lambda=value)

    assert not Deployment.objects.exists()


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_compensation_lambda_bounds_are_allowed(db: None, value: float) -> None:
    DeploymentFactory.create(compensation_lambda=value)

    assert Deployment.objects.get().compensation_lambda == value


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("compensation_gamma", 1.5, "deployment_gamma_in_unit_interval"),
        ("compensation_tau", 0.0, "deployment_tau_positive"),
        ("memory_k", 0, "deployment_k_positive"),
    ],
)
def test_other_adaptation_settings_are_checked_by_the_database(
    db: None, field: str, value: float, constraint: str
) -> None:
    with violates(constraint):
        DeploymentFactory.create(**{field: value})


def test_window_cannot_end_before_it_starts(deployment: Deployment) -> None:
    with violates("window_end_after_start"):
        Window.objects.create(deployment=deployment, start=T0, end=T0 - timedelta(minutes=1))


# --- __str__ --------------------------------------------------------------------------------------


def test_every_model_has_a_readable_str(deployment: Deployment) -> None:
    version = deployment.live_version
    assert version is not None
    event = _event(deployment, "flight-1")
    release = Release.objects.get(deployment=deployment)
    sample = ErrorSample.objects.create(
        deployment=deployment,
        version=version,
        event=event,
        key=b"\0" * 8,
        label=1,
        base_score=0.4,
        revision=1,
        written_at=T0,
    )
    window = Window.objects.create(deployment=deployment, version=version, start=T0, end=T0 + timedelta(hours=1))
    drift = DriftMetric.objects.create(
        window=window,
        column="dep_delay",
        method="ks",
        statistic=0.25,
        p_value=0.01,
        threshold=0.05,
        level=DriftMetric.Level.DRIFT,
    )
    job = Job.objects.create(deployment=deployment, kind=Job.Kind.RETRAIN)
    candidate = _version(deployment, 2)
    flip = FlipReport.objects.create(
        deployment=deployment,
        old_version=version,
        new_version=candidate,
        n=100,
        old_accuracy=0.8,
        new_accuracy=0.82,
        nfr=0.0125,
        nfr_low=0.0,
        nfr_high=0.05,
        pfr=0.03,
        pfr_low=0.01,
        pfr_high=0.08,
        disagreement=0.04,
        mcnemar_p=0.3,
    )
    audit = AuditEntry.objects.get(deployment=deployment, action=AuditEntry.Action.UPLOAD_VERSION)
    key = IngestionKey.objects.create(deployment=deployment, name="edge", prefix="abcdef0123", key_hash="0" * 64)

    rendered = {
        "deployment": str(deployment),
        "version": str(version),
        "release": str(release),
        "event": str(event),
        "sample": str(sample),
        "window": str(window),
        "drift": str(drift),
        "job": str(job),
        "flip": str(flip),
        "audit": str(audit),
        "key": str(key),
    }

    assert rendered["deployment"] == deployment.slug
    assert rendered["version"].endswith(":v1")
    assert rendered["release"].startswith(str(version))
    assert "flight-1" in rendered["event"]
    assert str(version) in rendered["sample"]
    assert "2013-06-01 05:15" in rendered["window"]
    assert rendered["drift"] == "dep_delay ks=0.25 (drift)"
    assert rendered["job"] == f"retrain #{job.pk} (queued)"
    assert "NFR 1.250%" in rendered["flip"]
    assert "upload_version" in rendered["audit"]
    assert "edge" in rendered["key"] and "abcdef0123" in rendered["key"]
