"""A retrain grows the live version's vocabularies with the categories its labeled events show.

Runs the real task path (``tasks.training.retrain`` then ``evaluate``) in-process on the CPU: v1 knows
the carriers AA, UA, DL and B6; the labeled events add WN (often, and always delayed) and NK (twice).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import Deployment, FlipReport, Job, ModelVersion
from adaptive.services import retraining
from adaptive.services.registry import upload_version
from tasks import training
from tests.factories import SCHEMA, DeploymentFactory, deployment_with_live_version, make_rows
from tests.test_retraining import FAST, add_labeled_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cpu_and_fresh_runtime")]

N_EVENTS = 600  # the newest 120 are the holdout


def rows_with_new_carriers() -> list[dict[str, Any]]:
    """``make_rows`` where every 4th row flies WN, and two rows before the holdout fly NK."""
    rows = make_rows(N_EVENTS, seed=1)
    for i in range(0, N_EVENTS, 4):
        rows[i]["carrier"] = "WN"
    rows[10]["carrier"] = rows[20]["carrier"] = "NK"
    return rows


def label(row: dict[str, Any]) -> int:
    return int(row["carrier"] == "WN" or row["dep_delay"] > 15)


def add_events(dep: Deployment) -> None:
    add_labeled_events(dep, N_EVENTS, label=label, rows=rows_with_new_carriers())


@pytest.fixture
def deployment() -> Deployment:
    """v1 (an untrained MLP with one unknown bucket) live, and the labeled events."""
    dep = deployment_with_live_version()
    add_events(dep)
    return dep


@pytest.fixture
def hashed_deployment() -> Deployment:
    """v1 an untrained DeepFM whose carriers' unknown values share 8 hashed buckets; the labeled events."""
    dep = DeploymentFactory.create()
    schema = parse_schema(SCHEMA)
    stats = fit_preprocessing(schema, make_rows(200, seed=0), unknown_buckets={"carrier": 8})
    torch.manual_seed(0)
    config = {"hidden": [16, 8]}
    model = build_model("deepfm", config, input_spec(schema, stats), 1)
    with torch.no_grad():  # DeepFM's first-order rows start at zero: make every bucket score differently
        for name, parameter in model.named_parameters():
            if name.startswith("first_order_categorical"):
                parameter.normal_()
    spec = {"architecture": "deepfm", "config": config, "preprocessing": stats}
    upload_version(deployment=dep, spec=spec, weights=state_dict_to_bytes(model), actor=None)
    dep.refresh_from_db()
    add_events(dep)
    return dep


