"""The model registry: deployments and their versions (safetensors weights, never pickles)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from adaptive import artifacts
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.architectures import ArchitectureError, build_model
from adaptive.ml.limits import MAX_CATEGORY_LENGTH, MAX_NOTES_LENGTH, is_float32
from adaptive.ml.preprocessing import (
    NUMERIC,
    FeatureSchema,
    PreprocessingError,
    input_spec,
    parse_schema,
    validate_preprocessing,
)
from adaptive.ml.weights import WeightsError, check_state_dict, load_state_dict_bytes
from adaptive.models import AuditEntry, Deployment, ModelVersion, Release
from adaptive.services import audit, profiling

SPEC_KEYS = {
    "architecture",
    "config",
    "preprocessing",
    "key_mean",
    "threshold",
    "notes",
    "metrics",
    "profile",
    "data_start",
    "data_end",
}
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
    # Checked in float32, the dtype scores are compared in: 0.999999999 would round to 1.
    if not is_float32(threshold) or not 0 < float(np.float32(threshold)) < 1:
        raise InvalidInput("spec.threshold", "must be a number strictly between 0 and 1 (in float32)")
    key_mean = spec.get("key_mean")
    if key_mean is not None and (not isinstance(key_mean, list) or not all(is_float32(v) for v in key_mean)):
        raise InvalidInput("spec.key_mean", "must be a list of numbers that are finite in float32 (|x| <= 3.4e38)")
    notes = spec.get("notes", "")
    if not isinstance(notes, str) or len(notes) > MAX_NOTES_LENGTH:
        raise InvalidInput("spec.notes", f"must be a string of at most {MAX_NOTES_LENGTH} characters")
    if "metrics" in spec and not isinstance(spec["metrics"], dict):
        raise InvalidInput("spec.metrics", "must be a JSON object")
    if "profile" in spec:
        _check_profile(spec["profile"], schema, max(2, len(deployment.classes)))
    data_start, data_end = _training_range(spec)
    return {**spec, "config": config, "threshold": float(threshold), "data_start": data_start, "data_end": data_end}


# Longer than any ISO 8601 timestamp with microseconds and an offset: the error stays short.
MAX_TIMESTAMP_LENGTH = 64


def _training_range(spec: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The period the weights were trained on, as lineage shows it: each end optional.

    A timestamp without a timezone is refused rather than read as UTC or as the server's zone: a
    guess would shift the range by hours (the demo cuts its replay where the first version's range ends).
    """
    ends = {name: _timestamp(spec.get(name), f"spec.{name}") for name in ("data_start", "data_end")}
    start, end = ends["data_start"], ends["data_end"]
    if start is not None and end is not None and end < start:
        raise InvalidInput("spec.data_end", f"is before spec.data_start ({end.isoformat()} < {start.isoformat()})")
    return start, end


def _timestamp(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    rule = "must be an ISO 8601 timestamp with a timezone, e.g. '2024-03-01T00:00:00Z'"
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        raise InvalidInput(field, f"{rule}; got {value!r:.60}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, f"{rule}; got {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInput(field, f"has no timezone: add 'Z' for UTC or an offset such as '+02:00'; got {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, f"is out of range once converted to UTC; got {value!r}") from None


def _check_profile(profile: Any, schema: FeatureSchema, n_classes: int) -> None:
    """A training reference for drift: {"features": {name: [values]}, "prediction": [...],
    "label": [...], "error": [...]}, as ``monitoring.training_profile`` writes it.

    Every value is checked against its column's type: a numeric column holding strings used to be
    stored, then silently left out of every drift test.
    """
    if not isinstance(profile, dict) or set(profile) - {"features", "prediction", "label", "error"}:
        raise InvalidInput("spec.profile", "must be an object with features, prediction, label and error samples")
    features = profile.get("features", {})
    if not isinstance(features, dict) or set(features) - set(schema.names):
        raise InvalidInput("spec.profile.features", "must map the schema's feature names to lists of values")
    numeric = set(schema.numeric)
    columns = {
        **{f"features.{k}": (v, "numeric" if k in numeric else "categorical") for k, v in features.items()},
        **{k: (profile[k], "probability") for k in ("prediction", "error") if k in profile},
        **({"label": (profile["label"], "label")} if "label" in profile else {}),
    }
    for name, (values, kind) in columns.items():
        if not isinstance(values, list) or len(values) > MAX_PROFILE_VALUES:
            raise InvalidInput(f"spec.profile.{name}", f"must be a list of at most {MAX_PROFILE_VALUES} values")
        for value in values:
            if value is not None and not _profile_value_ok(value, kind, n_classes):
                raise InvalidInput(f"spec.profile.{name}", f"{_PROFILE_RULES[kind]}, or null; got {value!r:.60}")


_PROFILE_RULES = {
    NUMERIC: "values must be numbers that are finite in float32",
    "categorical": f"values must be strings of at most {MAX_CATEGORY_LENGTH} characters, integers or booleans",
    "probability": "values must be numbers in [0, 1]",
    "label": "values must be class indexes",
}


def _profile_value_ok(value: Any, kind: str, n_classes: int) -> bool:
    if kind == NUMERIC:
        return is_float32(value)
    if kind == "categorical":
        return isinstance(value, bool | int) or (isinstance(value, str) and len(value) <= MAX_CATEGORY_LENGTH)
    if kind == "probability":
        return is_float32(value) and 0.0 <= value <= 1.0
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_classes


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
            data_start=spec["data_start"],
            data_end=spec["data_end"],
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
    # After the commit: the version's weights are readable by any process from here on.
    return profiling.describe_version(version), True


def _same_spec(version: ModelVersion, spec: dict[str, Any]) -> bool:
    """The whole spec, notes, profile and training range included: the same weights with a new drift
    profile or new notes are a new version, not a retry (a retry used to get the old version back,
    silently). Timestamps compare as instants: '+02:00' and the same moment in 'Z' are one range."""
    return (
        version.architecture == spec["architecture"]
        and version.config == spec["config"]
        and version.preprocessing == spec["preprocessing"]
        and version.key_mean == spec.get("key_mean")
        and version.threshold == spec["threshold"]
        and version.profile == spec.get("profile", {})
        and version.notes == spec.get("notes", "")
        and version.metrics == spec.get("metrics", {})
        and version.data_start == spec["data_start"]
        and version.data_end == spec["data_end"]
    )
