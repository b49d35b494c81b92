"""Warm, then switch: a promoted version serves compensated from its first prediction, and no lock
taken by a promotion, a warm-up or a memory update holds up predict or feedback.

Every entry point promotes through ``releases.promote``, which warms the version's memory before the
switch: the REST API (an operator), the evaluate task (the auto policy) and the admin
(tests/test_admin_actions.py). The lock tests hold each lock from one thread, on the real code path,
while another connection inserts events and a job; they need PostgreSQL (SQLite has one writer at a
time by design, and ignores row locks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from django.db import connection, transaction
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.ml.compensation import extract_keys
from adaptive.models import Deployment, ErrorSample, Event, Job, ModelVersion, Release
from adaptive.services import audit, evaluation, ingest, jobs, memory, registry, releases, retraining
from adaptive.services.serving import memory_support
from tasks import training
from tests.factories import deployment_with_live_version, make_rows, model_artifacts
from tests.test_retraining import add_labeled_events, start_retrain

pytestmark = pytest.mark.usefixtures("cpu_and_fresh_runtime")

# A blocked insert waits for the lock's holder; an unblocked one takes milliseconds.
INSERT_DEADLINE_S = 1.0


def _serve_and_label(deployment: Deployment, n: int, *, prefix: str, seed: int, apply: bool = True) -> None:
    """``n`` predictions served by the live version, all labeled (and, with ``apply``, in its memory)."""
    rows: list[dict[str, Any]] = [{"id": f"{prefix}-{i}", "features": f} for i, f in enumerate(make_rows(n, seed=seed))]
    fresh = Deployment.objects.select_related("live_version").get(pk=deployment.pk)
    ingest.predict(deployment=fresh, payload={"rows": rows})
    labels = [{"id": r["id"], "label": int(r["features"]["dep_delay"] > 15)} for r in rows]
    ingest.record_feedback(deployment=fresh, payload={"labels": labels})
    while apply and memory.apply_pending(deployment.pk).applied:
        pass


def _assert_compensated_by(deployment: Deployment, predictions: list[dict[str, Any]], number: int) -> None:
    """Every prediction was served by v``number`` from a memory with support near its rows."""
    assert {p["version"] for p in predictions} == {number}
    assert all(p["score"] != p["base_score"] for p in predictions)
    dep = Deployment.objects.get(pk=deployment.pk)
    version = ModelVersion.objects.get(deployment=dep, number=number)
    loaded = runtime.load_version(dep, version)
    keys = extract_keys(loaded.model, loaded.encoder.encode(make_rows(len(predictions), seed=99)), loaded.key_mean)
    assert bool((memory_support(dep, keys, version.pk) > 0).all())


def _predict(client: APIClient, deployment: Deployment, tag: str, n: int = 20) -> list[dict[str, Any]]:
    rows = [{"id": f"{tag}-{i}", "features": f} for i, f in enumerate(make_rows(n, seed=99))]
    response = client.post(f"/api/v1/deployments/{deployment.slug}/predict", {"rows": rows}, format="json")
    assert response.status_code == 200, response.content
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


# --- warm, then switch ------------------------------------------------------------------------------


def test_the_first_predict_after_an_api_promotion_is_compensated(
    deployment: Deployment, operator_client: APIClient, ingest_client: APIClient
) -> None:
    _serve_and_label(deployment, 300, prefix="served", seed=1)
    weights, spec = model_artifacts(seed=7)
    v2, _ = registry.upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    assert not ErrorSample.objects.filter(version=v2).exists()  # uploaded: never warmed

    response = operator_client.post(
        f"/api/v1/deployments/{deployment.slug}/promote", {"version": 2, "reason": "try v2"}, format="json"
    )
    runtime.clear_cache()  # as a serving process that never saw v2
    first = _predict(ingest_client, deployment, "first")

    assert response.status_code == 200, response.content
    _assert_compensated_by(deployment, first, 2)
    # Warmed before the switch: every sample of v2 is in the revision the release started at.
    release = Release.objects.get(deployment=deployment, ended_at__isnull=True)
    assert ErrorSample.objects.filter(version=v2, active=True).count() == 300
    assert ErrorSample.objects.filter(version=v2, revision__gt=release.memory_revision).count() == 0


def test_the_first_predict_after_an_auto_promotion_by_the_evaluate_task_is_compensated(
    deployment: Deployment, ingest_client: APIClient
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        retrain_policy=Deployment.RetrainPolicy.AUTO, gate_max_nfr=1.0, gate_min_metric_delta=-1.0
    )
    add_labeled_events(deployment, 600)
    candidate = retraining.run_retrain(start_retrain(deployment))
    assert candidate.parent is not None and candidate.origin_job is not None
    job = evaluation.request_evaluation(
        deployment=deployment,
        old_number=candidate.parent.number,
        new_number=candidate.number,
        actor=None,
        retrain_job=candidate.origin_job,
    )

    outcome = training.evaluate(job.pk)  # the task's body, in this process
    runtime.clear_cache()
    first = _predict(ingest_client, deployment, "first")

    assert outcome is not None and outcome["promoted"] is True
    _assert_compensated_by(deployment, first, candidate.number)
    release = Release.objects.get(deployment=deployment, ended_at__isnull=True)
    assert (release.version_id, release.actor_label) == (candidate.pk, "policy")
    assert ErrorSample.objects.filter(version=candidate, active=True).count() == 600
    assert ErrorSample.objects.filter(version=candidate, revision__gt=release.memory_revision).count() == 0


def test_a_candidate_that_passes_its_gate_is_pre_warmed_and_promotion_only_tops_it_up(
    deployment: Deployment,
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(gate_max_nfr=1.0, gate_min_metric_delta=-1.0)  # manual
    add_labeled_events(deployment, 600)
    candidate = retraining.run_retrain(start_retrain(deployment))
    assert candidate.origin_job is not None
    job = evaluation.request_evaluation(
        deployment=deployment, old_number=1, new_number=candidate.number, actor=None, retrain_job=candidate.origin_job
    )
    claimed = jobs.claim(job.pk, Job.Kind.EVALUATION, device="cpu")
    assert claimed is not None

    report = evaluation.run_evaluation(claimed)
    pre_warmed = set(ErrorSample.objects.filter(version=candidate).values_list("event_id", flat=True))
    add_labeled_events(deployment, 25, prefix="late", start=Event.objects.latest("event_time").event_time)
    releases.promote(deployment=deployment, number=candidate.number, actor=None, reason="operator")

    candidate.refresh_from_db()
    assert report.gate_passed is True and len(pre_warmed) == 600
    assert candidate.status == ModelVersion.Status.LIVE
    added = ErrorSample.objects.filter(version=candidate).exclude(event_id__in=pre_warmed)
    assert sorted(added.values_list("event__external_id", flat=True)) == sorted(f"late-{i}" for i in range(25))


def test_a_label_a_warm_up_already_put_in_its_versions_memory_is_marked_not_written_again(
    deployment: Deployment,
) -> None:
    # v1 served these; their labels wait for the memory (a slow or dead fast worker) when an operator
    # promotes v2, then rolls back: promoting v1 again warms it with those same events.
    _serve_and_label(deployment, 300, prefix="served", seed=1)
    _serve_and_label(deployment, 40, prefix="pending", seed=2, apply=False)
    weights, spec = model_artifacts(seed=7)
    v1 = deployment.live_version
    registry.upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    releases.promote(deployment=deployment, number=2, actor=None, reason="try v2")
    releases.rollback(deployment=deployment, actor=None, reason="back")
    assert v1 is not None
    memory.warm(deployment, v1)  # what promoting v1 again does before the switch
    pending = Event.objects.filter(deployment=deployment, external_id__startswith="pending-")
    assert ErrorSample.objects.filter(version=v1, event__in=pending).count() == 40
    assert pending.filter(memory_revision__isnull=True).count() == 40

    applied = memory.apply_pending(deployment.pk)  # raised IntegrityError (version, event) on every retry

    assert applied.applied == 40
    assert pending.filter(memory_revision__isnull=True).count() == 0
    assert ErrorSample.objects.filter(version=v1, event__in=pending).count() == 40  # one each, not two


def test_a_candidate_that_fails_its_gate_is_not_warmed(deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(gate_max_nfr=0.0)
    add_labeled_events(deployment, 600)
    candidate = retraining.run_retrain(start_retrain(deployment))
    assert candidate.origin_job is not None
    job = evaluation.request_evaluation(
        deployment=deployment, old_number=1, new_number=candidate.number, actor=None, retrain_job=candidate.origin_job
    )
    claimed = jobs.claim(job.pk, Job.Kind.EVALUATION, device="cpu")
    assert claimed is not None

    report = evaluation.run_evaluation(claimed)

    assert report.gate_passed is False
    assert not ErrorSample.objects.filter(version=candidate).exists()


def test_promoting_the_live_version_again_warms_nothing(deployment: Deployment) -> None:
    _serve_and_label(deployment, 50, prefix="served", seed=1)
    revision = Deployment.objects.get(pk=deployment.pk).memory_revision

    releases.promote(deployment=deployment, number=1, actor=None, reason="again")

    assert Deployment.objects.get(pk=deployment.pk).memory_revision == revision
    assert ErrorSample.objects.filter(deployment=deployment).count() == 50  # v1's own, from serving


# --- locks that let traffic through (PostgreSQL) ----------------------------------------------------

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="row locks: SQLite serialises writers by design"
)


@contextmanager
def held_inside(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Make the caller of ``target.name`` stop right after it returns, inside its transaction and lock.

    After the call, so that whatever it wrote is locked too. Yields a function that waits until the
    stop is reached; leaving the block releases it.
    """
    reached, release = threading.Event(), threading.Event()
    original = getattr(target, name)

    def stop_here(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        reached.set()
        assert release.wait(timeout=30), "never released"
        return result

    monkeypatch.setattr(target, name, stop_here)

    def wait_until_reached() -> None:
        assert reached.wait(timeout=30), f"{name} was never called"

    try:
        yield wait_until_reached
    finally:
        release.set()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``work`` on its own connection; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # handed to the test, which re-raises it
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def insert_traffic(deployment: Deployment, tag: str) -> float:
    """Predict (event inserts), feedback and a queued compensation job; seconds taken."""
    rows = [{"id": f"{tag}-{i}", "features": f} for i, f in enumerate(make_rows(20, seed=5))]
    started = time.perf_counter()
    fresh = Deployment.objects.select_related("live_version").get(pk=deployment.pk)
    ingest.predict(deployment=fresh, payload={"rows": rows})
    ingest.record_feedback(deployment=fresh, payload={"labels": [{"id": r["id"], "label": 1} for r in rows]})
    jobs.queue_once(fresh, Job.Kind.COMPENSATION)
    return time.perf_counter() - started


def _nothing(dep: Deployment, v2: ModelVersion) -> None:
    pass


def _promote_v2(dep: Deployment, v2: ModelVersion) -> None:
    releases.promote(deployment=dep, number=v2.number, actor=None, reason="before the rollback")


def _warm_up(dep: Deployment, v2: ModelVersion) -> Any:
    return memory.warm(dep, v2)


def _promotion(dep: Deployment, v2: ModelVersion) -> Any:
    return releases.promote(deployment=dep, number=v2.number, actor=None, reason="under load")


def _rollback(dep: Deployment, v2: ModelVersion) -> Any:
    return releases.rollback(deployment=dep, actor=None, reason="under load", number=1)


def _memory_update(dep: Deployment, v2: ModelVersion) -> Any:
    return memory.apply_pending(dep.pk)


def _retrain_request(dep: Deployment, v2: ModelVersion) -> Any:
    return retraining.request_retrain(deployment=dep, actor=None, reason="under load")


def _registration(dep: Deployment, v2: ModelVersion) -> Any:
    weights, spec = model_artifacts(seed=11)
    return registry.upload_version(deployment=dep, spec=spec, weights=weights, actor=None)


# (set-up, the action, where it stops while holding the deployment lock)
LOCKED_PATHS = [
    pytest.param(_nothing, _warm_up, (memory, "_write_samples"), id="warm-up"),
    pytest.param(_nothing, _promotion, (releases, "_switch"), id="promotion"),
    pytest.param(_promote_v2, _rollback, (releases, "_switch"), id="rollback"),
    pytest.param(_nothing, _memory_update, (memory, "_write_samples"), id="memory-update"),
    pytest.param(_nothing, _retrain_request, (audit, "record"), id="retrain-request"),
    pytest.param(_nothing, _registration, (audit, "record"), id="candidate-registration"),
]


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("setup", "action", "stop"), LOCKED_PATHS)
def test_traffic_goes_on_while_an_action_holds_the_deployment_lock(
    setup: Callable[[Deployment, ModelVersion], None],
    action: Callable[[Deployment, ModelVersion], Any],
    stop: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dep = deployment_with_live_version()
    add_labeled_events(dep, 300)
    _serve_and_label(dep, 40, prefix="pending", seed=2, apply=False)  # labels for a memory update
    weights, spec = model_artifacts(seed=7)
    v2, _ = registry.upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    setup(dep, v2)

    with held_inside(*stop, monkeypatch) as wait_until_locked:
        holder, outcome = in_thread(lambda: action(dep, v2))
        wait_until_locked()
        inserter, inserted = in_thread(lambda: insert_traffic(dep, "during"))
        inserter.join(timeout=INSERT_DEADLINE_S)
        blocked = inserter.is_alive()
    inserter.join(timeout=30)
    holder.join(timeout=30)

    assert not blocked, f"predict + feedback + job insert waited more than {INSERT_DEADLINE_S} s for the lock"
    assert inserted and not isinstance(inserted[0], Exception), inserted
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert Event.objects.filter(deployment=dep, external_id__startswith="during").count() == 20


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_plain_for_update_lock_would_block_the_same_traffic() -> None:
    """The control: PostgreSQL's FK check waits for FOR UPDATE, which is what the tests above rule out."""
    dep = deployment_with_live_version()
    locked, release = threading.Event(), threading.Event()

    def hold_for_update() -> None:
        with transaction.atomic():
            Deployment.objects.select_for_update().get(pk=dep.pk)
            locked.set()
            release.wait(timeout=30)

    holder, _ = in_thread(hold_for_update)
    assert locked.wait(timeout=30)
    inserter, outcome = in_thread(lambda: insert_traffic(dep, "blocked"))
    inserter.join(timeout=INSERT_DEADLINE_S)
    blocked = inserter.is_alive()
    release.set()
    holder.join(timeout=30)
    inserter.join(timeout=30)

    assert blocked
    assert outcome and not isinstance(outcome[0], Exception), outcome


# --- the serving side ---------------------------------------------------------------------------------


def test_a_serving_process_rebuilds_a_promoted_versions_memory_in_write_order(deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_capacity=120)
    add_labeled_events(deployment, 200)
    weights, spec = model_artifacts(seed=7)
    v2, _ = registry.upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    memory.warm(deployment, v2)
    add_labeled_events(deployment, 30, prefix="late", start=Event.objects.latest("event_time").event_time)
    releases.promote(deployment=deployment, number=2, actor=None, reason="go")  # tops up, evicts 30
    dep = Deployment.objects.get(pk=deployment.pk)

    live = runtime.live_memory(dep, v2.pk, 8)

    active = list(
        ErrorSample.objects.filter(version=v2, active=True).order_by("revision", "id").values_list("key", flat=True)
    )
    assert len(live.memory) == len(active) == 120
    stored = runtime.decode_keys(active, 8)
    # The exact memory is a ring buffer of the newest keys, in write order.
    assert torch.allclose(live.memory.state_dict()["keys"][: len(active)], stored)
