"""Serializers for the operator's actions (promote, rollback, pause, retrain, ...) and their reads.

*Request* serializers validate the bodies of the actions: a blank or missing required ``reason`` is
a 400 naming ``reason``, before any service runs. *Row* serializers shape releases, jobs and flip
reports; version numbers, slugs and usernames come from queryset annotations (see
adaptive.selectors), never from lazily loaded related objects, so a page costs one query.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from adaptive.models import Deployment, FlipReport, Job, Release
from adaptive.services.retraining import RETRAIN_PARAMS
from api.serializers_fields import (
    QueryDateTimeField,
    QuerySerializer,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)

REASON_HELP = "Why: stored on the release and in the audit log."


def _reason(*, required: bool) -> serializers.CharField:
    if required:
        return StrictCharField(max_length=2000, help_text=f"Required, not only whitespace. {REASON_HELP}")
    return StrictCharField(max_length=2000, required=False, allow_blank=True, default="", help_text=REASON_HELP)


# --- request bodies --------------------------------------------------------------------------------


class PromoteRequestSerializer(StrictSerializer):
    version = StrictIntegerField(min_value=1, help_text="Number of the version to put live (400 if there is none).")
    reason = _reason(required=True)


class RollbackRequestSerializer(StrictSerializer):
    version = StrictIntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Number of the version to put back; defaults to the one live before the current release.",
    )
    reason = _reason(required=True)


class RequiredReasonSerializer(StrictSerializer):
    """Pause and reset-memory: the reason is required."""

    reason = _reason(required=True)


class OptionalReasonSerializer(StrictSerializer):
    """Resume and cancel: a reason is welcome, not required."""

    reason = _reason(required=False)


def _retrain_params_schema() -> dict[str, Any]:
    """The JSON schema of a retrain's ``params``, from the table adaptive.services.retraining checks them by."""
    types = {bool: "boolean", int: "integer", float: "number"}
    properties: dict[str, Any] = {}
    for name, spec in RETRAIN_PARAMS.items():
        prop: dict[str, Any] = {"type": types[spec.kind], "default": spec.default}
        if spec.low is not None:
            prop["minimum"] = spec.low
            if spec.low_open:
                prop["exclusiveMinimum"] = True
        if spec.high is not None:
            prop["maximum"] = spec.high
        if spec.nullable:
            prop["nullable"] = True
        properties[name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


@extend_schema_field(_retrain_params_schema())
class RetrainParamsField(serializers.DictField):
    """Checked by adaptive.services.retraining.validate_params (a 400 naming ``params.<name>``)."""


class RetrainRequestSerializer(StrictSerializer):
    reason = _reason(required=False)
    params = RetrainParamsField(
        required=False,
        default=dict,
        help_text="Training overrides (epochs, learning rate, replay share, distillation, ...); see the retrain job.",
    )


class CompareRequestSerializer(StrictSerializer):
    old = StrictIntegerField(min_value=1, help_text="Number of the reference version (usually the live one).")
    new = StrictIntegerField(
        min_value=1, help_text="Number of the version compared with it (a candidate): not `old`, and both must exist."
    )
    reason = StrictCharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Accepted like everywhere; a comparison changes nothing, so it is not audited.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["old"] == attrs["new"]:
            raise serializers.ValidationError({"new": "compare two different versions"})
        return attrs


# --- query string (the lists' filters are in api.filters) -----------------------------------------


class LiveAtQuerySerializer(QuerySerializer):
    at = QueryDateTimeField(
        required=False, help_text="ISO-8601 instant (default: now); naive values are read in the server's time zone."
    )


# --- rows ------------------------------------------------------------------------------------------


class ReleaseSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version_number", read_only=True, help_text="The version number.")
    actor = serializers.CharField(source="actor_label", read_only=True, help_text="Username, or 'policy' / 'system'.")

    class Meta:
        model = Release
        fields = ["id", "version", "kind", "memory_revision", "started_at", "ended_at", "actor", "reason"]
        read_only_fields = fields


class LiveVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.CharField()


class ReleaseActionSerializer(serializers.Serializer):
    """The answer to promote and rollback."""

    release = ReleaseSerializer(help_text="The release now open: what is live since when, who put it there, why.")
    live_version = LiveVersionSerializer()
    took_ms = serializers.FloatField(help_text="Server time of the action (one transaction, commit included).")


class DeploymentStateSerializer(serializers.Serializer):
    """The answer to pause, resume and reset-memory."""

    deployment = serializers.SlugField()
    status = serializers.ChoiceField(choices=Deployment.Status.choices)
    live_version = serializers.IntegerField(allow_null=True, help_text="Number of the live version.")
    memory_revision = serializers.IntegerField()
    cleared = serializers.IntegerField(
        required=False, help_text="reset-memory only: how many samples left the live memory."
    )
    took_ms = serializers.FloatField()


class JobSerializer(serializers.ModelSerializer):
    deployment = serializers.CharField(source="deployment_slug", read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by_username", read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "deployment",
            "kind",
            "status",
            "progress",
            "message",
            "device",
            "params",
            "metrics",
            "attempts",
            "requested_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class FlipReportSerializer(serializers.ModelSerializer):
    """A flip report's headline figures, for lists."""

    old_version = serializers.IntegerField(source="old_number", read_only=True)
    new_version = serializers.IntegerField(source="new_number", read_only=True)

    class Meta:
        model = FlipReport
        fields = [
            "id",
            "old_version",
            "new_version",
            "job",
            "n",
            "old_accuracy",
            "new_accuracy",
            "nfr",
            "nfr_high",
            "pfr",
            "gate_passed",
            "created_at",
        ]
        read_only_fields = fields


class FlipReportDetailSerializer(FlipReportSerializer):
    class Meta(FlipReportSerializer.Meta):
        fields = [
            "id",
            "old_version",
            "new_version",
            "job",
            "n",
            "old_accuracy",
            "new_accuracy",
            "old_auc",
            "new_auc",
            "nfr",
            "nfr_low",
            "nfr_high",
            "pfr",
            "pfr_low",
            "pfr_high",
            "nfi",
            "relative_nfr",
            "nfr_mc",
            "disagreement",
            "mcnemar_p",
            "per_class",
            "example_event_ids",
            "gate_passed",
            "gate_reasons",
            "created_at",
        ]
        read_only_fields = fields
