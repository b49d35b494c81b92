"""The registry over REST: creating deployments and uploading versions (safetensors only, never pickles)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from django.conf import settings
from rest_framework.test import APIClient

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import input_spec, parse_schema
from adaptive.models import AuditEntry, Deployment, ModelVersion, Release
from tests.api.conftest import CLASSES_3
from tests.factories import SCHEMA, DeploymentFactory, make_rows, model_artifacts, upload_payload

DEPLOYMENTS = "/api/v1/deployments"

FLIGHTS = {
    "slug": "flights",
    "name": "Flight delays",
    "task": "binary",
    "classes": ["on_time", "delayed"],
    "feature_schema": SCHEMA,
}


def _versions_url(deployment: Deployment) -> str:
    return f"{DEPLOYMENTS}/{deployment.slug}/versions"


def _upload(client: APIClient, deployment: Deployment, weights: bytes, spec: dict[str, Any] | str) -> Any:
    return client.post(_versions_url(deployment), upload_payload(weights, spec), format="multipart")


def _stored_artifacts() -> list[Path]:
    root = Path(settings.ARTIFACT_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _assert_invalid(response: Any, field: str) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    assert body["field"] == field, body
    return body


# --- deployments ----------------------------------------------------------------------------------


def test_admin_creates_a_deployment(admin_client: APIClient) -> None:
    r = admin_client.post(DEPLOYMENTS, FLIGHTS, format="json")

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["slug"] == "flights"
    assert body["classes"] == ["on_time", "delayed"]
    assert body["live_version"] is None
    dep = Deployment.objects.get(slug="flights")
    assert dep.feature_schema == SCHEMA
    assert dep.created_by == admin_client.user
    assert AuditEntry.objects.filter(deployment=dep, action=AuditEntry.Action.CREATE_DEPLOYMENT).count() == 1


def test_binary_deployment_without_class_names_gets_zero_and_one(admin_client: APIClient) -> None:
    payload = {k: v for k, v in FLIGHTS.items() if k != "classes"}

    r = admin_client.post(DEPLOYMENTS, payload, format="json")

    assert r.status_code == 201, r.content
    assert Deployment.objects.get(slug="flights").classes == ["0", "1"]


def test_repeating_a_create_returns_the_existing_deployment(admin_client: APIClient) -> None:
    first = admin_client.post(DEPLOYMENTS, FLIGHTS, format="json")

    again = admin_client.post(DEPLOYMENTS, FLIGHTS, format="json")

    assert first.status_code == 201
    assert again.status_code == 200, again.content
    assert again.json()["slug"] == "flights"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert Deployment.objects.filter(slug="flights").count() == 1
    assert AuditEntry.objects.filter(action=AuditEntry.Action.CREATE_DEPLOYMENT).count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Another name"},
        {"task": "multiclass", "classes": ["a", "b", "c"]},
        {"feature_schema": [{"name": "dep_delay", "type": "numeric"}]},
        {"compensation_lambda": 0.9},
    ],
)
def test_same_slug_with_a_different_definition_conflicts(admin_client: APIClient, change: dict[str, Any]) -> None:
    admin_client.post(DEPLOYMENTS, FLIGHTS, format="json")

    r = admin_client.post(DEPLOYMENTS, {**FLIGHTS, **change}, format="json")

    assert r.status_code == 409, r.content
    assert r.json()["error"] == "conflict"
    dep = Deployment.objects.get(slug="flights")
    assert (dep.name, dep.task, dep.feature_schema) == (FLIGHTS["name"], "binary", SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        [{"name": "dep_delay", "type": "float"}],
        [],
        [{"name": "a", "type": "numeric"}, {"name": "a", "type": "categorical"}],
        {"dep_delay": "numeric"},
        [{"name": "a", "typ": "numeric"}],
    ],
)
def test_bad_feature_schema_is_rejected_naming_the_field(admin_client: APIClient, schema: Any) -> None:
    r = admin_client.post(DEPLOYMENTS, {**FLIGHTS, "feature_schema": schema}, format="json")

    _assert_invalid(r, "feature_schema")
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("task", "classes"),
    [("binary", ["a", "b", "c"]), ("binary", ["only"]), ("multiclass", ["one"]), ("multiclass", ["a", "a", "b"])],
)
def test_class_list_must_fit_the_task(admin_client: APIClient, task: str, classes: list[str]) -> None:
    r = admin_client.post(DEPLOYMENTS, {**FLIGHTS, "task": task, "classes": classes}, format="json")

    _assert_invalid(r, "classes")
    assert not Deployment.objects.exists()


def test_multiclass_deployment_is_created_with_its_classes(admin_client: APIClient) -> None:
    r = admin_client.post(DEPLOYMENTS, {**FLIGHTS, "task": "multiclass", "classes": CLASSES_3}, format="json")

    assert r.status_code == 201, r.content
    dep = Deployment.objects.get(slug="flights")
    assert dep.task == "multiclass"
    assert dep.classes == CLASSES_3
    assert dep.n_outputs == 3


def test_list_shows_deployments_with_their_live_version(viewer_client: APIClient, deployment: Deployment) -> None:
    DeploymentFactory.create(slug="zz-archived", status=Deployment.Status.ARCHIVED)
    empty = DeploymentFactory.create(slug="aa-empty")

    r = viewer_client.get(DEPLOYMENTS)

    assert r.status_code == 200
    body = r.json()
    assert [d["slug"] for d in body["results"]] == [empty.slug, deployment.slug]  # archived are hidden
    assert body["count"] == 2
    by_slug = {d["slug"]: d for d in body["results"]}
    assert by_slug[deployment.slug]["live_version"]["number"] == 1
    assert by_slug[deployment.slug]["live_version"]["status"] == "live"
    assert by_slug[empty.slug]["live_version"] is None


def test_detail_returns_the_deployment_and_unknown_slug_is_404(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    r = viewer_client.get(f"{DEPLOYMENTS}/{deployment.slug}")
    missing = viewer_client.get(f"{DEPLOYMENTS}/no-such-deployment")

    assert r.status_code == 200
    assert r.json()["slug"] == deployment.slug
    assert r.json()["feature_schema"] == SCHEMA
    assert r.json()["live_version"]["weights_sha256"] == deployment.live_version.weights_sha256  # type: ignore[union-attr]
    assert missing.status_code == 404


# --- uploads: the happy paths ---------------------------------------------------------------------


def test_first_upload_goes_live_with_an_initial_release_and_audit(
    operator_client: APIClient, empty_deployment: Deployment
) -> None:
    weights, spec = model_artifacts()

    r = _upload(operator_client, empty_deployment, weights, spec)

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["number"], body["status"], body["origin"]) == (1, "live", "uploaded")
    assert body["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert body["weights_size"] == len(weights)
    empty_deployment.refresh_from_db()
    version = ModelVersion.objects.get(deployment=empty_deployment)
    assert empty_deployment.live_version == version
    release = Release.objects.get(deployment=empty_deployment)
    assert (release.version, release.kind, release.ended_at) == (version, Release.Kind.INITIAL, None)
    assert release.actor == operator_client.user
    actions = set(AuditEntry.objects.filter(deployment=empty_deployment).values_list("action", flat=True))
    assert {AuditEntry.Action.UPLOAD_VERSION, AuditEntry.Action.PROMOTE} <= actions
    # The stored file is the uploaded bytes, addressed by their hash.
    (stored,) = _stored_artifacts()
    assert stored.read_bytes() == weights
    assert hashlib.sha256(weights).hexdigest() in stored.name


def test_second_upload_is_a_candidate_and_the_live_version_stays(
    operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts(seed=7)

    r = _upload(operator_client, deployment, weights, spec)

    assert r.status_code == 201, r.content
    assert (r.json()["number"], r.json()["status"]) == (2, "candidate")
    assert r.json()["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    deployment.refresh_from_db()
    assert deployment.live_version.number == 1  # type: ignore[union-attr]
    assert Release.objects.filter(deployment=deployment).count() == 1


def test_reuploading_the_same_weights_and_spec_returns_the_same_version(
    operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts(seed=7)
    first = _upload(operator_client, deployment, weights, spec)

    again = _upload(operator_client, deployment, weights, spec)

    assert first.status_code == 201
    assert again.status_code == 200, again.content
    assert again.json()["number"] == first.json()["number"] == 2
    assert again.json()["weights_sha256"] == first.json()["weights_sha256"]
    assert ModelVersion.objects.filter(deployment=deployment).count() == 2
    assert AuditEntry.objects.filter(deployment=deployment, action=AuditEntry.Action.UPLOAD_VERSION).count() == 2


def test_same_weights_with_another_threshold_is_a_new_version(
    operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts(seed=7)
    _upload(operator_client, deployment, weights, spec)

    r = _upload(operator_client, deployment, weights, {**spec, "threshold": 0.3})

    assert r.status_code == 201, r.content
    assert r.json()["number"] == 3
    assert r.json()["threshold"] == 0.3


def test_versions_are_listed_newest_first_and_readable_by_number(
    viewer_client: APIClient, operator_client: APIClient, deployment: Deployment
) -> None:
    weights, spec = model_artifacts(seed=7)
    _upload(operator_client, deployment, weights, spec)

    listing = viewer_client.get(_versions_url(deployment))
    detail = viewer_client.get(f"{_versions_url(deployment)}/2")
    missing = viewer_client.get(f"{_versions_url(deployment)}/9")

    assert listing.status_code == 200
    assert [v["number"] for v in listing.json()["results"]] == [2, 1]
    assert detail.status_code == 200
    assert detail.json()["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert detail.json()["preprocessing"] == spec["preprocessing"]
    assert missing.status_code == 404


def test_deepfm_version_uploads_and_serves(operator_client: APIClient, empty_deployment: Deployment) -> None:
    weights, spec = model_artifacts(architecture="deepfm", config={"hidden": [16, 8], "embedding_dim": 4})

    r = _upload(operator_client, empty_deployment, weights, spec)

    assert r.status_code == 201, r.content
    assert (r.json()["architecture"], r.json()["status"]) == ("deepfm", "live")
    rows = [{"id": f"d{i}", "features": f} for i, f in enumerate(make_rows(4))]
    p = operator_client.post(f"{DEPLOYMENTS}/{empty_deployment.slug}/predict", {"rows": rows}, format="json")
    assert p.status_code == 200, p.content
    assert all(0 < pred["score"] < 1 for pred in p.json()["predictions"])


def test_multiclass_deployment_accepts_three_outputs_and_predicts_distributions(
    admin_client: APIClient,
) -> None:
    created = admin_client.post(DEPLOYMENTS, {**FLIGHTS, "task": "multiclass", "classes": CLASSES_3}, format="json")
    dep = Deployment.objects.get(slug=created.json()["slug"])
    weights, spec = model_artifacts(n_outputs=3)

    r = _upload(admin_client, dep, weights, spec)
    rows = [{"id": f"m{i}", "features": f} for i, f in enumerate(make_rows(6))]
    p = admin_client.post(f"{DEPLOYMENTS}/{dep.slug}/predict", {"rows": rows}, format="json")

    assert r.status_code == 201, r.content
    assert p.status_code == 200, p.content
    for pred in p.json()["predictions"]:
        assert len(pred["score"]) == 3
        assert sum(pred["score"]) == pytest.approx(1.0, abs=1e-6)
        assert all(0 <= s <= 1 for s in pred["score"])
        assert pred["base_score"] == pred["score"]


def test_multiclass_deployment_rejects_a_single_output_model(
    operator_client: APIClient, multiclass_deployment: Deployment
) -> None:
    weights, spec = model_artifacts(n_outputs=1, seed=3)

    r = _upload(operator_client, multiclass_deployment, weights, spec)

    body = _assert_invalid(r, "weights")
    assert "output" in body["detail"] and "expected (3," in body["detail"]


# --- uploads: what is refused ---------------------------------------------------------------------


class _CreatesFileWhenUnpickled:
    """A payload whose unpickling runs code: it creates the file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "x")


