"""Promotion, rollback, pause/resume and memory reset (adaptive.services.releases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adaptive import runtime
from adaptive.errors import Conflict, InvalidInput
from adaptive.models import AuditEntry, Deployment, ErrorSample, ModelVersion, Release
from adaptive.services import ingest, memory, releases
from adaptive.services.registry import upload_version
from tests.factories import UserFactory, deployment_with_live_version, make_rows, model_artifacts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_serving_cache() -> Iterator[None]:
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def two_versions() -> Deployment:
    dep = deployment_with_live_version()
    weights, spec = model_artifacts(seed=7)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    return dep


def _predict(dep: Deployment, rows: list[dict[str, Any]], prefix: str) -> list[ingest.Prediction]:
    dep = Deployment.objects.select_related("live_version").get(pk=dep.pk)
    return ingest.predict(
        deployment=dep, payload={"rows": [{"id": f"{prefix}-{i}", "features": r} for i, r in enumerate(rows)]}
    )


def _learn(dep: Deployment, prefix: str, n: int, label: int) -> None:
    out = _predict(dep, make_rows(n, seed=n), prefix)
    dep = Deployment.objects.get(pk=dep.pk)
    ingest.record_feedback(deployment=dep, payload={"labels": [{"id": p.id, "label": label} for p in out]})
    memory.apply_pending(dep.pk)


def test_promotion_switches_the_live_version_and_the_release_timeline(two_versions: Deployment) -> None:
    operator = UserFactory.create(role="operator")

    release = releases.promote(deployment=two_versions, number=2, actor=operator, reason="better AUC")

    dep = Deployment.objects.get(pk=two_versions.pk)
    assert dep.live_version is not None and dep.live_version.number == 2
    assert dict(ModelVersion.objects.filter(deployment=dep).values_list("number", "status")) == {
        1: "retired",
        2: "live",
    }
    assert (release.kind, release.reason, release.actor) == ("promotion", "better AUC", operator)
    assert Release.objects.filter(deployment=dep, ended_at__isnull=True).get() == release
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.PROMOTE).latest("created_at")
    assert (entry.from_version.number, entry.to_version.number, entry.actor) == (1, 2, operator)  # type: ignore[union-attr]


def test_rollback_restores_the_model_and_its_memory(two_versions: Deployment) -> None:
    _learn(two_versions, "v1", 200, 1)  # v1's memory: everything was positive
    probe = make_rows(20, seed=99)
    before = _predict(two_versions, probe, "before")
    releases.promote(deployment=two_versions, number=2, actor=None, reason="try v2")
    _learn(two_versions, "v2", 150, 0)  # v2 learns the opposite in its own memory
    during = _predict(two_versions, probe, "during")
    assert {p.version for p in during} == {2}

    releases.rollback(deployment=two_versions, actor=None, reason="v2 misbehaves")

    after = _predict(two_versions, probe, "after")
    assert {p.version for p in after} == {1}
    assert [p.score for p in after] == pytest.approx([p.score for p in before], abs=1e-9)
    assert [p.base_score for p in after] == pytest.approx([p.base_score for p in before], abs=1e-9)
    # The same holds in a fresh process, which rebuilds v1's memory from its samples.
    runtime.clear_cache()
    fresh = _predict(two_versions, probe, "fresh")
    assert [p.score for p in fresh] == pytest.approx([p.score for p in before], abs=1e-6)
    kinds = list(Release.objects.filter(deployment=two_versions).order_by("started_at").values_list("kind", flat=True))
    assert kinds == ["initial", "promotion", "rollback"]


def test_rollback_to_a_chosen_version_and_errors(two_versions: Deployment) -> None:
    with pytest.raises(Conflict):
        releases.rollback(deployment=two_versions, actor=None, reason="nothing earlier")
    with pytest.raises(Conflict):
        releases.rollback(deployment=two_versions, actor=None, reason="", number=1)  # already live
    with pytest.raises(InvalidInput):
        releases.rollback(deployment=two_versions, actor=None, reason="", number=9)

    releases.rollback(deployment=two_versions, actor=None, reason="straight to 2", number=2)

    assert Deployment.objects.get(pk=two_versions.pk).live_version.number == 2  # type: ignore[union-attr]


def test_promoting_the_live_version_again_changes_nothing(two_versions: Deployment) -> None:
    first = releases.promote(deployment=two_versions, number=2, actor=None, reason="")
    again = releases.promote(deployment=two_versions, number=2, actor=None, reason="retry")

    assert again == first
    assert Release.objects.filter(deployment=two_versions).count() == 2


def test_pause_holds_labels_and_resume_lets_them_in(two_versions: Deployment) -> None:
    releases.set_paused(deployment=two_versions, paused=True, actor=None, reason="incident")
    _learn(two_versions, "p", 30, 1)
    assert not ErrorSample.objects.exists()

    releases.set_paused(deployment=two_versions, paused=False, actor=None, reason="over")
    memory.apply_pending(two_versions.pk)

    assert ErrorSample.objects.count() == 30
    actions = list(AuditEntry.objects.filter(deployment=two_versions).values_list("action", flat=True))
    assert "pause" in actions and "resume" in actions


def test_reset_memory_empties_the_live_memory_everywhere(two_versions: Deployment) -> None:
    _learn(two_versions, "r", 100, 1)
    probe = make_rows(10, seed=5)
    compensated = _predict(two_versions, probe, "a")
    assert any(p.score != p.base_score for p in compensated)

    cleared = releases.reset_memory(deployment=two_versions, actor=None, reason="bad labels")

    after = _predict(two_versions, probe, "b")
    assert cleared == 100
    assert [p.score for p in after] == [p.base_score for p in after]
    assert not ErrorSample.objects.filter(active=True).exists()
