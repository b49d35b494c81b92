"""Factories and small builders shared by the tests: tiny models with fixed seeds, real safetensors.

Call ``DeploymentFactory.create(...)`` rather than ``DeploymentFactory(...)``: both save a row, but
factory_boy types only ``create``/``build``/``create_batch`` by the model, so mypy sees a Deployment.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import factory
import numpy as np
import torch
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import Deployment, DriftMetric, ErrorSample, Event, MonitorState, Window

SCHEMA = [
    {"name": "dep_delay", "type": "numeric"},
    {"name": "distance", "type": "numeric"},
    {"name": "carrier", "type": "categorical"},
]
CARRIERS = ["AA", "UA", "DL", "B6"]


def make_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"dep_delay": rng.gauss(10, 30), "distance": rng.uniform(100, 2500), "carrier": rng.choice(CARRIERS)}
        for _ in range(n)
    ]


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def role(user: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        # factory_boy calls a post_generation hook with the built user, not the factory, as first argument.
        if create and extracted:
            # get_or_create: a transactional test before this one may have flushed the roles migration's groups.
            user.groups.add(Group.objects.get_or_create(name=extracted)[0])
        if create:
            user.save()


class DeploymentFactory(factory.django.DjangoModelFactory[Deployment]):
    class Meta:
        model = Deployment

    slug = factory.Sequence(lambda n: f"dep-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    task = "binary"
    classes = ["0", "1"]
    feature_schema = SCHEMA
    # The full correction, so that tests of the memory see its effect after a handful of labels.
    # Real deployments learn the strength (the default, True); tests/test_compensation_gate.py
    # covers that path end to end, and tests/ml/test_gate.py the gate itself.
    compensation_gate = False


def model_artifacts(
    schema: list[dict[str, str]] = SCHEMA,
    *,
    architecture: str = "mlp",
    config: dict[str, Any] | None = None,
    n_outputs: int = 1,
    seed: int = 0,
) -> tuple[bytes, dict[str, Any]]:
    """Weights (safetensors bytes) and a matching spec for an untrained model with a fixed seed."""
    parsed = parse_schema(schema)
    stats = fit_preprocessing(parsed, make_rows(200, seed=seed))
    torch.manual_seed(seed)
    config = config if config is not None else {"hidden": [16, 8]}
    model = build_model(architecture, config, input_spec(parsed, stats), n_outputs)
    spec = {"architecture": architecture, "config": config, "preprocessing": stats}
    return state_dict_to_bytes(model), spec


def upload_payload(weights: bytes, spec: dict[str, Any] | str) -> dict[str, Any]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = spec if isinstance(spec, str) else json.dumps(spec)
    return {"weights": SimpleUploadedFile("model.safetensors", weights), "spec": text}


def deployment_with_live_version() -> Deployment:
    """A binary deployment whose first uploaded version (v1) is live."""
    from adaptive.services.registry import upload_version

    dep = DeploymentFactory.create()
    weights, spec = model_artifacts()
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    return dep


# --- monitoring rows: events, windows, drift metrics, detector state, error samples ---------------

WINDOW_START = datetime(2024, 3, 1, tzinfo=UTC)


def unit_key(dim: int = 8, seed: int = 0) -> bytes:
    """A random unit vector as stored key bytes (float32 little-endian), like the runtime writes."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=dim)
    return (vector / np.linalg.norm(vector)).astype("<f4").tobytes()


def error_stream_state(errors: list[float]) -> dict[str, Any]:
    """One error stream's saved detectors in the monitoring service's layout (bank name -> bank state):
    ADWIN and Page-Hinkley on the real-valued errors, KSWIN with its 100-input history, DDM on the
    misclassifications (an error of at least 0.5)."""
    from adaptive.ml.drift import DetectorBank

    banks = {
        "error": DetectorBank(("adwin", "page_hinkley")),
        "kswin": DetectorBank(("kswin",), history=100),
        "misclassification": DetectorBank(("ddm",)),
    }
    for name, bank in banks.items():
        bank.update_many([float(e >= 0.5) for e in errors] if name == "misclassification" else errors)
    return {name: bank.state_dict() for name, bank in banks.items()}


class EventFactory(factory.django.DjangoModelFactory[Event]):
    class Meta:
        model = Event

    deployment = factory.SubFactory(DeploymentFactory)
    external_id = factory.Sequence(lambda n: f"ev-{n}")
    event_time = WINDOW_START
    received_at = factory.LazyAttribute(lambda o: o.event_time)
    features = factory.LazyFunction(lambda: make_rows(1)[0])
    version = factory.LazyAttribute(lambda o: o.deployment.live_version)
    base_score = 0.4
    score = 0.45


class WindowFactory(factory.django.DjangoModelFactory[Window]):
    """A closed window; pass ``start`` (``end`` is an hour later) to place it on the time axis."""

    class Meta:
        model = Window

    deployment = factory.SubFactory(DeploymentFactory)
    version = factory.LazyAttribute(lambda o: o.deployment.live_version)
    start = WINDOW_START
    end = factory.LazyAttribute(lambda o: o.start + timedelta(hours=1))
    labeled_from = factory.LazyAttribute(lambda o: o.start)
    labeled_to = factory.LazyAttribute(lambda o: o.end)
    n_events = 120
    n_labeled = 100
    base_auc = 0.70
    compensated_auc = 0.74
    base_log_loss = 0.60
    compensated_log_loss = 0.55
    base_accuracy = 0.68
    compensated_accuracy = 0.71
    base_brier = 0.21
    compensated_brier = 0.19
    memory_size = 100
    memory_revision = 3
    detector_signals = factory.LazyFunction(
        lambda: {"raw": {"adwin": {"detections": [], "drift": False}}, "compensated": {}}
    )


class DriftMetricFactory(factory.django.DjangoModelFactory[DriftMetric]):
    class Meta:
        model = DriftMetric

    window = factory.SubFactory(WindowFactory)
    column = "dep_delay"
    column_kind = DriftMetric.ColumnKind.FEATURE
    method = "ks"
    statistic = 0.12
    p_value = 0.2
    threshold = 0.05
    level = DriftMetric.Level.OK


class MonitorStateFactory(factory.django.DjangoModelFactory[MonitorState]):
    class Meta:
        model = MonitorState

    deployment = factory.SubFactory(DeploymentFactory)
    version = factory.LazyAttribute(lambda o: o.deployment.live_version)
    detectors = factory.LazyFunction(dict)


class ErrorSampleFactory(factory.django.DjangoModelFactory[ErrorSample]):
    class Meta:
        model = ErrorSample

    deployment = factory.SubFactory(DeploymentFactory)
    version = factory.LazyAttribute(lambda o: o.deployment.live_version)
    event = None
    key = factory.Sequence(lambda n: unit_key(seed=n))
    label = 1
    base_score = 0.3
    revision = factory.Sequence(lambda n: n + 1)
    written_at = factory.LazyAttribute(lambda o: WINDOW_START + timedelta(minutes=o.revision))
    active = True