def _assert_nothing_stored(deployment: Deployment, versions_before: int) -> None:
    assert ModelVersion.objects.filter(deployment=deployment).count() == versions_before
    assert len(_stored_artifacts()) == versions_before


def test_unknown_architecture_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, spec = model_artifacts(seed=2)

    r = _upload(operator_client, deployment, weights, {**spec, "architecture": "transformer"})

    body = _assert_invalid(r, "spec.architecture")
    assert "transformer" in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_weights_of_another_architecture_are_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    deepfm_weights, _ = model_artifacts(architecture="deepfm", seed=2)
    _, mlp_spec = model_artifacts(seed=2)

    r = _upload(operator_client, deployment, deepfm_weights, mlp_spec)

    body = _assert_invalid(r, "weights")
    assert "'mlp'" in body["detail"]
    assert "layers.0.weight: expected (16, 10), got (16, 24)" in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_weights_with_other_hidden_sizes_are_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, spec = model_artifacts(config={"hidden": [16, 8]}, seed=2)

    r = _upload(operator_client, deployment, weights, {**spec, "config": {"hidden": [32, 8]}})

    body = _assert_invalid(r, "weights")
    assert "expected (32, 10), got (16, 10)" in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_bytes_that_are_not_safetensors_are_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    _, spec = model_artifacts(seed=2)

    r = _upload(operator_client, deployment, b"this is not a model, just some text" * 10, spec)

    body = _assert_invalid(r, "weights")
    assert "not a safetensors file" in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_a_torch_save_pickle_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    _, spec = model_artifacts(seed=2)
    torch.manual_seed(2)
    model = build_model(
        "mlp", spec["config"], input_spec(parse_schema(SCHEMA), spec["preprocessing"]), deployment.n_outputs
    )
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)

    r = _upload(operator_client, deployment, buf.getvalue(), spec)

    body = _assert_invalid(r, "weights")
    assert "not a safetensors file" in body["detail"]
    _assert_nothing_stored(deployment, 1)


