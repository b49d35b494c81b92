"""Calibrated alarms through the monitoring service: drift status, the loss CUSUM, estimates, health.

Windows are closed by the real service on real rows; the version's profile is the drift reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from adaptive.ml import cbpe
from adaptive.ml.cusum import BURN_IN_WINDOWS
from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, input_spec, parse_schema
from adaptive.ml.training import TrainConfig, train_initial
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import AuditEntry, Deployment, ModelVersion, MonitorState, Window
from adaptive.services import monitoring, policy, summary
from adaptive.services.monitoring import training_profile
from adaptive.services.registry import upload_version
from tests.factories import SCHEMA, DeploymentFactory, deployment_with_live_version, make_rows
from tests.test_monitoring import add_events, ago

pytestmark = pytest.mark.django_db

WINDOW = 200


def _live(deployment: Deployment) -> ModelVersion:
    assert deployment.live_version is not None
    return deployment.live_version


@pytest.fixture
def dep() -> Deployment:
    """A deployment whose live version has a profile drawn like add_events' rows (no drift)."""
    deployment = deployment_with_live_version()
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    errors = np.clip(rng.normal(0.2, 0.1, 2000), 0.001, 0.999)
    scores = np.where(labels == 1, 1 - errors, errors)
    profile = training_profile(make_rows(2000, seed=9), scores, labels)
    ModelVersion.objects.filter(pk=_live(deployment).pk).update(profile=profile)
    Deployment.objects.filter(pk=deployment.pk).update(window_events=WINDOW, window_minutes=600)
    deployment.refresh_from_db()
    return deployment


def _close(dep: Deployment, n_windows: int, *, seed: int, minutes: float, **kwargs: Any) -> list[Window]:
    windows = []
    for i in range(n_windows):
        add_events(dep, ago(minutes - i * 0.01), n=WINDOW, seed=seed + i, **kwargs)
        window = monitoring.close_window(dep)
        assert window is not None
        windows.append(window)
    return windows


def test_windows_like_the_reference_raise_no_calibrated_alarm(dep: Deployment) -> None:
    n = BURN_IN_WINDOWS + 3
    windows = _close(dep, n, seed=100, minutes=30)

    # About 1% of windows may raise the drift status by design; none may retrain.
    assert [w.drift_status for w in windows].count("drift") <= 1
    assert not [a for w in windows for a in w.alarms if a["kind"] == "retrain_trigger"]
    # The CUSUM learned its baseline from the first windows, then scored the rest.
    assert [w.loss_cusum is None for w in windows] == [True] * BURN_IN_WINDOWS + [False] * 3
    state = MonitorState.objects.get(version=dep.live_version).cusum
    assert state["mu"] is not None and state["windows"] == n
    calm = next(w for w in reversed(windows) if w.drift_status == "ok")
    assert summary.health(calm).level == summary.Health.OK


def test_a_rising_compensated_loss_raises_the_retrain_trigger_and_the_policy_flags_it(dep: Deployment) -> None:
    calm = _close(dep, BURN_IN_WINDOWS + 2, seed=200, minutes=30)
    worse = _close(dep, 3, seed=300, minutes=20, error=0.35)

    assert not any(a["kind"] == "retrain_trigger" for w in calm for a in w.alarms)
    first = next(w for w in worse if any(a["kind"] == "retrain_trigger" for a in w.alarms))
    assert first == worse[0]  # a loss this much higher is caught in its first window
    assert first.loss_cusum is not None and first.loss_cusum > 4.0
    verdict = summary.health(first)
    assert verdict.level == summary.Health.DRIFT and any("CUSUM" in reason for reason in verdict.reasons)

    assert policy.act_on_window(dep, first) == "flag"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRAIN)
    assert entry.details["trigger"] == "loss_cusum" and "compensated log loss" in entry.reason


def test_a_worker_that_restores_the_cusum_every_window_says_the_same(dep: Deployment) -> None:
    other = deployment_with_live_version()
    ModelVersion.objects.filter(pk=_live(other).pk).update(profile=_live(dep).profile)
    Deployment.objects.filter(pk=other.pk).update(window_events=WINDOW, window_minutes=600)
    other.refresh_from_db()

    kept = _close(dep, BURN_IN_WINDOWS + 3, seed=400, minutes=30, error=0.25)
    restored = []
    for i in range(BURN_IN_WINDOWS + 3):
        monitoring.forget_cached_detectors()
        restored += _close(other, 1, seed=400 + i, minutes=30 - i * 0.01, error=0.25)

    assert [w.loss_cusum for w in kept] == pytest.approx([w.loss_cusum for w in restored])
    # The drift nulls were drawn once and saved; a worker that reads them back judges alike.
    nulls = MonitorState.objects.get(version=other.live_version).nulls
    assert set(nulls) >= {
        "features/dep_delay/numeric/181",
        "features/carrier/categorical/181",
        "label//categorical/181",
    }
    assert all(len(value) == 2 and value[0] > 0 for value in nulls.values())
    p_values = [sorted(w.drift_metrics.values_list("column", "p_value")) for w in kept]
    assert p_values == [sorted(w.drift_metrics.values_list("column", "p_value")) for w in restored]