def retrain_and_evaluate(deployment: Deployment, params: dict[str, Any]) -> tuple[ModelVersion, FlipReport]:
    """Request a retrain, run its task, then the evaluation task it queued; the candidate and its report."""
    job = retraining.request_retrain(deployment=deployment, actor=None, reason="new carriers", params=params)
    training.retrain(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.message
    candidate = ModelVersion.objects.get(origin_job=job)
    evaluation = Job.objects.get(kind=Job.Kind.EVALUATION, params__retrain_job=job.pk)
    training.evaluate(evaluation.pk)
    return candidate, FlipReport.objects.get(job=evaluation)


def test_a_retrain_adds_the_carriers_its_events_show_and_learns_them(deployment: Deployment) -> None:
    live = ModelVersion.objects.get(deployment=deployment, number=1)
    known = live.preprocessing["categorical"]["carrier"]["vocab"]

    candidate, report = retrain_and_evaluate(deployment, {**FAST, "epochs": 8})

    # WN is appended; NK (2 training rows) stays under vocab_min_count (3); the rest is unchanged.
    assert candidate.preprocessing["categorical"]["carrier"]["vocab"] == [*known, "WN"]
    assert candidate.preprocessing["numeric"] == live.preprocessing["numeric"]
    assert candidate.metrics["vocab_growth"] == {"min_count": 3, "added": {"carrier": 1}}
    assert "vocabularies grown: carrier +1" in candidate.notes
    # The candidate serves WN from its own row (index len(known) + 1) and learned that WN is late.
    loaded = runtime.load_version(deployment, candidate)
    wn = [{**row, "carrier": "WN", "dep_delay": -5.0} for row in make_rows(50, seed=9)]
    assert loaded.encoder.encode(wn).categorical[:, 0].unique().tolist() == [len(known) + 1]
    assert loaded.model.state_dict()["embeddings.0.weight"].shape[0] == len(known) + 2
    assert float(loaded.predict_proba(wn).mean()) > 0.5
    # v1 still serves WN from its unknown bucket, and the flip report compared each with its own encoder.
    assert runtime.load_version(deployment, live).encoder.encode(wn).categorical[:, 0].unique().tolist() == [0]
    assert report.n == 120 and report.old_version_id == live.pk and report.new_version_id == candidate.pk
    assert report.new_auc is not None and report.old_auc is not None and report.new_auc > report.old_auc


def test_without_growth_the_candidate_keeps_the_live_vocabularies(deployment: Deployment) -> None:
    live = ModelVersion.objects.get(deployment=deployment, number=1)

    candidate, report = retrain_and_evaluate(deployment, {**FAST, "grow_vocab": False})

    assert candidate.preprocessing == live.preprocessing
    assert "vocab_growth" not in candidate.metrics
    assert report.n == 120


def test_a_lower_min_count_adds_rarer_carriers_and_the_extended_start_scores_like_v1(deployment: Deployment) -> None:
    live = ModelVersion.objects.get(deployment=deployment, number=1)
    known = live.preprocessing["categorical"]["carrier"]["vocab"]

    # Training that barely moves the weights: the candidate must then score almost exactly like v1,
    # new carriers included (they start as copies of the unknown bucket).
    params = {**FAST, "epochs": 1, "lr": 1e-9, "distill": False, "vocab_min_count": 2}
    candidate, report = retrain_and_evaluate(deployment, params)

    assert candidate.preprocessing["categorical"]["carrier"]["vocab"] == [*known, "WN", "NK"]
    rows = [{**row, "carrier": carrier} for row in make_rows(40, seed=4) for carrier in ("WN", "NK", "ZZ", "AA")]
    before = runtime.load_version(deployment, live).predict_proba(rows)
    after = runtime.load_version(deployment, candidate).predict_proba(rows)
    assert torch.allclose(before, after, atol=1e-5)
    assert report.disagreement == 0.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"grow_vocab": "yes"}, "params.grow_vocab"),
        ({"vocab_min_count": 0}, "params.vocab_min_count"),
        ({"vocab_min_count": 2.5}, "params.vocab_min_count"),
        ({"vocab_max_new": 0}, "params.vocab_max_new"),
    ],
)
def test_bad_vocab_parameters_are_a_400_naming_the_field(
    operator_client: APIClient, deployment: Deployment, params: dict[str, Any], field: str
) -> None:
    r = operator_client.post(
        f"/api/v1/deployments/{deployment.slug}/retrain", {"reason": "x", "params": params}, format="json"
    )

    assert r.status_code == 400, r.content
    assert r.json()["field"] == field
    assert not Job.objects.exists()


def test_the_growth_settings_are_recorded_with_the_job(deployment: Deployment) -> None:
    job = retraining.request_retrain(deployment=deployment, actor=None, reason="", params={"vocab_min_count": 7})

    assert (job.params["grow_vocab"], job.params["vocab_min_count"], job.params["vocab_max_new"]) == (True, 7, 10_000)


def test_with_hashed_buckets_new_carriers_go_after_the_buckets_and_start_from_theirs(
    hashed_deployment: Deployment,
) -> None:
    live = ModelVersion.objects.get(deployment=hashed_deployment, number=1)
    known = live.preprocessing["categorical"]["carrier"]["vocab"]
    params = {**FAST, "epochs": 1, "lr": 1e-9, "distill": False, "vocab_min_count": 2}

    candidate, report = retrain_and_evaluate(hashed_deployment, params)

    carrier = candidate.preprocessing["categorical"]["carrier"]
    assert carrier == {"vocab": [*known, "WN", "NK"], "unknown_buckets": 8}
    loaded = runtime.load_version(hashed_deployment, candidate)
    rows = [{**row, "carrier": c} for row in make_rows(40, seed=4) for c in ("WN", "NK", "ZZ", "QQ", "AA")]
    codes = loaded.encoder.encode(rows).categorical[:, 0].reshape(40, 5)[0].tolist()
    assert codes[:2] == [8 + len(known), 8 + len(known) + 1]  # after the 8 buckets and the known carriers
    assert codes[2] < 8 and codes[3] < 8 and codes[4] == 8 + known.index("AA")
    # WN and NK start from the bucket each hashed into under v1: nothing scores differently yet.
    before = runtime.load_version(hashed_deployment, live).predict_proba(rows)
    assert torch.allclose(before, loaded.predict_proba(rows), atol=1e-5)
    assert len(set(before.round(decimals=4).tolist())) > 40  # the carriers do score differently
    assert report.disagreement == 0.0
