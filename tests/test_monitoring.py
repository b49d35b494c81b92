"""Windows, drift and detectors as a service: what a window holds, measures and remembers."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pytest
from django.utils import timezone

from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, Job, MonitorState, Window
from adaptive.services import monitoring
from adaptive.services.monitoring import ErrorStreamDetectors, training_profile
from adaptive.services.registry import upload_version
from tasks import monitoring as monitoring_tasks
from tasks.celery import app
from tests.factories import DeploymentFactory, deployment_with_live_version, make_rows, model_artifacts

pytestmark = pytest.mark.django_db

EVENT_TIME = datetime(2024, 3, 1, tzinfo=UTC)
_ids = itertools.count()


def add_events(
    deployment: Deployment,
    labeled_at: list[datetime] | datetime,
    *,
    n: int | None = None,
    seed: int = 0,
    error: float = 0.2,
    shift: float = 0.0,
    classes: int = 2,
    event_time: datetime | None = None,
) -> list[Event]:
    """Labeled events whose base score is off by about ``error``; the served score by 80% of it.

    ``shift`` moves the ``dep_delay`` feature (by 30 minutes per unit: one standard deviation).
    Event times are a second apart from ``event_time`` (by default a range of their own per seed).
    """
    first_time = event_time or EVENT_TIME + timedelta(seconds=seed * 10_000)
    times = labeled_at if isinstance(labeled_at, list) else [labeled_at] * (n or 0)
    n = len(times)
    rng = np.random.default_rng(seed)
    rows = make_rows(n, seed=seed)
    for row in rows:
        row["dep_delay"] += 30 * shift
    labels = rng.integers(0, classes, n)
    errors = np.clip(rng.normal(error, 0.1, n), 0.001, 0.999)
    events = []
    for i in range(n):
        if classes == 2:
            base = errors[i] if labels[i] == 0 else 1 - errors[i]
            served = base + 0.2 * (labels[i] - base)
            scores: dict[str, Any] = {"base_score": base, "score": served}
        else:
            base_vec = np.full(classes, errors[i] / (classes - 1))
            base_vec[labels[i]] = 1 - errors[i]
            served_vec = 0.8 * base_vec + 0.2 * np.eye(classes)[labels[i]]
            base_vec, served_vec = _rotate_misses(base_vec, served_vec, rng)
            scores = {
                "base_score": float(base_vec.max()),
                "score": float(served_vec.max()),
                "base_proba": base_vec.tolist(),
                "proba": served_vec.tolist(),
            }
        events.append(
            Event(
                deployment=deployment,
                external_id=f"ev-{next(_ids)}",
                event_time=first_time + timedelta(seconds=i),
                received_at=EVENT_TIME,
                features=rows[i],
                version=deployment.live_version,
                label=int(labels[i]),
                labeled_at=times[i],
                **scores,
            )
        )
    return Event.objects.bulk_create(events)


def _rotate_misses(base: np.ndarray, served: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # A quarter of the multiclass events put their top score on a wrong class, so accuracy is not 1.
    if rng.random() < 0.25:
        shift = int(rng.integers(1, len(base)))
        return np.roll(base, shift), np.roll(served, shift)
    return base, served


def direct_auc(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def ago(minutes: float) -> datetime:
    return timezone.now() - timedelta(minutes=minutes)


@pytest.fixture
def dep() -> Deployment:
    deployment = deployment_with_live_version()
    Deployment.objects.filter(pk=deployment.pk).update(window_events=100, window_minutes=60)
    deployment.refresh_from_db()
    return deployment


# --- when ---------------------------------------------------------------------------------------


def test_a_window_is_due_after_window_events_labels(dep: Deployment) -> None:
    add_events(dep, ago(5), n=99)
    assert not monitoring.window_due(dep)
    add_events(dep, ago(5), n=1, seed=1)
    assert monitoring.window_due(dep)


def test_a_window_is_due_once_the_oldest_waiting_label_is_window_minutes_old(dep: Deployment) -> None:
    first = timezone.now() - timedelta(minutes=1)
    add_events(dep, first, n=3)
    assert not monitoring.window_due(dep, first + timedelta(minutes=59))
    assert monitoring.window_due(dep, first + timedelta(minutes=60))

    window = monitoring.close_window(dep, first + timedelta(minutes=60))
    assert window is not None and window.n_labeled == 3
    # The clock restarts from the next waiting label, not from the close: no window of one label
    # right after a quiet hour.
    later = first + timedelta(minutes=90)
    add_events(dep, later, n=1, seed=1)
    assert not monitoring.window_due(dep, later + timedelta(minutes=59))
    assert monitoring.window_due(dep, later + timedelta(minutes=60))


def test_labels_younger_than_the_grace_wait_for_the_next_window(dep: Deployment) -> None:
    now = timezone.now()
    add_events(dep, now - timedelta(seconds=10), n=60)
    add_events(dep, now - timedelta(seconds=1), n=60, seed=1)  # a feedback call may still be committing
    Deployment.objects.filter(pk=dep.pk).update(window_events=61)
    assert not monitoring.window_due(dep, now)

    window = monitoring.close_window(dep, now)
    assert window is not None
    assert window.n_labeled == 60
    assert window.labeled_to == now - timedelta(seconds=10)
    later = monitoring.close_window(dep, now + timedelta(seconds=2))
    assert later is not None and later.n_labeled == 60


def test_no_labels_no_window(dep: Deployment) -> None:
    assert monitoring.close_window(dep) is None
    assert not monitoring.window_due(dep)
    assert not Window.objects.exists()


def test_window_close_requests_coalesce_into_one_queued_job_sent_on_commit(
    dep: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        first = monitoring.request_close(dep)
        second = monitoring.request_close(dep)
    assert first is not None and first.kind == "drift_scan" and first.status == "queued"
    assert second is None
    assert len(callbacks) == 1


def test_a_backlog_is_closed_in_jobs_of_at_most_job_seconds(
    dep: Deployment, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    # Five windows wait. The job's clock moves 3 s per reading: the 8 s budget runs out after the
    # third window, and the job hands the other two to a fresh one.
    for i in range(5):
        add_events(dep, [ago(30 - i) + timedelta(milliseconds=k) for k in range(100)], seed=i)
    clock = itertools.count(0.0, 3.0)
    monkeypatch.setattr(monitoring_tasks, "monotonic", lambda: next(clock))
    assert monitoring_tasks.JOB_SECONDS == 8.0
    with django_capture_on_commit_callbacks():
        job = monitoring.request_close(dep)
    assert job is not None

    with django_capture_on_commit_callbacks() as sent:
        first = monitoring_tasks.close_window(job.pk)

    assert first is not None and len(first["windows"]) == 3
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and "the rest goes to the next job" in job.message
    follow_up = Job.objects.get(kind=Job.Kind.DRIFT_SCAN, status=Job.Status.QUEUED)
    assert len(sent) == 1  # its message leaves on commit

    with django_capture_on_commit_callbacks() as sent:
        rest = monitoring_tasks.close_window(follow_up.pk)

    assert rest is not None and len(rest["windows"]) == 2
    follow_up.refresh_from_db()
    assert follow_up.status == Job.Status.SUCCEEDED and follow_up.message == "2 window(s) closed"
    assert not sent and not Job.objects.filter(status=Job.Status.QUEUED).exists()
    assert [w.n_labeled for w in Window.objects.filter(deployment=dep)] == [100] * 5


def test_beat_scans_for_due_windows_every_window_scan_seconds(settings: Any) -> None:
    entry = app.conf.beat_schedule["close-due-windows"]
    assert entry["task"] == "tasks.monitoring.close_due_windows"
    assert entry["schedule"] == settings.WINDOW_SCAN_SECONDS


# --- what a window measures ---------------------------------------------------------------------


def test_window_metrics_match_a_direct_computation(dep: Deployment) -> None:
    version = dep.live_version
    assert version is not None
    version.threshold = 0.4
    version.save()
    labeled = [ago(10) + timedelta(seconds=i) for i in range(100)]
    events = add_events(dep, labeled, error=0.35, event_time=EVENT_TIME)
    add_events(dep, ago(5), n=30, seed=1, event_time=EVENT_TIME)  # labeled later: the next window's
    Deployment.objects.filter(pk=dep.pk).update(memory_revision=7)
    for i, active in enumerate([True, True, True, False]):
        ErrorSample.objects.create(
            deployment=dep,
            version=version,
            key=b"\0" * 32,
            label=1,
            base_score=0.5,
            revision=i + 1,
            written_at=timezone.now(),
            active=active,
        )

    window = monitoring.close_window(dep)

    assert window is not None
    labels = cast(list[int], [e.label for e in events])  # add_events labels every event
    assert window.version == version
    assert window.n_labeled == 100
    assert window.n_events == 100 + 30  # the other window's events share the event-time range
    assert window.labeled_from is None and window.labeled_to == labeled[-1]
    assert window.start == min(e.event_time for e in events) and window.end == max(e.event_time for e in events)
    assert window.memory_revision == 7 and window.memory_size == 3
    for prefix, field in (("base", "base_score"), ("compensated", "score")):
        p = [getattr(e, field) for e in events]
        log_loss = -sum(math.log(q if y == 1 else 1 - q) for q, y in zip(p, labels, strict=True)) / 100
        accuracy = sum((q >= 0.4) == (y == 1) for q, y in zip(p, labels, strict=True)) / 100
        brier = sum((q - y) ** 2 for q, y in zip(p, labels, strict=True)) / 100
        assert getattr(window, f"{prefix}_auc") == pytest.approx(direct_auc(p, labels))
        assert getattr(window, f"{prefix}_log_loss") == pytest.approx(log_loss)
        assert getattr(window, f"{prefix}_accuracy") == pytest.approx(accuracy)
        assert getattr(window, f"{prefix}_brier") == pytest.approx(brier)
    assert window.compensated_log_loss is not None and window.base_log_loss is not None
    assert window.compensated_log_loss < window.base_log_loss


def test_multiclass_windows_use_macro_one_vs_rest_auc_and_the_vector_brier_score() -> None:
    dep = DeploymentFactory.create(task="multiclass", classes=["a", "b", "c"], window_events=150)
    weights, spec = model_artifacts(n_outputs=3)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    events = add_events(dep, ago(5), n=150, classes=3, error=0.4)

    window = monitoring.close_window(dep)

    assert window is not None
    p = np.array([e.base_proba for e in events])
    y = np.array([e.label for e in events])
    aucs = [direct_auc(p[:, c].tolist(), (y == c).astype(int).tolist()) for c in range(3)]
    assert window.base_auc == pytest.approx(np.mean(aucs))
    assert window.base_accuracy == pytest.approx(np.mean(p.argmax(axis=1) == y))
    assert window.base_brier == pytest.approx(np.mean(np.sum((p - np.eye(3)[y]) ** 2, axis=1)))
    assert window.base_log_loss == pytest.approx(-np.mean(np.log(p[np.arange(150), y])))
    assert window.base_accuracy is not None
    assert 0 < window.base_accuracy < 1


def test_a_backlog_closes_as_windows_of_n_labels_and_never_splits_a_timestamp(dep: Deployment) -> None:
    start = ago(30)
    times = [start + timedelta(seconds=i) for i in range(95)] + [start + timedelta(seconds=95)] * 10
    times += [start + timedelta(seconds=200 + i) for i in range(150)]
    add_events(dep, times)

    windows = []
    while (window := monitoring.close_window(dep)) is not None:
        windows.append(window)

    # 95 + the 10 labels that share the 100th label's timestamp; then 100; then the last 50.
    assert [w.n_labeled for w in windows] == [105, 100, 50]
    assert windows[0].labeled_to == start + timedelta(seconds=95)
    assert [w.labeled_from for w in windows[1:]] == [w.labeled_to for w in windows[:-1]]
    assert sum(w.n_labeled for w in windows) == Event.objects.labeled().count()


def test_closing_the_same_labels_twice_writes_one_window(dep: Deployment) -> None:
    add_events(dep, ago(5), n=100)
    first = monitoring.plan_window(dep)
    second = monitoring.plan_window(dep)  # a second worker, or a duplicate message
    assert first is not None and second is not None

    assert monitoring.commit_window(first) is not None
    assert monitoring.commit_window(second) is None  # the cursor moved under it

    assert Window.objects.count() == 1
    assert monitoring.close_window(dep) is None  # and nothing is left to close
    state = MonitorState.objects.get()
    assert state.detectors["raw"]["error"]["detectors"]["adwin"]["n_seen"] == 100


def test_a_crash_while_writing_leaves_no_half_window(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    add_events(dep, ago(5), n=100)
    monitoring.close_window(dep)
    add_events(dep, ago(4), n=100, seed=1, shift=3)
    before = MonitorState.objects.get()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("worker killed mid-write")

    monkeypatch.setattr(DriftMetric.objects, "bulk_create", crash)
    with pytest.raises(RuntimeError):
        monitoring.close_window(dep)
    monkeypatch.undo()

    assert Window.objects.count() == 1
    after = MonitorState.objects.get()
    assert after.detectors == before.detectors and after.updated_at == before.updated_at
    window = monitoring.close_window(dep)
    assert window is not None and window.n_labeled == 100 and window.drift_metrics.exists()


def test_external_deployments_monitor_without_a_version() -> None:
    dep = DeploymentFactory.create(serving=Deployment.Serving.EXTERNAL, key_dim=4, window_events=50)
    add_events(dep, ago(5), n=50)
    ErrorSample.objects.create(
        deployment=dep, version=None, key=b"\0" * 16, label=0, base_score=0.1, revision=1, written_at=timezone.now()
    )

    window = monitoring.close_window(dep)

    assert window is not None
    assert window.version is None and window.memory_size == 1
    state = MonitorState.objects.get(deployment=dep)
    assert state.version is None and state.reference["label"]


# --- drift --------------------------------------------------------------------------------------


def _levels(window: Window) -> dict[str, tuple[str, str, str]]:
    return {m.column: (m.column_kind, m.method, m.level) for m in window.drift_metrics.all()}


def test_the_first_window_is_the_reference_of_a_version_without_a_profile(dep: Deployment) -> None:
    add_events(dep, ago(10), n=100, seed=1)
    add_events(dep, ago(9), n=100, seed=2, shift=2)

    first = monitoring.close_window(dep)
    second = monitoring.close_window(dep)

    assert first is not None and second is not None
    assert not first.drift_metrics.exists()
    reference = MonitorState.objects.get(version=dep.live_version).reference
    assert len(reference["label"]) == 100 and set(reference["features"]) == {"dep_delay", "distance", "carrier"}
    levels = _levels(second)
    # Every column is judged by its calibrated effect size: shift in reference standard deviations
    # for numbers, Jensen-Shannon distance for categories (adaptive.ml.drift.calibration).
    assert levels["dep_delay"] == ("feature", "wasserstein", "drift")
    assert levels["distance"][:2] == ("feature", "wasserstein") and levels["distance"][2] != "drift"
    assert levels["carrier"][:2] == ("feature", "jensenshannon") and levels["carrier"][2] != "drift"
    assert levels["prediction"][:2] == ("prediction", "wasserstein")
    assert levels["label"][:2] == ("label", "jensenshannon")
    assert levels["error"][:2] == ("error", "wasserstein")
    metric = second.drift_metrics.get(column="dep_delay")
    assert metric.p_value is not None and metric.p_value < dep.drift_p_value
    assert metric.threshold >= dep.drift_distance and metric.statistic > 1.5  # moved by 2 sd
    assert metric.severity == pytest.approx(metric.statistic / metric.threshold)
    assert second.drift_status == "drift"
    (alarm,) = [a for a in second.alarms if a["kind"] == "drift_status"]
    assert alarm["calibrated"] and alarm["columns"][0] == "dep_delay" and "dep_delay" in alarm["reason"]


def test_a_training_profile_is_the_reference_from_the_first_window(dep: Deployment) -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 1500)
    profile = training_profile(make_rows(1500, seed=9), np.clip(0.3 + 0.4 * labels, 0, 1), labels)
    assert dep.live_version is not None and dep.live_version_id is not None
    ModelVersion = type(dep.live_version)
    ModelVersion.objects.filter(pk=dep.live_version_id).update(profile=profile)
    Deployment.objects.filter(pk=dep.pk).update(window_events=1000)
    add_events(dep, ago(5), n=1000, shift=1)

    window = monitoring.close_window(dep)

    assert window is not None
    levels = _levels(window)
    assert levels["dep_delay"] == ("feature", "wasserstein", "drift")
    assert levels["distance"][:2] == ("feature", "wasserstein") and levels["distance"][2] != "drift"
    assert levels["carrier"][:2] == ("feature", "jensenshannon") and levels["carrier"][2] != "drift"
    assert levels["label"][:2] == ("label", "jensenshannon")
    assert MonitorState.objects.get().reference == {}


def test_a_feature_named_like_a_special_column_keeps_its_name(dep: Deployment) -> None:
    Deployment.objects.filter(pk=dep.pk).update(
        feature_schema=[{"name": "label", "type": "categorical"}, {"name": "dep_delay", "type": "numeric"}]
    )
    dep.refresh_from_db()
    events = add_events(dep, [ago(10) + timedelta(seconds=i) for i in range(200)])
    for event in events:
        event.features["label"] = event.features["carrier"]
    Event.objects.bulk_update(events, ["features"])

    monitoring.close_window(dep)
    window = monitoring.close_window(dep)

    assert window is not None
    kinds = {m.column: m.column_kind for m in window.drift_metrics.all()}
    assert kinds["label"] == "feature" and kinds["_label"] == "label"


def test_training_profile_keeps_a_seeded_sample_in_order_with_errors() -> None:
    rows = [{"x": float(i), "c": "a" if i % 2 else "b", "bad": float("nan")} for i in range(10)]
    p = np.linspace(0.05, 0.95, 10)
    y = np.array([0, 1] * 5)

    full = training_profile(rows, p, y)
    sample = training_profile(rows, p, y, max_rows=4, seed=3)

    assert full["features"]["x"] == [float(i) for i in range(10)]
    assert full["features"]["bad"] == [None] * 10
    assert full["error"] == pytest.approx(np.abs(y - p).tolist())
    assert len(sample["label"]) == 4 and sample["features"]["x"] == sorted(sample["features"]["x"])
    assert sample == training_profile(rows, p, y, max_rows=4, seed=3)
    multiclass = training_profile(rows[:2], [[0.2, 0.8], [0.6, 0.4]], [0, 0])
    assert multiclass["prediction"] == [0.8, 0.6] and multiclass["error"] == pytest.approx([0.8, 0.4])


# --- detectors ----------------------------------------------------------------------------------


def test_detector_state_is_saved_per_version_and_continues_exactly(dep: Deployment) -> None:
    for i in range(4):
        add_events(dep, ago(30 - i), n=100, seed=i, error=0.1)
    add_events(dep, ago(20), n=100, seed=9, error=0.6)

    windows = []
    while (window := monitoring.close_window(dep)) is not None:
        windows.append(window)

    # One detector fed the whole stream in one go says the same as five windows with state saved
    # to the database and restored in between.
    events = list(Event.objects.filter(deployment=dep).order_by("labeled_at", "pk"))
    labels = np.array([e.label for e in events])
    p = np.array([e.base_score for e in events])
    errors = np.round(np.abs(labels - p), 6).tolist()
    misses = ((p >= 0.5) != labels).astype(float).tolist()
    uninterrupted = ErrorStreamDetectors().update(errors, misses)
    for kind in ("adwin", "page_hinkley", "kswin", "ddm"):
        positions = [100 * i + d for i, w in enumerate(windows) for d in w.detector_signals["raw"][kind]["detections"]]
        assert positions == uninterrupted[kind]["detections"], kind
        assert windows[-1].detector_signals["raw"][kind]["n_seen"] == 500
    last = windows[-1].detector_signals
    assert last["raw"]["adwin"]["drift"] and last["raw"]["ddm"]["drift"]
    assert not any(w.detector_signals["raw"]["adwin"]["drift"] for w in windows[:4])
    assert set(last) == {"raw", "compensated"}
    assert set(last["compensated"]) == {"adwin", "page_hinkley", "kswin", "ddm"}
    state = MonitorState.objects.get(deployment=dep, version=dep.live_version)
    assert (
        ErrorStreamDetectors.from_state(state.detectors["compensated"]).state_dict() == state.detectors["compensated"]
    )


def _close_all(dep: Deployment, *, cold: bool) -> list[Window]:
    windows: list[Window] = []
    while True:
        if cold:
            monitoring.forget_cached_detectors()
        window = monitoring.close_window(dep)
        if window is None:
            return windows
        windows.append(window)


def test_a_worker_that_keeps_its_detectors_says_what_one_restoring_them_every_window_says(dep: Deployment) -> None:
    # A rising error, so that the detectors fire: what the process keeps between windows must be
    # exactly what the saved state gives back.
    for i in range(6):
        add_events(dep, ago(30 - i), n=100, seed=i, error=0.1 + 0.1 * (i >= 3))
    warm = _close_all(dep, cold=False)
    warm_state = MonitorState.objects.get(deployment=dep).detectors
    Window.objects.filter(deployment=dep).delete()
    MonitorState.objects.filter(deployment=dep).delete()

    cold = _close_all(dep, cold=True)

    assert len(warm) == len(cold) == 6
    assert [w.detector_signals for w in warm] == [w.detector_signals for w in cold]
    assert any(w.detector_signals["raw"]["adwin"]["drift"] for w in warm)
    assert MonitorState.objects.get(deployment=dep).detectors == warm_state


def test_a_plan_that_is_not_committed_leaves_the_detectors_as_saved(dep: Deployment) -> None:
    add_events(dep, ago(30), n=100)
    add_events(dep, ago(20), n=100, seed=1, error=0.5)
    assert monitoring.close_window(dep) is not None  # the process now holds the detectors it saved

    abandoned = monitoring.plan_window(dep)  # steps them through the next window, then is dropped
    assert abandoned is not None
    window = monitoring.close_window(dep)

    assert window is not None
    assert window.detector_signals == abandoned.window["detector_signals"]
    assert window.detector_signals["raw"]["adwin"]["n_seen"] == 200


def test_the_drift_reference_is_read_again_for_another_version(dep: Deployment) -> None:
    # Two versions without a profile: each one's first window is its own reference.
    add_events(dep, ago(30), n=100)
    monitoring.close_window(dep)
    add_events(dep, ago(25), n=100, seed=1, shift=3)
    shifted = monitoring.close_window(dep)
    weights, spec = model_artifacts(seed=1)
    version, created = upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    assert created
    Deployment.objects.filter(pk=dep.pk).update(live_version=version)
    add_events(dep, ago(20), n=100, seed=2, shift=3)
    first_of_v2 = monitoring.close_window(dep)
    add_events(dep, ago(15), n=100, seed=3, shift=3)
    second_of_v2 = monitoring.close_window(dep)

    assert shifted is not None and first_of_v2 is not None and second_of_v2 is not None
    assert shifted.drift_metrics.get(column="dep_delay").level == "drift"
    assert first_of_v2.version == version and not first_of_v2.drift_metrics.exists()
    assert second_of_v2.drift_metrics.get(column="dep_delay").level == "ok"
