"""Serializers for the registry (not the ingestion hot path, which validates in adaptive.services.ingest)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from adaptive.ml.limits import MAX_FEATURES, MAX_NAME_LENGTH
from adaptive.ml.preprocessing import FEATURE_TYPES, SchemaError, parse_schema
from adaptive.models import Deployment, IngestionKey, ModelVersion, Task
from adaptive.services.deployments import BOUNDS, SETTINGS
from api.serializers_fields import (
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    StrictModelSerializer,
    StrictSlugField,
)


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["number", "status", "architecture", "weights_sha256", "created_at"]


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
                "type": {"type": "string", "enum": list(FEATURE_TYPES)},
                "nullable": {
                    "type": "boolean",
                    "default": False,
                    "description": (
                        "Accept null as a missing value: a number becomes its training mean plus a missing "
                        "indicator input, a category a category of its own. Otherwise null is a 400."
                    ),
                },
            },
            "required": ["name", "type"],
            "additionalProperties": False,
        },
        "maxItems": MAX_FEATURES,
        "description": (
            "The features, in order: each `name` unique, without leading or trailing whitespace or NUL. Required "
            "for hosted deployments; optional (features for drift) for external ones."
        ),
    }
)
class FeatureSchemaField(serializers.JSONField):
    """The JSON as sent; parse_schema (in validate) checks it, and the schema documents its shape."""


def _bounds(name: str) -> dict[str, Any]:
    low, high = BOUNDS[name]
    return {"min_value": low, "max_value": high}


# The bounds of the adaptation settings come from the domain (adaptive.services.deployments.BOUNDS),
# the same when a deployment is created and when its settings change. (A comment, not a docstring:
# drf-spectacular would show a base's docstring as every subclass's description.)
class AdaptationSettingsFields(serializers.Serializer):
    compensation_enabled = StrictBooleanField(required=False)
    memory_capacity = StrictIntegerField(**_bounds("memory_capacity"), required=False)
    memory_k = StrictIntegerField(**_bounds("memory_k"), required=False)
    compensation_lambda = StrictFloatField(**_bounds("compensation_lambda"), required=False)
    compensation_gamma = StrictFloatField(**_bounds("compensation_gamma"), required=False)
    compensation_tau = StrictFloatField(**_bounds("compensation_tau"), required=False)
    window_events = StrictIntegerField(**_bounds("window_events"), required=False)
    window_minutes = StrictIntegerField(**_bounds("window_minutes"), required=False)
    drift_p_value = StrictFloatField(**_bounds("drift_p_value"), required=False)
    drift_distance = StrictFloatField(**_bounds("drift_distance"), required=False)
    gate_max_nfr = StrictFloatField(**_bounds("gate_max_nfr"), required=False)
    gate_min_metric_delta = StrictFloatField(**_bounds("gate_min_metric_delta"), required=False)


class DeploymentSerializer(AdaptationSettingsFields, StrictModelSerializer):
    # Uniqueness is handled by the service (a retried create returns the existing deployment).
    slug = StrictSlugField(max_length=64)
    classes = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        help_text='Unique class names: two for `binary` (default ["0", "1"]), two or more for `multiclass`.',
    )
    feature_schema = FeatureSchemaField(required=False)
    serving = StrictChoiceField(choices=Deployment.Serving.choices, required=False)
    key_dim = StrictIntegerField(
        min_value=1,
        max_value=4096,
        required=False,
        allow_null=True,
        help_text="External deployments (required there, refused for hosted ones): length of the key vectors "
        "sent to /compensate.",
    )
    live_version = VersionSummarySerializer(read_only=True, allow_null=True, help_text="Null before a first upload.")

    class Meta:
        model = Deployment
        fields = [
            "slug",
            "name",
            "description",
            "task",
            "classes",
            "feature_schema",
            "serving",
            "key_dim",
            "status",
            "live_version",
            "memory_revision",
            "compensation_strength",
            *SETTINGS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "live_version",
            "memory_revision",
            "compensation_strength",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        external = attrs.get("serving") == Deployment.Serving.EXTERNAL
        schema = attrs.get("feature_schema")
        if external:
            if attrs.get("key_dim") is None:
                raise serializers.ValidationError({"key_dim": "required for an external deployment"})
            attrs["feature_schema"] = schema = schema if schema is not None else []
        else:
            if schema is None:
                raise serializers.ValidationError({"feature_schema": "This field is required."})
            if attrs.get("key_dim") is not None:
                raise serializers.ValidationError({"key_dim": "only for external deployments"})
        if schema or not external:
            try:
                parse_schema(schema)
            except SchemaError as exc:
                raise serializers.ValidationError({"feature_schema": str(exc)}) from exc
        task = attrs.get("task")
        classes = attrs.get("classes")
        if task == Task.BINARY:
            classes = classes or ["0", "1"]
            if len(classes) != 2:
                raise serializers.ValidationError({"classes": "a binary task has exactly two classes"})
        elif task == Task.MULTICLASS and (not classes or len(classes) < 2):
            raise serializers.ValidationError({"classes": "a multiclass task needs a list of at least two class names"})
        if classes is not None and len(set(classes)) != len(classes):
            raise serializers.ValidationError({"classes": "class names must be unique"})
        attrs["classes"] = classes
        return attrs


class DeploymentSettingsSerializer(AdaptationSettingsFields, StrictModelSerializer):
    """A partial update of the adaptation settings, with an optional reason for the audit log.

    Unknown or read-only keys are a 400 (StrictModelSerializer): a misspelt setting must not look saved.
    """

    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, write_only=True)

    class Meta:
        model = Deployment
        fields = [*SETTINGS, "reason"]


class ModelVersionSerializer(serializers.ModelSerializer):
    deployment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    parent = serializers.SlugRelatedField(
        slug_field="number",
        read_only=True,
        allow_null=True,
        help_text="The version it was trained from; null if uploaded.",
    )

    class Meta:
        model = ModelVersion
        fields = [
            "deployment",
            "number",
            "parent",
            "status",
            "origin",
            "architecture",
            "config",
            "preprocessing",
            "key_mean",
            "threshold",
            "weights_sha256",
            "weights_size",
            "data_start",
            "data_end",
            "metrics",
            "importance",
            "calibration",
            "notes",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "importance": {"help_text": "Each feature's share of the permutation importance on the profile."},
            "calibration": {"help_text": 'The isotonic map {"x": scores, "y": probabilities} for estimates.'},
        }


class VersionUploadSerializer(serializers.Serializer):
    """Documents the multipart upload; validation happens in adaptive.services.registry."""

    weights = serializers.FileField(help_text="A safetensors file with the model's state dict.")
    spec = serializers.CharField(
        help_text=(
            'JSON: {"architecture": "mlp"|"deepfm", "config": {...}, "preprocessing": {"numeric": '
            '{name: {"mean", "std"}}, "categorical": {name: {"vocab": [...]}}}, "threshold": 0.5, '
            '"key_mean": [...], "data_start": "2024-01-01T00:00:00Z", "data_end": "2024-03-01T00:00:00Z"}. '
            "data_start/data_end (optional, each alone too): the training period shown in lineage, ISO "
            "8601 with a timezone ('Z' or an offset); a timestamp without one is a 400, end must not precede start."
        )
    )


class IngestionKeySerializer(StrictModelSerializer):
    class Meta:
        model = IngestionKey
        fields = ["id", "name", "prefix", "rate", "created_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "revoked_at"]


class IngestionKeyCreatedSerializer(IngestionKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; only a hash is stored.")

    class Meta(IngestionKeySerializer.Meta):
        fields = [*IngestionKeySerializer.Meta.fields, "key"]


# --- ingestion (documentation only: the views parse bodies without serializers) -----------------


class PredictRowSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128)
    ts = serializers.DateTimeField(required=False, help_text="Event time, ISO-8601; defaults to receipt time.")
    features = serializers.DictField(help_text="Every feature of the deployment's schema, nothing else.")


class PredictRequestSerializer(serializers.Serializer):
    rows = serializers.ListField(child=PredictRowSerializer(), min_length=1, max_length=settings.MAX_BATCH_ROWS)


class PredictionSerializer(serializers.Serializer):
    id = serializers.CharField()
    score = serializers.JSONField(help_text="Binary: P(y=1). Multiclass: a probability per class.")
    base_score = serializers.JSONField(help_text="The base model's score (before compensation).")
    version = serializers.IntegerField(
        allow_null=True, help_text="Number of the version that served it (null for external deployments)."
    )
    memory_revision = serializers.IntegerField(
        allow_null=True, help_text="Revision of the error memory that compensated the score."
    )


class PredictResponseSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)


class CompensateRowSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128)
    ts = serializers.DateTimeField(required=False, help_text="Event time, ISO-8601; defaults to receipt time.")
    score = serializers.FloatField(required=False, help_text="Binary: your model's P(y=1).")
    proba = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Multiclass: your model's probability per class."
    )
    key = serializers.ListField(
        child=serializers.FloatField(),
        help_text="Your model's last hidden layer (key_dim numbers), ideally centred by its training mean.",
    )
    features = serializers.DictField(required=False, help_text="Optional feature values, used for drift.")


class CompensateRequestSerializer(serializers.Serializer):
    rows = serializers.ListField(child=CompensateRowSerializer(), min_length=1, max_length=settings.MAX_BATCH_ROWS)


class LabelSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128)
    label = serializers.JSONField(help_text="A class index or class name (binary also takes true/false).")


class FeedbackRequestSerializer(serializers.Serializer):
    labels = serializers.ListField(child=LabelSerializer(), min_length=1, max_length=settings.MAX_BATCH_ROWS)


class FeedbackResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    unknown = serializers.ListField(child=serializers.CharField())
    already_labeled = serializers.ListField(child=serializers.CharField())


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A code: invalid, not_found, conflict, throttled, ...")
    field = serializers.CharField(required=False, help_text="The field (or query parameter) at fault.")
    index = serializers.IntegerField(required=False, help_text="The row at fault, in a batch.")
    detail = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Every field's messages, for a 400 with several.")
    request_id = serializers.CharField(
        required=False, help_text="Also in the X-Request-ID header: the server log has the details under it."
    )


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    database = serializers.DictField(required=False, help_text="Viewers and up only.")
    broker = serializers.DictField(required=False, help_text="Viewers and up only.")
    workers = serializers.DictField(required=False, help_text="Viewers and up only.")


class LoopAlertSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["warn", "error"])
    topic = serializers.CharField(help_text="What the alert is about: queue:NAME, worker:NAME, jobs:KIND, lag:SLUG.")
    message = serializers.CharField()


class DeploymentLagSerializer(serializers.Serializer):
    slug = serializers.CharField()
    pending_labels = serializers.IntegerField(help_text="Labels not yet in the error memory (capped at 100,000).")
    pending_age_s = serializers.FloatField(allow_null=True, help_text="Age of the oldest, seconds.")
    unwindowed_labels = serializers.IntegerField(help_text="Labels in no closed window (capped at 100,000).")
    unwindowed_age_s = serializers.FloatField(allow_null=True)
    window_events = serializers.IntegerField()
    window_minutes = serializers.IntegerField()
    active_jobs = serializers.IntegerField(help_text="The deployment's jobs queued or running, of any kind.")
    memory_revision = serializers.IntegerField()


class JobWaitSerializer(serializers.Serializer):
    kind = serializers.CharField()
    queue = serializers.CharField()
    queued = serializers.IntegerField()
    oldest_id = serializers.IntegerField()
    oldest_deployment = serializers.CharField(allow_null=True)
    wait_s = serializers.FloatField()


class LoopSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField()
    alerts = LoopAlertSerializer(many=True)
    deployments = DeploymentLagSerializer(many=True)
    jobs = JobWaitSerializer(many=True)
    workers = serializers.DictField(allow_null=True, help_text="Null when the broker is unreachable.")