@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_an_uploaded_pickle_is_never_unpickled(
    operator_client: APIClient, deployment: Deployment, tmp_path: Path, container: str
) -> None:
    def payload(path: Path) -> bytes:
        if container == "pickle":
            return pickle.dumps({"output.weight": _CreatesFileWhenUnpickled(path)})
        buf = io.BytesIO()
        torch.save({"output.weight": _CreatesFileWhenUnpickled(path)}, buf)
        return buf.getvalue()

    # Given a payload that really does run code when loaded the unsafe way...
    control = tmp_path / "control"
    if container == "pickle":
        pickle.loads(payload(control))  # our own payload: proves it is live
    else:
        torch.load(io.BytesIO(payload(control)), weights_only=False)
    assert control.exists()
    marker = tmp_path / "marker"
    _, spec = model_artifacts(seed=2)

    # ...when it is uploaded as weights...
    r = _upload(operator_client, deployment, payload(marker), spec)

    # ...it is refused without ever being loaded.
    _assert_invalid(r, "weights")
    assert not marker.exists()
    _assert_nothing_stored(deployment, 1)


def test_weights_over_the_size_limit_are_rejected(
    operator_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    weights, spec = model_artifacts(seed=2)
    settings.MAX_WEIGHTS_BYTES = len(weights) - 1

    r = _upload(operator_client, deployment, weights, spec)

    body = _assert_invalid(r, "weights")
    assert str(len(weights) - 1) in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_weights_at_the_size_limit_are_accepted(
    operator_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    weights, spec = model_artifacts(seed=2)
    settings.MAX_WEIGHTS_BYTES = len(weights)

    r = _upload(operator_client, deployment, weights, spec)

    assert r.status_code == 201, r.content


def test_spec_that_is_not_json_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, _ = model_artifacts(seed=2)

    r = _upload(operator_client, deployment, weights, "{'architecture': 'mlp'")

    _assert_invalid(r, "spec")
    _assert_nothing_stored(deployment, 1)


def test_spec_that_is_not_an_object_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, _ = model_artifacts(seed=2)

    r = _upload(operator_client, deployment, weights, json.dumps(["mlp"]))

    _assert_invalid(r, "spec")
    _assert_nothing_stored(deployment, 1)


def test_preprocessing_missing_a_feature_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, spec = model_artifacts(seed=2)
    broken = copy.deepcopy(spec)
    del broken["preprocessing"]["numeric"]["distance"]

    r = _upload(operator_client, deployment, weights, broken)

    body = _assert_invalid(r, "spec.preprocessing")
    assert "distance" in body["detail"]
    _assert_nothing_stored(deployment, 1)


def test_missing_weights_field_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    _, spec = model_artifacts(seed=2)

    r = operator_client.post(_versions_url(deployment), {"spec": json.dumps(spec)}, format="multipart")

    _assert_invalid(r, "weights")
    _assert_nothing_stored(deployment, 1)


def test_missing_spec_field_is_rejected(operator_client: APIClient, deployment: Deployment) -> None:
    weights, _ = model_artifacts(seed=2)
    payload = upload_payload(weights, {})
    del payload["spec"]

    r = operator_client.post(_versions_url(deployment), payload, format="multipart")

    _assert_invalid(r, "spec")
    _assert_nothing_stored(deployment, 1)


def test_upload_to_an_unknown_deployment_is_404(operator_client: APIClient, db: None) -> None:
    weights, spec = model_artifacts()

    r = operator_client.post(f"{DEPLOYMENTS}/nope/versions", upload_payload(weights, spec), format="multipart")

    assert r.status_code == 404
    assert not ModelVersion.objects.exists()


def test_a_version_can_carry_a_training_profile_for_drift(operator_client: APIClient, empty_deployment: Any) -> None:
    weights, spec = model_artifacts()
    profile = {"features": {"dep_delay": [1.0, 2.0], "carrier": ["AA", "UA"]}, "prediction": [0.1], "label": [0]}
    r = operator_client.post(
        f"/api/v1/deployments/{empty_deployment.slug}/versions",
        upload_payload(weights, {**spec, "profile": profile}),
        format="multipart",
    )

    assert r.status_code == 201, r.content
    assert ModelVersion.objects.get(deployment=empty_deployment).profile == profile


@pytest.mark.parametrize(
    "profile",
    [[1, 2], {"features": {"no_such_feature": [1]}}, {"prediction": "x"}, {"other": []}],
)
def test_a_malformed_profile_is_a_400(operator_client: APIClient, empty_deployment: Any, profile: Any) -> None:
    weights, spec = model_artifacts()
    r = operator_client.post(
        f"/api/v1/deployments/{empty_deployment.slug}/versions",
        upload_payload(weights, {**spec, "profile": profile}),
        format="multipart",
    )

    assert r.status_code == 400 and r.json()["field"].startswith("spec.profile")
