"""Fixtures for the API tests: more deployments, and a committed one for the live-server tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from adaptive import runtime
from adaptive.models import Deployment
from adaptive.services.keys import create_key
from adaptive.services.registry import upload_version
from tests.factories import DeploymentFactory, deployment_with_live_version, model_artifacts

CLASSES_3 = ["on_time", "late", "cancelled"]


@pytest.fixture(autouse=True)
def _empty_serving_cache() -> Iterator[None]:
    # The serving cache is keyed by version id. Rolled-back tests on SQLite reuse ids (the
    # AUTOINCREMENT counter is rolled back too), so a stale model from another test could answer.
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def multiclass_deployment(db: None) -> Deployment:
    """A three-class deployment whose first version (three outputs) is live."""
    dep = DeploymentFactory.create(task="multiclass", classes=CLASSES_3)
    weights, spec = model_artifacts(n_outputs=3)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    return dep


@pytest.fixture
def empty_deployment(db: None) -> Deployment:
    """A binary deployment with no version uploaded yet."""
    return DeploymentFactory.create()


@pytest.fixture
def other_deployment(db: None) -> Deployment:
    """A second binary deployment with a live version, for scoping checks."""
    dep = DeploymentFactory.create()
    weights, spec = model_artifacts(seed=1)
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    return dep


@dataclass(frozen=True)
class CommittedDeployment:
    deployment: Deployment
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.key}"}


@pytest.fixture
def committed_deployment(transactional_db: None) -> CommittedDeployment:
    """A deployment with a live version and an ingestion key, committed so a live server sees them."""
    dep = deployment_with_live_version()
    _, raw = create_key(deployment=dep, name="load-test", actor=None)
    return CommittedDeployment(deployment=dep, key=raw)
