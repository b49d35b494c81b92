"""The slow loop's services: retrain requests and rounds, memory warm-up, evaluation and gates.

In-process and on the CPU, with a tiny MLP and a few hundred labeled events whose label follows a
simple rule (a delayed departure), so that a few epochs teach the candidate something.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import torch
from django.utils import timezone

from adaptive import runtime
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.compensation import extract_keys
from adaptive.ml.training import Progress
from adaptive.models import AuditEntry, Deployment, ErrorSample, Event, FlipReport, Job, ModelVersion, Release
from adaptive.services import evaluation, ingest, jobs, memory, retraining
from adaptive.services.registry import upload_version
from tests.factories import DeploymentFactory, UserFactory, deployment_with_live_version, make_rows, model_artifacts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cpu_and_fresh_runtime")]

START = datetime(2024, 5, 1, tzinfo=UTC)
# Small and fast: a few epochs over ~500 rows take well under a second on one CPU core.
FAST = {"epochs": 4, "lr": 0.02, "batch_size": 64, "patience": None}


def delayed(row: dict[str, Any]) -> int:
    return int(row["dep_delay"] > 15)


def add_labeled_events(
    deployment: Deployment,
    n: int,
    *,
    seed: int = 0,
    prefix: str = "e",
    start: datetime = START,
    label: Callable[[dict[str, Any]], int] = delayed,
    rows: list[dict[str, Any]] | None = None,
) -> list[Event]:
    """``n`` served and labeled events, one a minute from ``start``; features from ``make_rows``
    unless ``rows`` (``n`` of them) are given."""
    events = [
        Event(
            deployment=deployment,
            external_id=f"{prefix}-{i}",
            event_time=start + timedelta(minutes=i),
            received_at=start + timedelta(minutes=i),
            features=row,
            version=deployment.live_version,
            base_score=0.5,
            score=0.5,
            label=label(row),
            labeled_at=start + timedelta(minutes=i + 1),
        )
        for i, row in enumerate(rows if rows is not None else make_rows(n, seed=seed))
    ]
    assert len(events) == n
    return Event.objects.bulk_create(events)


def start_retrain(deployment: Deployment, params: dict[str, Any] | None = None) -> Job:
    """A retrain job, requested and claimed as the worker would."""
    job = retraining.request_retrain(deployment=deployment, actor=None, reason="test", params=params or FAST)
    claimed = jobs.claim(job.pk, Job.Kind.RETRAIN, device="cpu")
    assert claimed is not None
    return claimed


def start_evaluation(job: Job) -> Job:
    claimed = jobs.claim(job.pk, Job.Kind.EVALUATION, device="cpu")
    assert claimed is not None
    return claimed


@pytest.fixture
def deployment() -> Deployment:
    """v1 live (an untrained MLP) and 600 labeled events."""
    dep = deployment_with_live_version()
    add_labeled_events(dep, 600)
    return dep


@pytest.fixture
def candidate(deployment: Deployment) -> ModelVersion:
    job = start_retrain(deployment)
    return retraining.run_retrain(job)


def _gate_job(candidate: ModelVersion) -> Job:
    assert candidate.parent is not None and candidate.origin_job is not None
    job = evaluation.request_evaluation(
        deployment=candidate.deployment,
        old_number=candidate.parent.number,
        new_number=candidate.number,
        actor=None,
        retrain_job=candidate.origin_job,
    )
    return start_evaluation(job)


# --- requests -------------------------------------------------------------------------------------


def test_request_retrain_queues_a_job_with_the_full_parameters_and_audits_it(deployment: Deployment) -> None:
    operator = UserFactory.create(role="operator")

    job = retraining.request_retrain(
        deployment=deployment, actor=operator, reason="drift on carrier", params={"epochs": 3, "distill": False}
    )

    assert (job.kind, job.status, job.requested_by) == (Job.Kind.RETRAIN, Job.Status.QUEUED, operator)
    assert job.params["epochs"] == 3 and job.params["distill"] is False
    assert job.params["holdout_fraction"] == 0.2 and job.params["recent"] == 5000  # defaults filled in
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert (entry.actor, entry.reason, entry.details["job"]) == (operator, "drift on carrier", job.pk)


def test_a_second_retrain_while_one_is_active_is_a_conflict(deployment: Deployment) -> None:
    first = retraining.request_retrain(deployment=deployment, actor=None, reason="", label="policy")

    with pytest.raises(Conflict, match="already queued or running"):
        retraining.request_retrain(deployment=deployment, actor=None, reason="again")

    assert AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN).actor_label == "policy"
    Job.objects.filter(pk=first.pk).update(status=Job.Status.FAILED)
    assert retraining.request_retrain(deployment=deployment, actor=None, reason="after the failure")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"epoch": 3}, "params.epoch"),
        ({"epochs": 0}, "params.epochs"),
        ({"epochs": 2.5}, "params.epochs"),
        ({"lr": "fast"}, "params.lr"),
        ({"lr": 0}, "params.lr"),
        ({"distill": 1}, "params.distill"),
        ({"holdout_fraction": 0.9}, "params.holdout_fraction"),
        ({"patience": 0}, "params.patience"),
        ([1, 2], "params"),
    ],
)
def test_bad_retrain_parameters_name_the_field(deployment: Deployment, params: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        retraining.request_retrain(deployment=deployment, actor=None, reason="", params=params)

    assert caught.value.field == field
    assert not Job.objects.exists()


def test_deployments_without_a_hosted_live_version_cannot_be_retrained(db: None) -> None:
    external = DeploymentFactory.create(serving=Deployment.Serving.EXTERNAL, key_dim=4, feature_schema=[])
    empty = DeploymentFactory.create()

    for dep in (external, empty):
        with pytest.raises(Conflict):
            retraining.request_retrain(deployment=dep, actor=None, reason="")


# --- the round ------------------------------------------------------------------------------------


def test_a_round_registers_a_candidate_with_its_lineage_and_loadable_weights(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    live = ModelVersion.objects.get(deployment=deployment, number=1)

    assert (candidate.number, candidate.status, candidate.origin) == (2, "candidate", "retrained")
    assert candidate.parent == live and candidate.origin_job is not None
    assert candidate.origin_job.kind == Job.Kind.RETRAIN
    assert (candidate.architecture, candidate.config, candidate.preprocessing, candidate.threshold) == (
        live.architecture,
        live.config,
        live.preprocessing,
        live.threshold,
    )
    assert candidate.weights_sha256 != live.weights_sha256
    holdout = candidate.metrics["holdout"]
    assert holdout["n"] == 120  # the newest 20% of 600
    assert candidate.data_start == START
    assert candidate.data_end == START + timedelta(minutes=479)  # the newest event before the holdout
    assert datetime.fromisoformat(holdout["from_time"]) == START + timedelta(minutes=480)
    assert candidate.metrics["n_train"] + candidate.metrics["n_validation"] == 480
    assert candidate.metrics["epochs_run"] == 4 and len(candidate.metrics["curve"]) == 4
    assert candidate.key_mean is not None and len(candidate.key_mean) == 8
    # The weights load through the serving runtime, and the candidate learned the rule.
    loaded = runtime.load_version(deployment, candidate)
    proba = loaded.predict_proba(make_rows(400, seed=5))
    labels = torch.tensor([delayed(r) for r in make_rows(400, seed=5)])
    assert float(((proba >= 0.5).long() == labels).double().mean()) > 0.8
    if candidate.profile:  # monitoring provides training_profile
        assert set(candidate.profile["features"]) == {"dep_delay", "distance", "carrier"}


def test_progress_heartbeat_and_message_are_written_during_the_round(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retraining, "PROGRESS_INTERVAL", 0.0)
    job = start_retrain(deployment, {**FAST, "epochs": 3})
    seen: list[tuple[float, str]] = []

    def observe(point: Progress) -> None:
        row = Job.objects.get(pk=job.pk)
        assert row.heartbeat_at is not None
        seen.append((row.progress, row.message))

    retraining.run_retrain(job, observe)

    assert [message.split(",")[0] for _, message in seen] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] < fractions[-1] <= 1
    assert "loss" in seen[-1][1]


def test_cancelling_the_job_stops_the_round_and_leaves_no_version(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retraining, "PROGRESS_INTERVAL", 0.0)
    job = start_retrain(deployment, {**FAST, "epochs": 50})
    epochs: list[int] = []

    def cancel_after_the_first_epoch(point: Progress) -> None:
        epochs.append(point.epoch)
        Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)

    with pytest.raises(retraining.Cancelled, match="cancelled"):
        retraining.run_retrain(job, cancel_after_the_first_epoch)

    assert epochs == [1]
    assert list(ModelVersion.objects.filter(deployment=deployment).values_list("number", flat=True)) == [1]


def test_a_job_cancelled_during_the_last_epoch_leaves_no_version(deployment: Deployment) -> None:
    job = start_retrain(deployment, {**FAST, "epochs": 2})

    def cancel(point: Progress) -> None:
        if point.epoch == 2:
            Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)

    with pytest.raises(retraining.Cancelled):
        retraining.run_retrain(job, cancel)

    assert ModelVersion.objects.filter(deployment=deployment).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_stays_fresh_while_a_long_step_runs(settings: Any) -> None:
    from tests.worker import wait_for

    settings.STALE_JOB_SECONDS = 1  # beats every second
    long_ago = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(kind=Job.Kind.RETRAIN, status=Job.Status.RUNNING, heartbeat_at=long_ago)

    with retraining.heartbeat(job.pk):  # a long epoch: no progress report, but the process lives
        wait_for(lambda: Job.objects.get(pk=job.pk).heartbeat_at > long_ago, timeout=10)  # type: ignore[operator]

    assert jobs.fail_stale_running(Job.Kind.RETRAIN, timedelta(seconds=30)) == []


def test_too_few_labeled_events_fail_with_a_clear_message(db: None) -> None:
    dep = deployment_with_live_version()
    add_labeled_events(dep, 150)
    job = start_retrain(dep)

    with pytest.raises(retraining.RetrainError, match="only 150 labeled events; a retrain needs at least 200"):
        retraining.run_retrain(job)

    assert ModelVersion.objects.filter(deployment=dep).count() == 1


def test_the_round_trains_on_recent_events_plus_a_seeded_replay_of_older_ones(deployment: Deployment) -> None:
    params = {**FAST, "recent": 200, "replay_fraction": 0.5, "epochs": 1}
    first = retraining.run_retrain(start_retrain(deployment, params))
    Job.objects.filter(kind=Job.Kind.RETRAIN).update(status=Job.Status.SUCCEEDED)
    second = retraining.run_retrain(start_retrain(deployment, params))

    # 600 labeled: the newest 120 held out, the 200 before them new, 100 replayed from the other 280.
    assert first.metrics["n_replay"] == 100
    assert first.metrics["n_train"] + first.metrics["n_validation"] == 300
    assert first.data_start is not None and first.data_start < START + timedelta(minutes=280)
    assert first.data_end == START + timedelta(minutes=479)
    # Same data, same seed: the same round.
    assert first.weights_sha256 == second.weights_sha256


def test_the_replay_size_follows_the_requested_replay_fraction(deployment: Deployment) -> None:
    # 600 labeled: 120 held out, the 200 before them new, 280 older ones to replay from. The
    # default fraction (0.5) would give 100 every time.
    sizes = {}
    for fraction in (0.25, 1.0, 2.0):
        params = {**FAST, "recent": 200, "replay_fraction": fraction, "epochs": 1}
        version = retraining.run_retrain(start_retrain(deployment, params))
        Job.objects.filter(kind=Job.Kind.RETRAIN).update(status=Job.Status.SUCCEEDED)
        sizes[fraction] = (version.metrics["n_replay"], version.metrics["n_train"] + version.metrics["n_validation"])

    # Twice the new data asks for 400: all 280 older events, not more.
    assert sizes == {0.25: (50, 250), 1.0: (200, 400), 2.0: (280, 480)}


def test_labels_that_arrive_after_the_request_are_not_in_the_round(deployment: Deployment) -> None:
    job = retraining.request_retrain(deployment=deployment, actor=None, reason="retrain at 60%", params=FAST)
    # While the job waits in the queue, the stream goes on: 300 more events are served and labeled.
    later = START + timedelta(days=1)
    rows = make_rows(300, seed=7)
    Event.objects.bulk_create(
        Event(
            deployment=deployment,
            external_id=f"late-{i}",
            event_time=later + timedelta(minutes=i),
            received_at=later,
            features=row,
            version=deployment.live_version,
            base_score=0.5,
            score=0.5,
        )
        for i, row in enumerate(rows)
    )
    labels = [{"id": f"late-{i}", "label": delayed(row)} for i, row in enumerate(rows)]
    assert ingest.record_feedback(deployment=deployment, payload={"labels": labels}).accepted == 300
    claimed = jobs.claim(job.pk, Job.Kind.RETRAIN, device="cpu")
    assert claimed is not None

    version = retraining.run_retrain(claimed)

    assert version.metrics["n_labeled"] == 600  # not 900
    holdout = version.metrics["holdout"]
    assert datetime.fromisoformat(holdout["labeled_before"]) == job.created_at
    assert datetime.fromisoformat(holdout["to_time"]) == START + timedelta(minutes=599)
    assert version.data_end is not None and version.data_end < later
    assert not retraining.holdout_events(deployment, holdout).filter(external_id__startswith="late").exists()


def test_unlabeled_events_and_labels_after_the_round_started_are_not_used(deployment: Deployment) -> None:
    later = START + timedelta(days=30)
    Event.objects.bulk_create(
        Event(
            deployment=deployment,
            external_id=f"u-{i}",
            event_time=later + timedelta(minutes=i),
            received_at=later,
            features=row,
            version=deployment.live_version,
            base_score=0.5,
            score=0.5,
        )
        for i, row in enumerate(make_rows(50, seed=3))
    )

    version = retraining.run_retrain(start_retrain(deployment))

    assert version.metrics["n_labeled"] == 600
    assert datetime.fromisoformat(version.metrics["holdout"]["to_time"]) == START + timedelta(minutes=599)


# --- memory warm-up -------------------------------------------------------------------------------


def test_warm_embeds_the_newest_labeled_events_with_the_versions_model(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_capacity=250)
    deployment.refresh_from_db()
    revision = deployment.memory_revision

    warmed = memory.warm(deployment, candidate)

    assert (warmed.written, warmed.skipped, warmed.revision) == (250, 0, revision + 1)
    assert set(warmed.seconds) == {"read", "embed", "write"}
    samples = ErrorSample.objects.filter(version=candidate).select_related("event")
    assert samples.count() == 250 and {s.revision for s in samples} == {revision + 1}
    assert min(s.event.event_time for s in samples if s.event) == START + timedelta(minutes=350)
    assert Deployment.objects.get(pk=deployment.pk).memory_revision == revision + 1
    # Keys and base scores are the candidate's own, as serving would have computed them.
    sample = samples.order_by("-event__event_time").first()
    assert sample is not None and sample.event is not None
    loaded = runtime.load_version(deployment, candidate)
    batch = loaded.encoder.encode([sample.event.features])
    key = extract_keys(loaded.model, batch, loaded.key_mean)[0]
    assert runtime.decode_keys([sample.key], 8)[0] == pytest.approx(key, abs=1e-6)
    assert sample.base_score == pytest.approx(float(loaded.predict_proba([sample.event.features])[0]), abs=1e-6)
    assert sample.label == delayed(sample.event.features)


def test_a_second_warm_up_only_tops_up_what_is_new(deployment: Deployment, candidate: ModelVersion) -> None:
    assert memory.warm(deployment, candidate, limit=100).written == 100
    assert memory.warm(deployment, candidate, limit=100).written == 0  # the newest 100 have samples
    add_labeled_events(deployment, 10, prefix="late", start=START + timedelta(days=2))

    assert memory.warm(deployment, candidate, limit=100).written == 10  # only the new ones
    assert memory.warm(deployment, candidate).written == 500  # the rest, up to the capacity
    assert memory.warm(deployment, candidate).written == 0
    assert ErrorSample.objects.filter(version=candidate).count() == 610


def test_a_top_up_past_the_capacity_evicts_the_oldest_events(deployment: Deployment, candidate: ModelVersion) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_capacity=250)
    memory.warm(deployment, candidate)
    add_labeled_events(deployment, 10, prefix="late", start=START + timedelta(days=2))

    assert memory.warm(deployment, candidate).written == 10

    active = ErrorSample.objects.filter(version=candidate, active=True).select_related("event")
    assert active.count() == 250
    times = sorted(s.event.event_time for s in active if s.event)
    assert times[0] == START + timedelta(minutes=360)  # the 10 oldest of the first warm-up went
    assert times[-1] == START + timedelta(days=2, minutes=9)


def test_a_large_warm_up_writes_in_batches_oldest_events_first(
    deployment: Deployment, candidate: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "WARM_WRITE_BATCH", 250)  # each batch holds the lock on its own
    monkeypatch.setattr(memory, "WARM_WRITE_BATCH_SQLITE", 250)
    revision = Deployment.objects.get(pk=deployment.pk).memory_revision

    warmed = memory.warm(deployment, candidate)

    assert (warmed.written, warmed.revision) == (600, revision + 3)
    samples = ErrorSample.objects.filter(version=candidate).order_by("revision", "id")
    assert Counter(samples.values_list("revision", flat=True)) == {
        revision + 1: 250,
        revision + 2: 250,
        revision + 3: 100,
    }
    times = [s.event.event_time for s in samples.select_related("event") if s.event]
    assert times == sorted(times)  # write order is event order: eviction drops the oldest events


def test_racing_warm_ups_write_each_event_once(
    deployment: Deployment, candidate: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    embed = memory._embed

    def embed_while_a_rival_finishes(*args: Any) -> Any:
        # Another process (an operator's promotion racing the evaluation's pre-warm) warms the
        # same version between this one's read and its write.
        monkeypatch.setattr(memory, "_embed", embed)
        assert memory.warm(deployment, candidate).written == 600
        return embed(*args)

    monkeypatch.setattr(memory, "_embed", embed_while_a_rival_finishes)

    assert memory.warm(deployment, candidate).written == 0
    assert ErrorSample.objects.filter(version=candidate).count() == 600


def test_events_that_no_longer_encode_are_left_out_of_a_warm_up(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Event.objects.filter(external_id="e-599").update(features={"dep_delay": "late", "distance": 1, "carrier": "AA"})

    warmed = memory.warm(deployment, candidate)

    assert (warmed.written, warmed.skipped) == (599, 1)
    assert not ErrorSample.objects.filter(version=candidate, event__external_id="e-599").exists()


# --- evaluation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"), [(9, 1, "old"), (1, 9, "new"), ("1", 2, "old"), (1, None, "new"), (1, 1, "new")]
)
def test_bad_version_numbers_name_old_or_new(deployment: Deployment, old: Any, new: Any, field: str) -> None:
    weights, spec = model_artifacts(seed=3)
    upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)

    with pytest.raises(InvalidInput) as caught:
        evaluation.request_evaluation(deployment=deployment, old_number=old, new_number=new, actor=None)

    assert caught.value.field == field


def test_the_flip_report_matches_a_direct_count_on_the_holdout(deployment: Deployment, candidate: ModelVersion) -> None:
    report = evaluation.run_evaluation(_gate_job(candidate))

    holdout = list(
        Event.objects.filter(deployment=deployment)
        .order_by("-event_time")[:120]
        .values_list("external_id", "features", "label")
    )
    features = [f for _, f, _ in holdout]
    labels = np.array([y for _, _, y in holdout])
    live = ModelVersion.objects.get(deployment=deployment, number=1)
    old_right = (runtime.load_version(deployment, live).predict_proba(features).numpy() >= live.threshold) == labels
    new_right = (
        runtime.load_version(deployment, candidate).predict_proba(features).numpy() >= candidate.threshold
    ) == labels
    negative_flips = int((old_right & ~new_right).sum())
    assert report.n == 120
    assert report.nfr == pytest.approx(negative_flips / 120)
    assert report.pfr == pytest.approx(int((~old_right & new_right).sum()) / 120)
    assert report.old_accuracy == pytest.approx(old_right.mean())
    assert report.new_accuracy == pytest.approx(new_right.mean())
    assert report.nfr_low <= report.nfr <= report.nfr_high
    assert report.new_auc is not None and report.old_auc is not None and report.new_auc > report.old_auc
    flipped = {
        external_id for (external_id, _, _), o, n in zip(holdout, old_right, new_right, strict=True) if o and not n
    }
    assert set(report.example_event_ids) <= flipped
    assert len(report.example_event_ids) == min(20, negative_flips)
    assert [c["label"] for c in report.per_class] == [0, 1]
    assert sum(c["negative_flips"] for c in report.per_class) == negative_flips
    assert report.gate_passed is not None and len(report.gate_reasons) == 2


def test_a_candidate_failing_its_gate_is_rejected_and_the_live_version_stays(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        retrain_policy=Deployment.RetrainPolicy.AUTO, gate_max_nfr=0.0, gate_min_metric_delta=-1.0
    )

    report = evaluation.run_evaluation(_gate_job(candidate))

    assert report.gate_passed is False
    assert any(reason.startswith("fail: NFR upper bound") for reason in report.gate_reasons)
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.REJECTED
    assert Deployment.objects.get(pk=deployment.pk).live_version.number == 1  # type: ignore[union-attr]
    assert not Release.objects.filter(kind=Release.Kind.PROMOTION).exists()


def test_a_candidate_passing_its_gate_is_promoted_by_the_auto_policy(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        retrain_policy=Deployment.RetrainPolicy.AUTO, gate_max_nfr=1.0, gate_min_metric_delta=0.0
    )

    report = evaluation.run_evaluation(_gate_job(candidate))

    assert report.gate_passed is True
    assert Deployment.objects.get(pk=deployment.pk).live_version_id == candidate.pk
    release = Release.objects.get(deployment=deployment, ended_at__isnull=True)
    assert (release.version_id, release.actor_label) == (candidate.pk, "policy")
    assert release.reason.startswith("gates passed: pass: auc delta")
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.PROMOTE).latest("created_at")
    assert (entry.actor_label, entry.to_version_id) == ("policy", candidate.pk)


def test_under_the_manual_policy_a_passing_candidate_waits_for_an_operator(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(gate_max_nfr=1.0, gate_min_metric_delta=-1.0)

    report = evaluation.run_evaluation(_gate_job(candidate))

    candidate.refresh_from_db()
    assert report.gate_passed is True and candidate.status == ModelVersion.Status.CANDIDATE
    assert Deployment.objects.get(pk=deployment.pk).live_version.number == 1  # type: ignore[union-attr]


def test_running_an_evaluation_twice_gives_one_report(deployment: Deployment, candidate: ModelVersion) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(retrain_policy=Deployment.RetrainPolicy.AUTO, gate_max_nfr=1.0)
    job = _gate_job(candidate)

    first = evaluation.run_evaluation(job)
    second = evaluation.run_evaluation(job)

    assert first == second and FlipReport.objects.count() == 1
    assert Release.objects.filter(kind=Release.Kind.PROMOTION).count() == 1


def test_an_on_demand_comparison_scores_the_newest_events_and_only_reports(
    deployment: Deployment, candidate: ModelVersion
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        retrain_policy=Deployment.RetrainPolicy.AUTO, gate_max_nfr=0.0, gate_min_metric_delta=-1.0
    )
    job = evaluation.request_evaluation(
        deployment=deployment, old_number=1, new_number=2, actor=None, params={"n_events": 50}
    )

    report = evaluation.run_evaluation(start_evaluation(job))

    assert report.n == 50 and report.gate_passed is False
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE  # on demand: no verdict acted on
    with pytest.raises(InvalidInput) as caught:
        evaluation.request_evaluation(deployment=deployment, old_number=1, new_number=2, actor=None, params={"n": 5})
    assert caught.value.field == "params.n"


def test_a_multiclass_deployment_retrains_evaluates_and_warms(db: None) -> None:
    dep = DeploymentFactory.create(task="multiclass", classes=["AA", "UA", "DL", "B6"])
    weights, spec = model_artifacts(n_outputs=4)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    carriers = ["AA", "UA", "DL", "B6"]
    add_labeled_events(dep, 400, label=lambda row: carriers.index(row["carrier"]))

    version = retraining.run_retrain(start_retrain(dep, {**FAST, "epochs": 6}))
    written = memory.warm(dep, version, limit=50).written
    report = evaluation.run_evaluation(_gate_job(version))

    assert report.n == 80 and len(report.per_class) == 4
    assert report.new_accuracy > report.old_accuracy
    sample = ErrorSample.objects.filter(version=version).first()
    assert written == 50 and sample is not None and sample.base_proba is not None
    assert len(sample.base_proba) == 4 and sample.base_score == pytest.approx(max(sample.base_proba))
