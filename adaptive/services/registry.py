"""The model registry: deployments and their versions (safetensors weights, never pickles)."""

from __future__ import annotations

import math
from typing import Any

import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from adaptive import artifacts
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.architectures import ArchitectureError, build_model
from adaptive.ml.preprocessing import PreprocessingError, input_spec, parse_schema, validate_preprocessing
from adaptive.ml.weights import WeightsError, check_state_dict, load_state_dict_bytes
from adaptive.models import AuditEntry, Deployment, ModelVersion, Release
from adaptive.services import audit

SPEC_KEYS = {"architecture", "config", "preprocessing", "key_mean", "threshold", "notes", "metrics", "profile"}
# A drift reference is a sample: at most this many values per column.
MAX_PROFILE_VALUES = 10_000


def create_deployment(*, fields: dict[str, Any], actor: Any) -> tuple[Deployment, bool]:
    """Create a deployment; a retry with the same definition returns the existing one.

    ``fields`` has been validated by the caller's serializer. Returns (deployment, created).
    """
    slug = fields["slug"]
    with transaction.atomic():
        existing = Deployment.objects.filter(slug=slug).first()
        if existing is None:
            try:
                with transaction.atomic():
                    deployment = Deployment.objects.create(**fields, created_by=audit.user_of(actor))
            except IntegrityError:
                # Another create of the same slug committed first (PostgreSQL made this insert wait
                # for it); judge this request against the winner's row like any repeated create.
                existing = Deployment.objects.filter(slug=slug).first()
                if existing is None:
                    raise
        if existing is not None:
            if all(getattr(existing, name) == value for name, value in fields.items()):
                return existing, False
            raise Conflict(f"a deployment with slug {slug!r} already exists with a different definition")
        audit.record(
            action=AuditEntry.Action.CREATE_DEPLOYMENT,
            deployment=deployment,
            actor=actor,
            details={"task": deployment.task, "features": len(deployment.feature_schema)},
        )
    return deployment, True


def validate_spec(deployment: Deployment, spec: Any) -> dict[str, Any]:
    """Check a version spec against the deployment's schema; returns the normalised spec."""
    if not isinstance(spec, dict):
        raise InvalidInput("spec", "must be a JSON object")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise InvalidInput("spec", f"unknown keys {unknown}; allowed: {sorted(SPEC_KEYS)}")
    if not isinstance(spec.get("architecture"), str):
        raise InvalidInput("spec.architecture", "required, a string")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise InvalidInput("spec.config", "must be a JSON object")
    schema = parse_schema(deployment.feature_schema)
    if "preprocessing" not in spec:
        raise InvalidInput("spec.preprocessing", "required: numeric mean/std and categorical vocabularies")
    try:
        validate_preprocessing(schema, spec["preprocessing"])
    except PreprocessingError as exc:
        raise InvalidInput("spec.preprocessing", str(exc)) from exc
    threshold = spec.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise InvalidInput("spec.threshold", "must be a number strictly between 0 and 1")
    key_mean = spec.get("key_mean")
    if key_mean is not None and (
        not isinstance(key_mean, list)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in key_mean)
    ):
        raise InvalidInput("spec.key_mean", "must be a list of finite numbers")
    for name in ("notes",):
        if name in spec and not isinstance(spec[name], str):
            raise InvalidInput(f"spec.{name}", "must be a string")
    if "metrics" in spec and not isinstance(spec["metrics"], dict):
        raise InvalidInput("spec.metrics", "must be a JSON object")
    if "profile" in spec:
        _check_profile(spec["profile"], set(schema.names))
    return {**spec, "config": config, "threshold": float(threshold)}


def _check_profile(profile: Any, feature_names: set[str]) -> None:
    """A training reference for drift: {"features": {name: [values]}, "prediction": [...], "label": [...]}."""
    if not isinstance(profile, dict) or set(profile) - {"features", "prediction", "label"}:
        raise InvalidInput("spec.profile", "must be an object with features, prediction and label samples")
    features = profile.get("features", {})
    if not isinstance(features, dict) or set(features) - feature_names:
        raise InvalidInput("spec.profile.features", "must map the schema's feature names to lists of values")
    columns = {
        **{f"features.{k}": v for k, v in features.items()},
        **{k: profile[k] for k in ("prediction", "label") if k in profile},
    }
    for name, values in columns.items():
        if not isinstance(values, list) or len(values) > MAX_PROFILE_VALUES:
            raise InvalidInput(f"spec.profile.{name}", f"must be a list of at most {MAX_PROFILE_VALUES} values")


