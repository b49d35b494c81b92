"""The deployment's compensation_lambda reaches serving with its value, not only its direction.

A served score must be exactly what adaptive.ml.compensation computes with the deployment's lambda
from the version's memory; a lambda four times larger moves each score four times as far.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.ml.compensation import CompensationConfig, compensate, default_config
from adaptive.ml.memory import make_memory
from adaptive.models import Deployment, ErrorSample, Event
from adaptive.services import memory
from tests.factories import make_rows

pytestmark = pytest.mark.django_db

HIDDEN_DIM = 8  # tests.factories.model_artifacts: hidden [16, 8]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    runtime.clear_cache()
    yield
    runtime.clear_cache()


def _predict(client: APIClient, dep: Deployment, rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    body = {"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    r = client.post(f"/api/v1/deployments/{dep.slug}/predict", body, format="json")
    assert r.status_code == 200, r.content
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    return predictions


def _expected_scores(dep: Deployment, prefix: str, lam: float) -> dict[str, float]:
    """Compensated scores of the events served under ``prefix`` by id, computed here from the stored
    keys, base scores and memory samples with ``lam``."""
    dep = Deployment.objects.get(pk=dep.pk)
    events = list(Event.objects.filter(deployment=dep, external_id__startswith=f"{prefix}-").order_by("id"))
    samples = ErrorSample.objects.filter(version_id=dep.live_version_id, active=True).order_by("revision", "id")
    config = CompensationConfig(lam=lam, gamma=dep.compensation_gamma, shrink=default_config(dep.memory_kind).shrink)
    with torch.inference_mode():
        store = make_memory(dep.memory_kind, HIDDEN_DIM, 1, **runtime.memory_params(dep))
        store.add(
            runtime.decode_keys([s.key for s in samples], HIDDEN_DIM),
            torch.tensor([float(s.label) for s in samples]),
            torch.tensor([s.base_score for s in samples]),
        )
        keys = runtime.decode_keys([bytes(e.key or b"") for e in events], HIDDEN_DIM)
        p_base = torch.tensor([e.base_score for e in events], dtype=torch.float32)
        scores = compensate(p_base, store.estimate(keys), config).tolist()
    return {e.external_id: float(s) for e, s in zip(events, scores, strict=True)}


def test_the_served_correction_is_the_one_the_deployments_lambda_gives(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    rows = make_rows(120, seed=21)
    first = _predict(ingest_client, deployment, rows, "learn")
    body = {"labels": [{"id": p["id"], "label": 1} for p in first]}
    assert ingest_client.post(f"/api/v1/deployments/{deployment.slug}/feedback", body, format="json").status_code == 200
    memory.apply_pending(deployment.pk)

    served: dict[float, list[dict[str, Any]]] = {}
    for lam in (0.25, 1.0):
        Deployment.objects.filter(pk=deployment.pk).update(compensation_lambda=lam)
        served[lam] = _predict(ingest_client, deployment, rows, f"lam{lam}")
        expected = _expected_scores(deployment, f"lam{lam}", lam)
        assert [p["score"] for p in served[lam]] == pytest.approx([expected[p["id"]] for p in served[lam]], abs=1e-6)

    # The same rows and memory: the correction at lambda 1 is four times the one at 0.25 (no score
    # is near enough to 0 or 1 for the clamp to cut it).
    small = [p["score"] - p["base_score"] for p in served[0.25]]
    large = [p["score"] - p["base_score"] for p in served[1.0]]
    assert min(small) > 0.01
    assert large == pytest.approx([4 * s for s in small], abs=1e-5)
