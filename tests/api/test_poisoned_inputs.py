"""Inputs that fit float64 or a JSON document but not what the server computes with or stores.

Each test sends the attack through the API, checks the 400 names the row and field, that nothing
was stored, and that the deployment still serves and learns afterwards.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from adaptive.models import Deployment, ErrorSample, Event, ModelVersion
from adaptive.services.memory import apply_pending, warm
from adaptive.services.registry import upload_version
from tests.factories import make_rows, model_artifacts, upload_payload

DEPLOYMENTS = "/api/v1/deployments"


def _url(deployment: Deployment, action: str) -> str:
    return f"{DEPLOYMENTS}/{deployment.slug}/{action}"


@pytest.fixture
def external(admin_client: APIClient) -> Deployment:
    body = {"slug": "ext", "name": "Ext", "task": "binary", "serving": "external", "key_dim": 3}
    assert admin_client.post(DEPLOYMENTS, body, format="json").status_code == 201
    return Deployment.objects.get(slug="ext")


def _compensate(client: APIClient, deployment: Deployment, rows: list[dict[str, Any]]) -> Any:
    return client.post(_url(deployment, "compensate"), {"rows": rows}, format="json")


def _label_and_apply(client: APIClient, deployment: Deployment, ids: list[str]) -> None:
    labels = [{"id": i, "label": n % 2} for n, i in enumerate(ids)]
    assert client.post(_url(deployment, "feedback"), {"labels": labels}, format="json").status_code == 200
    apply_pending(deployment.pk)


# --- keys and scores of external deployments -------------------------------------------------------


@pytest.mark.parametrize("value", [1e308, -1e39, 3.5e38])
def test_a_key_that_overflows_float32_is_refused_and_the_memory_keeps_working(
    operator_client: APIClient, external: Deployment, value: float
) -> None:
    good: list[dict[str, Any]] = [{"id": f"g{i}", "score": 0.3, "key": [0.1 * i, 0.2, 0.3]} for i in range(5)]
    bad = _compensate(operator_client, external, [*good, {"id": "poison", "score": 0.5, "key": [value, value, 1.0]}])

    assert bad.status_code == 400
    assert (bad.json()["field"], bad.json()["index"]) == ("key", 5)
    assert not Event.objects.filter(deployment=external).exists()

    # The same deployment serves, learns and reads its memory afterwards.
    assert _compensate(operator_client, external, good).status_code == 200
    _label_and_apply(operator_client, external, [r["id"] for r in good])
    after = _compensate(operator_client, external, [{"id": "next", "score": 0.5, "key": [0.1, 0.2, 0.3]}])
    assert after.status_code == 200, after.content
    assert ErrorSample.objects.filter(deployment=external).count() == 5


def test_a_huge_but_finite_key_is_normalised_without_overflow(operator_client: APIClient, external: Deployment) -> None:
    # Finite in float32, but the sum of squares is not: the norm used to be inf and the key all zeros.
    r = _compensate(operator_client, external, [{"id": "big", "score": 0.5, "key": [1e20, -1e20, 1e19]}])

    assert r.status_code == 200, r.content
    stored = Event.objects.get(external_id="big").key
    assert stored is not None
    key = np.frombuffer(bytes(stored), dtype="<f4")
    assert np.isfinite(key).all()
    assert abs(float(np.linalg.norm(key)) - 1.0) < 1e-5
    assert key[0] > 0.7 and key[1] < -0.7


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({"amount": 1e39}, "amount"),
        ({"merchant": "x" * 1_000_000}, "merchant"),
        ({"n" * 129: 1.0}, "features"),
        ({"nested": [1, 2]}, "nested"),
    ],
)
def test_external_features_that_cannot_be_stored_or_tested_are_refused(
    operator_client: APIClient, external: Deployment, features: dict[str, Any], field: str
) -> None:
    row = {"id": "a", "score": 0.5, "key": [0.1, 0.2, 0.3], "features": features}
    r = _compensate(operator_client, external, [row])

    assert r.status_code == 400
    assert (r.json()["field"], r.json()["index"]) == (field, 0)
    assert not Event.objects.exists()


# --- feature values of hosted deployments ------------------------------------------------------------


@pytest.mark.parametrize("value", [3.5e38, 1e30, 2**70, -(2**70)])
def test_a_feature_value_far_outside_float32_or_the_training_range_is_a_400(
    operator_client: APIClient, deployment: Deployment, value: float
) -> None:
    rows: list[dict[str, Any]] = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(3))]
    rows[2]["features"]["distance"] = value
    r = operator_client.post(_url(deployment, "predict"), {"rows": rows}, format="json")

    assert r.status_code == 400, r.content
    body = r.json()
    assert (body["field"], body["index"]) == ("distance", 2)
    assert "out of range" in body["detail"]
    assert not Event.objects.filter(deployment=deployment).exists()


def test_a_categorical_value_longer_than_the_limit_is_a_400(operator_client: APIClient, deployment: Deployment) -> None:
    row = {"id": "a", "features": {**make_rows(1)[0], "carrier": "A" * 1_000_000}}
    r = operator_client.post(_url(deployment, "predict"), {"rows": [row]}, format="json")

    assert r.status_code == 400
    assert (r.json()["field"], r.json()["index"]) == ("carrier", 0)
    assert not Event.objects.exists()


def test_a_model_that_cannot_score_a_row_finitely_answers_400_and_warms_without_it(
    operator_client: APIClient, deployment: Deployment
) -> None:
    """Weights that overflow float32 on every row: predict names the row instead of storing NaN, and
    a warm-up of that version skips the rows instead of failing."""
    rows: list[dict[str, Any]] = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(20))]
    assert operator_client.post(_url(deployment, "predict"), {"rows": rows}, format="json").status_code == 200
    _label_and_apply(operator_client, deployment, [r["id"] for r in rows])

    weights, spec = _overflowing_model()
    version, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    result = warm(deployment, version)

    assert (result.written, result.skipped) == (0, 20)
    assert not ErrorSample.objects.filter(version=version).exists()
    deployment.live_version = version
    deployment.save(update_fields=["live_version"])
    r = operator_client.post(_url(deployment, "predict"), {"rows": [{**rows[0], "id": "x"}]}, format="json")
    assert r.status_code == 400
    assert (r.json()["field"], r.json()["index"]) == ("features", 0)


def _overflowing_model() -> tuple[bytes, dict[str, Any]]:
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save as save_bytes

    weights, spec = model_artifacts(seed=3)
    tensors = load_bytes(weights)
    for name, tensor in tensors.items():
        if name.endswith("weight") and tensor.dim() == 2:
            tensors[name] = tensor.sign() * 1e30 + tensor
    return save_bytes(tensors), {**spec, "notes": "overflows"}


# --- a poisoned sample already in the database --------------------------------------------------


def test_a_non_finite_sample_in_the_database_is_skipped_not_a_500(
    operator_client: APIClient, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    rows: list[dict[str, Any]] = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(10))]
    assert operator_client.post(_url(deployment, "predict"), {"rows": rows}, format="json").status_code == 200
    _label_and_apply(operator_client, deployment, [r["id"] for r in rows])
    # An older release stored one key as NaN (what a float64-checked 1e308 became).
    poisoned = ErrorSample.objects.filter(deployment=deployment).first()
    assert poisoned is not None
    dim = len(bytes(poisoned.key)) // 4
    poisoned.key = np.full(dim, np.nan, dtype="<f4").tobytes()
    poisoned.save(update_fields=["key"])
    Deployment.objects.filter(pk=deployment.pk).update(memory_epoch=deployment.memory_epoch + 1)

    with caplog.at_level(logging.WARNING, logger="adaptive.runtime"):
        r = operator_client.post(_url(deployment, "predict"), {"rows": [{**rows[0], "id": "n"}]}, format="json")

    assert r.status_code == 200, r.content
    assert "skipped 1 stored memory samples" in caplog.text
    assert operator_client.get(_url(deployment, "memory")).status_code == 200


# --- deployment definitions and version specs ---------------------------------------------------


def test_a_feature_name_longer_than_a_drift_column_is_refused_at_creation(admin_client: APIClient) -> None:
    schema = [{"name": "f" * 129, "type": "numeric"}]
    r = admin_client.post(
        DEPLOYMENTS, {"slug": "long", "name": "Long", "task": "binary", "feature_schema": schema}, format="json"
    )

    assert r.status_code == 400
    assert r.json()["field"] == "feature_schema"
    assert "128" in r.json()["detail"]
    assert not Deployment.objects.filter(slug="long").exists()


def _spec_with(**changes: Any) -> tuple[bytes, dict[str, Any]]:
    weights, spec = model_artifacts()
    return weights, {**spec, **changes}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key_mean": [1e308] * 8}, "spec.key_mean"),
        ({"key_mean": [3.5e38] * 8}, "spec.key_mean"),
        ({"threshold": 0.99999999999}, "spec.threshold"),
        ({"notes": "n" * 10_001}, "spec.notes"),
        ({"profile": {"features": {"distance": ["far", "near"]}}}, "spec.profile.features.distance"),
        ({"profile": {"features": {"carrier": ["c" * 300]}}}, "spec.profile.features.carrier"),
        ({"profile": {"features": {"distance": [1e39]}}}, "spec.profile.features.distance"),
        ({"profile": {"prediction": [0.5, 1.5]}}, "spec.profile.prediction"),
        ({"profile": {"label": [0, 7]}}, "spec.profile.label"),
    ],
)
def test_a_spec_value_that_cannot_be_used_is_refused_before_anything_is_stored(
    operator_client: APIClient, deployment: Deployment, change: dict[str, Any], field: str
) -> None:
    weights, spec = _spec_with(**change)
    before = ModelVersion.objects.count()
    r = operator_client.post(_url(deployment, "versions"), upload_payload(weights, spec), format="multipart")

    assert r.status_code == 400, r.content
    assert r.json()["field"] == field
    assert ModelVersion.objects.count() == before


def test_preprocessing_statistics_outside_float32_are_refused(
    operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts()
    spec["preprocessing"]["numeric"]["distance"]["mean"] = 1e300
    r = operator_client.post(_url(deployment, "versions"), upload_payload(weights, spec), format="multipart")

    assert r.status_code == 400
    assert r.json()["field"] == "spec.preprocessing"
    assert "float32" in r.json()["detail"]


def test_the_same_weights_with_a_new_profile_or_notes_are_a_new_version(
    operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts(seed=5)
    first = operator_client.post(_url(deployment, "versions"), upload_payload(weights, spec), format="multipart")
    retry = operator_client.post(_url(deployment, "versions"), upload_payload(weights, spec), format="multipart")
    profile = {"features": {"distance": [100.0, 200.0]}, "prediction": [0.2, 0.4], "label": [0, 1]}
    with_profile = operator_client.post(
        _url(deployment, "versions"), upload_payload(weights, {**spec, "profile": profile}), format="multipart"
    )
    with_notes = operator_client.post(
        _url(deployment, "versions"),
        upload_payload(weights, json.dumps({**spec, "notes": "recalibrated"})),
        format="multipart",
    )

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["number"] == first.json()["number"]
    assert with_profile.status_code == 201 and with_notes.status_code == 201
    numbers = {first.json()["number"], with_profile.json()["number"], with_notes.json()["number"]}
    assert len(numbers) == 3
    assert ModelVersion.objects.get(deployment=deployment, number=with_profile.json()["number"]).profile == profile