def check_weights(deployment: Deployment, spec: dict[str, Any], data: bytes) -> None:
    """Load the weights into the named architecture; any mismatch is an InvalidInput."""
    if len(data) > settings.MAX_WEIGHTS_BYTES:
        raise InvalidInput("weights", f"file is {len(data)} bytes, over the limit of {settings.MAX_WEIGHTS_BYTES}")
    schema = parse_schema(deployment.feature_schema)
    try:
        # On the meta device the model has shapes but no storage: a config with huge layers cannot
        # make the server allocate memory before the weights are compared with it.
        with torch.device("meta"):
            model = build_model(
                spec["architecture"], spec["config"], input_spec(schema, spec["preprocessing"]), deployment.n_outputs
            )
    except ArchitectureError as exc:
        raise InvalidInput("spec.architecture", str(exc)) from exc
    try:
        tensors = load_state_dict_bytes(data)
    except WeightsError as exc:
        raise InvalidInput("weights", str(exc)) from exc
    problems = check_state_dict(model, tensors)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InvalidInput("weights", f"do not fit architecture {spec['architecture']!r}: {shown}")
    key_mean = spec.get("key_mean")
    if key_mean is not None and len(key_mean) != model.hidden_dim:
        raise InvalidInput(
            "spec.key_mean", f"has {len(key_mean)} values, the model's hidden layer has {model.hidden_dim}"
        )


def upload_version(*, deployment: Deployment, spec: Any, weights: bytes, actor: Any) -> tuple[ModelVersion, bool]:
    """Register a new version after checking its weights; returns (version, created).

    Uploading the same weights with the same spec again returns the existing version, so a
    retried upload never creates a duplicate. The first version of a deployment goes live.
    """
    if deployment.serving == Deployment.Serving.EXTERNAL:
        raise Conflict("this deployment's model is served elsewhere: it has no versions to upload")
    spec = validate_spec(deployment, spec)
    check_weights(deployment, spec, weights)
    relative, digest = artifacts.store_weights(deployment.slug, weights)
    with transaction.atomic():
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        for existing in ModelVersion.objects.filter(deployment=locked, weights_sha256=digest):
            if _same_spec(existing, spec):
                return existing, False
        number = (ModelVersion.objects.filter(deployment=locked).aggregate(n=Max("number"))["n"] or 0) + 1
        goes_live = locked.live_version_id is None
        version = ModelVersion.objects.create(
            deployment=locked,
            number=number,
            architecture=spec["architecture"],
            config=spec["config"],
            preprocessing=spec["preprocessing"],
            key_mean=spec.get("key_mean"),
            profile=spec.get("profile", {}),
            threshold=spec["threshold"],
            weights_path=relative,
            weights_sha256=digest,
            weights_size=len(weights),
            status=ModelVersion.Status.LIVE if goes_live else ModelVersion.Status.CANDIDATE,
            origin=ModelVersion.Origin.UPLOADED,
            metrics=spec.get("metrics", {}),
            notes=spec.get("notes", ""),
            created_by=audit.user_of(actor),
        )
        audit.record(
            action=AuditEntry.Action.UPLOAD_VERSION,
            deployment=locked,
            actor=actor,
            to_version=version,
            details={"number": number, "sha256": digest, "architecture": version.architecture},
        )
        if goes_live:
            locked.live_version = version
            locked.save(update_fields=["live_version", "updated_at"])
            Release.objects.create(
                deployment=locked,
                version=version,
                memory_revision=locked.memory_revision,
                kind=Release.Kind.INITIAL,
                started_at=timezone.now(),
                actor=audit.user_of(actor),
                actor_label=audit.actor_label(actor),
                reason="first version of the deployment",
            )
            audit.record(
                action=AuditEntry.Action.PROMOTE,
                deployment=locked,
                actor=actor,
                to_version=version,
                reason="first version of the deployment goes live",
            )
    return version, True


def _same_spec(version: ModelVersion, spec: dict[str, Any]) -> bool:
    return (
        version.architecture == spec["architecture"]
        and version.config == spec["config"]
        and version.preprocessing == spec["preprocessing"]
        and version.key_mean == spec.get("key_mean")
        and version.threshold == spec["threshold"]
    )
