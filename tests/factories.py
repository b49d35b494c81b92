"""Factories and small builders shared by the tests: tiny models with fixed seeds, real safetensors."""

from __future__ import annotations

import json
import random
from typing import Any

import factory
import torch
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import Deployment

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


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))
        if create:
            self.save()


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    slug = factory.Sequence(lambda n: f"dep-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    task = "binary"
    classes = ["0", "1"]
    feature_schema = SCHEMA


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

    dep = DeploymentFactory()
    weights, spec = model_artifacts()
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    return dep
