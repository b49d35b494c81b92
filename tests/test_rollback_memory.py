"""A rollback serves the memory of the version rolled back to, never a neighbour's.

The version rolled back from is a retrained child of the restored one: same architecture, weights
a small step away, so its keys for a row sit next to the parent's. Were serving to read the wrong
version's samples, they would be the top neighbours of every probe and move its score.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from adaptive import runtime
from adaptive.ml.architectures import logits_to_proba
from adaptive.ml.compensation import compensate, fit_key_mean, keys_from_hidden
from adaptive.ml.memory import make_memory
from adaptive.ml.preprocessing import FeatureEncoder, parse_schema
from adaptive.models import Deployment, ErrorSample, Event, ModelVersion
from adaptive.services import ingest, jobs, releases, retraining
from tests.factories import ErrorSampleFactory, deployment_with_live_version, make_rows
from tests.test_retraining import add_labeled_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("cpu_and_fresh_runtime")]

# One epoch at a tiny learning rate, no distillation: the child's weights move, but only a little.
NUDGE = {"epochs": 1, "lr": 1e-4, "batch_size": 64, "patience": None, "distill": False}


@pytest.fixture
def parent_and_child() -> tuple[Deployment, ModelVersion, ModelVersion]:
    """v1 live (keys centred by a fitted mean, as a trained upload has) and v2, retrained from it."""
    dep = deployment_with_live_version()
    parent = ModelVersion.objects.get(deployment=dep, number=1)
    loaded = runtime.load_version(dep, parent)
    key_mean = fit_key_mean(loaded.model, loaded.encoder.encode(make_rows(600)))
    ModelVersion.objects.filter(pk=parent.pk).update(key_mean=[float(v) for v in key_mean])
    runtime.clear_cache()

    add_labeled_events(dep, 600)
    job = retraining.request_retrain(deployment=dep, actor=None, reason="child", params=NUDGE)
    claimed = jobs.claim(job.pk, "retrain", device="cpu")
    assert claimed is not None
    child = retraining.run_retrain(claimed)
    # The training events are done with: the memories below hold only this test's samples (and the
    # promotion's warm-up finds nothing to re-embed).
    Event.objects.filter(deployment=dep).delete()
    return Deployment.objects.get(pk=dep.pk), ModelVersion.objects.get(pk=parent.pk), child


def _embed(dep: Deployment, version: ModelVersion, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Base scores [N] and keys [N, D] of ``rows`` by ``version``, as serving computes them."""
    loaded = runtime.load_version(dep, version)
    with torch.inference_mode():
        h = loaded.model.embed(FeatureEncoder(parse_schema(dep.feature_schema), version.preprocessing).encode(rows))
        return logits_to_proba(loaded.model.head(h)), keys_from_hidden(h, loaded.key_mean)


def _remember(dep: Deployment, version: ModelVersion, rows: list[dict[str, Any]], label: int, revision: int) -> None:
    p_base, keys = _embed(dep, version, rows)
    for key, score in zip(runtime.encode_keys(keys), p_base.tolist(), strict=True):
        ErrorSampleFactory.create(
            deployment=dep, version=version, key=key, label=label, base_score=score, revision=revision
        )
    Deployment.objects.filter(pk=dep.pk).update(memory_revision=revision)


def _serve(dep: Deployment, rows: list[dict[str, Any]], prefix: str) -> list[ingest.Prediction]:
    fresh = Deployment.objects.select_related("live_version").get(pk=dep.pk)
    payload = {"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    return ingest.predict(deployment=fresh, payload=payload)


def _expected(dep: Deployment, version: ModelVersion, rows: list[dict[str, Any]]) -> list[float]:
    """The compensated scores that ``version``'s samples, and only they, give ``rows``."""
    dep = Deployment.objects.get(pk=dep.pk)
    p_base, keys = _embed(dep, version, rows)
    samples = ErrorSample.objects.filter(version=version, active=True).order_by("revision", "id")
    with torch.inference_mode():
        memory = make_memory(dep.memory_kind, keys.shape[1], 1, **runtime.memory_params(dep))
        memory.add(
            runtime.decode_keys([s.key for s in samples], keys.shape[1]),
            torch.tensor([float(s.label) for s in samples]),
            torch.tensor([s.base_score for s in samples]),
        )
        expected = compensate(p_base, memory.estimate(keys), runtime.compensation_config(dep))
    return [float(v) for v in expected.tolist()]


def test_rollback_to_the_parent_serves_the_parents_memory_not_its_retrained_childs(
    parent_and_child: tuple[Deployment, ModelVersion, ModelVersion],
) -> None:
    dep, parent, child = parent_and_child
    probe = make_rows(40, seed=123)
    # The premise: for the same row, the child's key is the parent's nearest neighbour.
    _, parent_keys = _embed(dep, parent, probe)
    _, child_keys = _embed(dep, child, probe)
    assert float((parent_keys * child_keys).sum(dim=1).min()) > 0.95
    # Given the parent learned "these rows are positive" and the child "they are negative",
    _remember(dep, parent, probe, label=1, revision=1)
    _remember(dep, child, probe, label=0, revision=2)
    releases.promote(deployment=dep, number=child.number, actor=None, reason="try the child")
    during = _serve(dep, probe, "during")
    assert {p.version for p in during} == {child.number}
    assert all(p.score < p.base_score for p in during)  # type: ignore[operator]

    # when the child is rolled back,
    releases.rollback(deployment=dep, actor=None, reason="the child misbehaves")

    # the parent's samples correct its scores, upward, exactly as its own memory computes it.
    after = _serve(dep, probe, "after")
    assert {p.version for p in after} == {parent.number}
    assert all(p.score > p.base_score for p in after)  # type: ignore[operator]
    assert [p.score for p in after] == pytest.approx(_expected(dep, parent, probe), abs=1e-6)
    # The same in a fresh process, which rebuilds the parent's memory from the database.
    runtime.clear_cache()
    fresh = _serve(dep, probe, "fresh")
    assert [p.score for p in fresh] == pytest.approx(_expected(dep, parent, probe), abs=1e-6)
