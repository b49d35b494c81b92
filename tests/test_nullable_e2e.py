"""Nullable features end to end: a deployment created and a version uploaded over REST, rows with
missing values predicted and labeled over REST, a window closed by its task with the missing share
tested as a drift column, and a retrain (and its evaluation) run by their tasks on those rows."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from django.db.models import F
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, input_spec, parse_schema
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, Job, ModelVersion
from adaptive.services import ingest, memory, monitoring, retraining
from adaptive.services.monitoring import training_profile
from tasks import monitoring as monitoring_tasks
from tasks import training as training_tasks
from tests.factories import upload_payload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cpu_and_fresh_runtime")]

DEPLOYMENTS = "/api/v1/deployments"
SCHEMA = [
    {"name": "dep_delay", "type": "numeric", "nullable": True},
    {"name": "distance", "type": "numeric"},
    {"name": "carrier", "type": "categorical", "nullable": True},
]
FAST = {"epochs": 3, "lr": 0.02, "batch_size": 64, "patience": None}


def flights(n: int, *, missing: float, seed: int) -> list[dict[str, Any]]:
    """Rows where ``missing`` of the delays and about a tenth of the carriers are null."""
    rng = random.Random(seed)
    return [
        {
            "dep_delay": None if rng.random() < missing else rng.gauss(10, 30),
            "distance": rng.uniform(100, 2500),
            "carrier": None if rng.random() < 0.1 else rng.choice(["AA", "UA", "DL"]),
        }
        for _ in range(n)
    ]


def delayed(row: dict[str, Any]) -> int:
    # An unreported delay is more often a long one: the missing value carries information.
    delay = row["dep_delay"]
    return int(delay is None or (isinstance(delay, float) and math.isnan(delay)) or delay > 15)


def version_upload(training_rows: list[dict[str, Any]]) -> tuple[bytes, dict[str, Any]]:
    """Weights of an untrained MLP and a spec with stats and a training profile fitted on rows with nulls."""
    schema = parse_schema(SCHEMA)
    stats = fit_preprocessing(schema, training_rows)
    torch.manual_seed(0)
    model = build_model("mlp", {"hidden": [16, 8]}, input_spec(schema, stats), 1)
    with torch.no_grad():
        proba = model.eval().predict_proba(FeatureEncoder(schema, stats).encode(training_rows))
    labels = [delayed(row) for row in training_rows]
    profile = training_profile(training_rows, proba.double().numpy(), np.array(labels))
    spec = {"architecture": "mlp", "config": {"hidden": [16, 8]}, "preprocessing": stats, "profile": profile}
    return state_dict_to_bytes(model), spec


@pytest.fixture
def deployment(admin_client: APIClient) -> Deployment:
    """Created over REST with a nullable number and a nullable category; v1 uploaded over REST."""
    r = admin_client.post(
        DEPLOYMENTS,
        {
            "slug": "flights",
            "name": "Flights",
            "task": "binary",
            "classes": ["on_time", "delayed"],
            "feature_schema": SCHEMA,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    weights, spec = version_upload(flights(400, missing=0.05, seed=1))
    r = admin_client.post(f"{DEPLOYMENTS}/flights/versions", upload_payload(weights, spec), format="multipart")
    assert r.status_code == 201, r.content
    Deployment.objects.filter(slug="flights").update(window_events=600)
    return Deployment.objects.get(slug="flights")


def predict(client: APIClient, rows: list[dict[str, Any]], prefix: str) -> Any:
    body = {"rows": [{"id": f"{prefix}-{i}", "features": row} for i, row in enumerate(rows)]}
    return client.post(f"{DEPLOYMENTS}/flights/predict", body, format="json")


def test_the_schema_and_stats_keep_the_nullable_features(deployment: Deployment) -> None:
    version = ModelVersion.objects.get(deployment=deployment, number=1)

    assert deployment.feature_schema == SCHEMA
    assert set(version.preprocessing["numeric"]["dep_delay"]) == {"mean", "std", "missing"}
    assert None in version.preprocessing["categorical"]["carrier"]["vocab"]
    assert None in version.profile["features"]["dep_delay"]


def test_rows_with_missing_values_are_scored_and_a_null_elsewhere_is_a_400(
    deployment: Deployment, ingest_client: APIClient
) -> None:
    rows: list[dict[str, Any]] = [
        {"dep_delay": None, "distance": 900.0, "carrier": None},
        {"dep_delay": 5.0, "distance": 900.0, "carrier": "UA"},
    ]

    ok = predict(ingest_client, rows, "ok")
    bad = predict(ingest_client, [rows[1], {**rows[1], "distance": None}], "bad")

    assert ok.status_code == 200, ok.content
    scores = [p["base_score"] for p in ok.json()["predictions"]]
    assert all(0 < s < 1 for s in scores) and scores[0] != scores[1]
    assert Event.objects.get(external_id="ok-0").features == rows[0]  # stored as sent, nulls included
    assert bad.status_code == 400, bad.content
    assert (bad.json()["field"], bad.json()["index"]) == ("distance", 1)
    assert "expected a number, got null" in bad.json()["detail"]
    assert not Event.objects.filter(external_id__startswith="bad").exists()


def test_a_nan_from_an_in_process_caller_is_missing_and_stored_as_null(deployment: Deployment) -> None:
    # NaN from a Python caller of the service is missing too (REST bodies: the test above).
    row = {"dep_delay": math.nan, "distance": 900.0, "carrier": math.nan}

    [nan_prediction] = ingest.predict(deployment=deployment, payload={"rows": [{"id": "nan", "features": row}]})
    [null_prediction] = ingest.predict(
        deployment=deployment,
        payload={"rows": [{"id": "null", "features": {"dep_delay": None, "distance": 900.0, "carrier": None}}]},
    )

    assert nan_prediction.base_score == null_prediction.base_score
    assert Event.objects.get(external_id="nan").features == {"dep_delay": None, "distance": 900.0, "carrier": None}


def test_nan_tokens_over_rest_are_missing_in_a_nullable_feature_and_a_400_elsewhere(
    deployment: Deployment, ingest_client: APIClient
) -> None:
    # Python's json.dumps (and pandas) write a missing float as the token NaN, which JSON lacks.
    def post(features: dict[str, Any], event_id: str) -> Any:
        body = json.dumps({"rows": [{"id": event_id, "features": features}]})
        return ingest_client.post(f"{DEPLOYMENTS}/flights/predict", body, content_type="application/json")

    ok = post({"dep_delay": math.nan, "distance": 900.0, "carrier": "UA"}, "rest-nan")
    bad = post({"dep_delay": 3.0, "distance": math.nan, "carrier": "UA"}, "rest-bad")
    infinite = post({"dep_delay": math.inf, "distance": 900.0, "carrier": "UA"}, "rest-inf")

    assert ok.status_code == 200, ok.content
    assert Event.objects.get(external_id="rest-nan").features["dep_delay"] is None
    assert bad.status_code == 400 and bad.json()["field"] == "distance", bad.content
    assert infinite.status_code == 400 and infinite.json()["field"] == "body", infinite.content
    assert not Event.objects.filter(external_id__in=["rest-bad", "rest-inf"]).exists()


def test_missing_values_flow_through_feedback_the_window_drift_and_a_retrain(
    deployment: Deployment,
    ingest_client: APIClient,
    admin_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given traffic where 40% of the delays are missing, against a training profile with 5%:
    rows = flights(600, missing=0.4, seed=2)
    assert predict(ingest_client, rows, "ev").status_code == 200
    labels = [{"id": f"ev-{i}", "label": ["on_time", "delayed"][delayed(row)]} for i, row in enumerate(rows)]
    r = ingest_client.post(f"{DEPLOYMENTS}/flights/feedback", {"labels": labels}, format="json")
    assert r.status_code == 200, r.content
    # Labels younger than the grace (two seconds) wait for the next window: these are a minute old.
    Event.objects.filter(deployment=deployment).update(labeled_at=F("labeled_at") - timedelta(minutes=1))

    # When the window closes through its task:
    with django_capture_on_commit_callbacks():
        job = monitoring.request_close(deployment) or Job.objects.get(
            kind=Job.Kind.DRIFT_SCAN, status=Job.Status.QUEUED, deployment=deployment
        )
    closed = monitoring_tasks.close_window(job.pk)

    # Then the missing share is a drift column of its own, and the delays that are there did not move.
    assert closed is not None and len(closed["windows"]) == 1
    drift = admin_client.get(f"{DEPLOYMENTS}/flights/drift", {"limit": 100})
    assert drift.status_code == 200, drift.content
    levels = {row["column"]: (row["column_kind"], row["level"]) for row in drift.json()["results"]}
    assert levels["dep_delay (missing)"] == (DriftMetric.ColumnKind.FEATURE, "drift")
    assert levels["dep_delay"][1] != "drift"
    assert "carrier (missing)" in levels and levels["carrier (missing)"][1] != "drift"
    assert set(levels) >= {"distance", "carrier", "prediction", "label", "error"}

    # And a retrain on these rows (its task, then its evaluation's) produces a candidate.
    with django_capture_on_commit_callbacks():
        retrain = retraining.request_retrain(deployment=deployment, actor=None, reason="nulls", params=FAST)
    trained = training_tasks.retrain(retrain.pk)

    assert trained is not None, Job.objects.get(pk=retrain.pk).message
    candidate = ModelVersion.objects.get(pk=trained["version_id"])
    assert candidate.parent is not None and candidate.parent.number == 1
    assert None in candidate.profile["features"]["dep_delay"]
    assert set(candidate.importance) == {"dep_delay", "distance", "carrier"}  # rows with nulls were scored
    evaluation = Job.objects.get(kind=Job.Kind.EVALUATION, deployment=deployment)
    assert training_tasks.evaluate(evaluation.pk) is not None, Job.objects.get(pk=evaluation.pk).message
    loaded = runtime.load_version(deployment, candidate)
    proba = loaded.predict_proba([{"dep_delay": None, "distance": 900.0, "carrier": None}])
    assert torch.isfinite(torch.as_tensor(proba)).all()
    # The candidate's error memory embeds the same rows: none is skipped for its nulls.
    warm = memory.warm(deployment, candidate)
    assert warm.skipped == 0
    assert ErrorSample.objects.filter(version=candidate).count() == len(rows)
