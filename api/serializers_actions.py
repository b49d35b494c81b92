"""Serializers for the operator's actions (promote, rollback, pause, retrain, ...) and their reads.

*Request* serializers validate the bodies of the actions: a blank or missing required ``reason`` is
a 400 naming ``reason``, before any service runs. *Row* serializers shape releases, jobs and flip
reports; version numbers, slugs and usernames come from queryset annotations (see
api.views.actions), never from lazily loaded related objects, so a page costs one query.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from adaptive.models import Deployment, FlipReport, Job, Release
from api.serializers_monitoring import QueryDateTimeField, TimeRangeQuerySerializer

REASON_HELP = "Why: stored on the release and in the audit log."


def _reason(*, required: bool) -> serializers.CharField:
    if required:
        return serializers.CharField(max_length=2000, help_text=f"Required. {REASON_HELP}")
    return serializers.CharField(max_length=2000, required=False, allow_blank=True, default="", help_text=REASON_HELP)


# --- request bodies --------------------------------------------------------------------------------


class PromoteRequestSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="Number of the version to put live.")
    reason = _reason(required=True)


class RollbackRequestSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Number of the version to put back; defaults to the one live before the current release.",
    )
    reason = _reason(required=True)


class RequiredReasonSerializer(serializers.Serializer):
    """Pause and reset-memory: the reason is required."""

    reason = _reason(required=True)


class OptionalReasonSerializer(serializers.Serializer):
    """Resume and cancel: a reason is welcome, not required."""

    reason = _reason(required=False)


class RetrainRequestSerializer(serializers.Serializer):
    reason = _reason(required=False)
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Training overrides (epochs, learning rate, replay share, distillation, ...); see the retrain job.",
    )


class CompareRequestSerializer(serializers.Serializer):
    old = serializers.IntegerField(min_value=1, help_text="Number of the reference version (usually the live one).")
    new = serializers.IntegerField(min_value=1, help_text="Number of the version compared with it (a candidate).")
    reason = serializers.CharField(
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


# --- query strings ---------------------------------------------------------------------------------


class ReleaseQuerySerializer(TimeRangeQuerySerializer):
    since = QueryDateTimeField(required=False, help_text="ISO-8601; releases that started at or after this instant.")
    until = QueryDateTimeField(required=False, help_text="ISO-8601; releases that started strictly before it.")


class LiveAtQuerySerializer(serializers.Serializer):
    at = QueryDateTimeField(
        required=False, help_text="ISO-8601 instant (default: now); naive values are read in the server's time zone."
    )


class FlipReportQuerySerializer(serializers.Serializer):
    new = serializers.IntegerField(required=False, min_value=1, help_text="Only reports on this (candidate) version.")
    old = serializers.IntegerField(required=False, min_value=1, help_text="Only reports against this version.")


class JobQuerySerializer(serializers.Serializer):
    deployment = serializers.SlugField(required=False, help_text="Only this deployment's jobs (its slug).")
    kind = serializers.ChoiceField(choices=Job.Kind.choices, required=False)
    status = serializers.ChoiceField(choices=Job.Status.choices, required=False)


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
