"""Serializers for the registry (not the ingestion hot path, which validates in adaptive.services.ingest)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from adaptive.ml.preprocessing import SchemaError, parse_schema
from adaptive.models import Deployment, IngestionKey, ModelVersion, Task

SETTINGS_FIELDS = [
    "compensation_enabled",
    "memory_kind",
    "memory_capacity",
    "memory_k",
    "compensation_lambda",
    "compensation_gamma",
    "compensation_tau",
    "window_events",
    "window_minutes",
    "drift_p_value",
    "drift_distance",
    "retrain_policy",
    "retrain_cooldown_minutes",
    "gate_min_metric_delta",
    "gate_max_nfr",
]


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["number", "status", "architecture", "weights_sha256", "created_at"]


class DeploymentSerializer(serializers.ModelSerializer):
    # Uniqueness is handled by the service (a retried create returns the existing deployment).
    slug = serializers.SlugField(max_length=64)
    classes = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    feature_schema = serializers.JSONField()
    live_version = VersionSummarySerializer(read_only=True)
    memory_capacity = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)
    memory_k = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    compensation_lambda = serializers.FloatField(min_value=0, max_value=1, required=False)
    compensation_gamma = serializers.FloatField(min_value=0, max_value=1, required=False)
    compensation_tau = serializers.FloatField(min_value=1e-4, max_value=100, required=False)
    drift_p_value = serializers.FloatField(min_value=0, max_value=1, required=False)
    drift_distance = serializers.FloatField(min_value=0, required=False)
    gate_max_nfr = serializers.FloatField(min_value=0, max_value=1, required=False)
    gate_min_metric_delta = serializers.FloatField(min_value=-1, max_value=1, required=False)

    class Meta:
        model = Deployment
        fields = [
            "slug",
            "name",
            "description",
            "task",
            "classes",
            "feature_schema",
            "status",
            "live_version",
            "memory_revision",
            *SETTINGS_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "live_version", "memory_revision", "created_at", "updated_at"]

    def validate_feature_schema(self, value: Any) -> Any:
        try:
            parse_schema(value)
        except SchemaError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
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


class ModelVersionSerializer(serializers.ModelSerializer):
    deployment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    parent = serializers.SlugRelatedField(slug_field="number", read_only=True)

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
            "notes",
            "created_at",
        ]
        read_only_fields = fields


class VersionUploadSerializer(serializers.Serializer):
    """Documents the multipart upload; validation happens in adaptive.services.registry."""

    weights = serializers.FileField(help_text="A safetensors file with the model's state dict.")
    spec = serializers.CharField(
        help_text=(
            'JSON: {"architecture": "mlp"|"deepfm", "config": {...}, "preprocessing": {"numeric": '
            '{name: {"mean", "std"}}, "categorical": {name: {"vocab": [...]}}}, "threshold": 0.5, '
            '"key_mean": [...]}'
        )
    )


class IngestionKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = IngestionKey
        fields = ["name", "prefix", "created_at", "revoked_at"]
        read_only_fields = ["prefix", "created_at", "revoked_at"]


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
    rows = PredictRowSerializer(many=True)


class PredictionSerializer(serializers.Serializer):
    id = serializers.CharField()
    score = serializers.JSONField(help_text="Binary: P(y=1). Multiclass: a probability per class.")
    base_score = serializers.JSONField(help_text="The base model's score (before compensation).")
    version = serializers.IntegerField(help_text="Number of the version that served it.")


class PredictResponseSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)


class LabelSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128)
    label = serializers.JSONField(help_text="A class index or class name (binary also takes true/false).")


class FeedbackRequestSerializer(serializers.Serializer):
    labels = LabelSerializer(many=True)


class FeedbackResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    unknown = serializers.ListField(child=serializers.CharField())
    already_labeled = serializers.ListField(child=serializers.CharField())


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    field = serializers.CharField(required=False)
    index = serializers.IntegerField(required=False)
    detail = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    database = serializers.DictField()
    broker = serializers.DictField()
    workers = serializers.DictField()