def test_a_shifted_feature_names_itself_with_severity_importance_and_histograms(dep: Deployment) -> None:
    ModelVersion.objects.filter(pk=_live(dep).pk).update(importance={"dep_delay": 0.7, "distance": 0.2, "carrier": 0.1})
    dep.refresh_from_db()

    (window,) = _close(dep, 1, seed=500, minutes=30, shift=1)

    assert window.drift_status == "drift"
    metric = window.drift_metrics.get(column="dep_delay")
    assert metric.level == "drift" and metric.severity is not None and metric.severity > 2
    assert metric.importance == pytest.approx(0.7) and metric.psi is not None and metric.psi > 0.1
    histogram = metric.histogram
    assert histogram["kind"] == "numeric" and len(histogram["edges"]) == len(histogram["current"]) + 1
    assert sum(histogram["reference"]) == pytest.approx(1.0, abs=1e-4)
    # The current window's mass moved right: more of it above the reference's median bin.
    half = len(histogram["current"]) // 2
    assert sum(histogram["current"][half:]) > sum(histogram["reference"][half:]) + 0.2
    carrier = window.drift_metrics.get(column="carrier")
    assert carrier.histogram["kind"] == "categorical" and carrier.level != "drift"
    assert window.drift_metrics.get(column="label").importance is None
    (alarm,) = [a for a in window.alarms if a["kind"] == "drift_status"]
    assert alarm["columns"] == ["dep_delay"] and "importance 0.70" in alarm["reason"]


def test_windows_carry_label_free_estimates_from_the_versions_calibration(dep: Deployment) -> None:
    profile = _live(dep).profile
    calibration = cbpe.fit_calibration(profile["prediction"], profile["label"])
    ModelVersion.objects.filter(pk=_live(dep).pk).update(calibration=calibration)
    dep.refresh_from_db()

    (window,) = _close(dep, 1, seed=600, minutes=30)

    events = list(
        dep.events.filter(labeled_at__gt=window.labeled_from or ago(10_000), labeled_at__lte=window.labeled_to)
    )
    base = cbpe.estimate(calibration, [e.base_score for e in events], 0.5)
    served = cbpe.estimate(calibration, [e.score for e in events], 0.5)
    assert window.estimated_base_auc == pytest.approx(base["auc"])
    assert window.estimated_compensated_accuracy == pytest.approx(served["accuracy"])
    # Drawn like the calibration data, so the estimate lands near the realised value.
    assert window.base_auc is not None and window.estimated_base_auc is not None
    assert abs(window.estimated_base_auc - window.base_auc) < 0.05


def test_detector_signals_alone_leave_the_health_ok(dep: Deployment) -> None:
    window = _close(dep, 1, seed=700, minutes=30)[0]
    Window.objects.filter(pk=window.pk).update(
        alarms=[{"kind": "detector", "level": "info", "calibrated": False, "reason": "adwin fired"}]
    )
    window.refresh_from_db()

    assert summary.health(window).level == summary.Health.OK


def test_registering_a_version_measures_importance_and_calibration() -> None:
    """A model trained on rows whose label is dep_delay > 10 leans on dep_delay most."""
    dep = DeploymentFactory.create()
    rows = make_rows(2000, seed=3)
    labels = np.array([int(row["dep_delay"] > 10) for row in rows])
    schema = parse_schema(SCHEMA)
    preprocessing = fit_preprocessing(schema, rows)
    batch = FeatureEncoder(schema, preprocessing).encode(rows)
    config = TrainConfig(epochs=8, batch_size=256, lr=1e-2, seed=0)
    model, _ = train_initial(
        "mlp",
        {"hidden": [16, 8]},
        input_spec(schema, preprocessing),
        1,
        (batch, torch.tensor(labels, dtype=torch.float32)),
        config,
    )
    with torch.inference_mode():
        scores = model.predict_proba(batch).double().numpy()
    spec = {
        "architecture": "mlp",
        "config": {"hidden": [16, 8]},
        "preprocessing": preprocessing,
        "threshold": 0.5,
        "profile": training_profile(rows, scores, labels),
    }

    version, created = upload_version(deployment=dep, spec=spec, weights=state_dict_to_bytes(model), actor=None)

    assert created
    version.refresh_from_db()
    assert set(version.importance) == {"dep_delay", "distance", "carrier"}
    assert sum(version.importance.values()) == pytest.approx(1.0, abs=1e-4)
    assert max(version.importance, key=version.importance.get) == "dep_delay"
    assert version.importance["dep_delay"] > 0.8
    x, y = version.calibration["x"], version.calibration["y"]
    assert x == sorted(x) and y == sorted(y) and 0 <= y[0] <= y[-1] <= 1


def test_a_retrained_candidates_profile_comes_from_its_held_out_rows() -> None:
    """The profile is the calibration's data too: rows the candidate learned from would make it
    overconfident, so the rows that chose its epoch are used when there are enough of them."""
    from datetime import UTC, datetime

    from adaptive.services import retraining

    n = 6000
    rows = retraining._Rows(
        ids=list(range(n)),
        times=[datetime(2024, 1, 1, tzinfo=UTC)] * n,
        features=[{"dep_delay": float(i), "distance": 1.0, "carrier": "AA"} for i in range(n)],
        labels=[i % 2 for i in range(n)],
    )
    proba = torch.linspace(0.01, 0.99, n)
    labels = torch.tensor(rows.labels, dtype=torch.float32)

    held_out = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:600]
    profile = retraining._profile(rows, proba, labels, held_out)
    assert sorted(profile["features"]["dep_delay"]) == sorted(float(i) for i in held_out.tolist())
    assert profile["prediction"] == pytest.approx(sorted(proba[held_out].tolist()), abs=1e-6)

    few = retraining._profile(rows, proba, labels, held_out[:100])
    assert len(few["label"]) == 2000  # too few held out: a sample of every recent row
