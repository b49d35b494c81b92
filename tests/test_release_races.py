"""A rollback racing a promotion ends in one consistent state (row locks on the deployment).

Threads get their own database connections; on PostgreSQL the two transactions really overlap
and the second waits for the first's lock; SQLite serialises them at BEGIN IMMEDIATE. Either
order is fine; what must never happen is two live versions, two open releases, or a live version
that disagrees with the open release.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from django.db import connection

from adaptive.errors import Conflict
from adaptive.models import Deployment, ModelVersion, Release
from adaptive.services import releases
from adaptive.services.registry import upload_version
from tests.factories import deployment_with_live_version, model_artifacts

pytestmark = pytest.mark.django_db(transaction=True)


def _run_together(*calls: Any) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Any) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # the outcome is the assertion
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _assert_consistent(dep: Deployment) -> None:
    dep.refresh_from_db()
    open_releases = list(Release.objects.filter(deployment=dep, ended_at__isnull=True))
    assert len(open_releases) == 1
    assert open_releases[0].version_id == dep.live_version_id
    assert list(ModelVersion.objects.filter(deployment=dep, status="live").values_list("pk", flat=True)) == [
        dep.live_version_id
    ]
    timeline = list(Release.objects.filter(deployment=dep).order_by("started_at"))
    for earlier, later in itertools.pairwise(timeline):
        assert earlier.ended_at == later.started_at


@pytest.mark.parametrize("attempt", range(5))
def test_a_rollback_racing_a_promotion_ends_consistent(attempt: int) -> None:
    dep = deployment_with_live_version()
    for seed in (1, 2):
        weights, spec = model_artifacts(seed=seed)
        upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    releases.promote(deployment=dep, number=2, actor=None, reason="v2 first")

    outcome = _run_together(
        lambda: releases.promote(deployment=dep, number=3, actor=None, reason="promote v3"),
        lambda: releases.rollback(deployment=dep, actor=None, reason="roll back"),
    )

    assert not any(isinstance(r, Exception) and not isinstance(r, Conflict) for r in outcome), outcome
    _assert_consistent(dep)
    live = Deployment.objects.select_related("live_version").get(pk=dep.pk).live_version
    assert live is not None
    # Promote then roll back -> v2 again; roll back (to v1) then promote -> v3.
    assert live.number in (2, 3)
    kinds = list(Release.objects.filter(deployment=dep).order_by("started_at").values_list("kind", flat=True))
    assert sorted(kinds[2:]) == ["promotion", "rollback"]


def test_two_rollbacks_at_once_roll_back_twice_in_order() -> None:
    dep = deployment_with_live_version()
    for seed in (1, 2):
        weights, spec = model_artifacts(seed=seed)
        upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    releases.promote(deployment=dep, number=2, actor=None, reason="")
    releases.promote(deployment=dep, number=3, actor=None, reason="")

    _run_together(
        lambda: releases.rollback(deployment=dep, actor=None, reason="a"),
        lambda: releases.rollback(deployment=dep, actor=None, reason="b"),
    )

    _assert_consistent(dep)
    assert Release.objects.filter(deployment=dep, kind="rollback").count() == 2
