"""Serializers for the reads behind the dashboard: the overview, the adaptation curve, the audit log.

The overview and curve are built as plain dicts by adaptive.services.summary and .curves; the
serializers here document their shape in the OpenAPI schema and validate query strings.
"""

from __future__ import annotations

from rest_framework import serializers

from adaptive.models import AuditEntry
from adaptive.selectors.estimates import MAX_PENDING_WINDOWS
from adaptive.services.curves import MAX_WINDOWS, PENDING_WINDOWS
from api.serializers_monitoring import TimeRangeQuerySerializer

# --- overview --------------------------------------------------------------------------------------


class LatestWindowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    end = serializers.DateTimeField(help_text="Event time of the window's last event.")
    n_labeled = serializers.IntegerField()
    base_auc = serializers.FloatField(allow_null=True)
    compensated_auc = serializers.FloatField(allow_null=True)


class SparklineSerializer(serializers.Serializer):
    base = serializers.ListField(child=serializers.FloatField(allow_null=True))
    compensated = serializers.ListField(child=serializers.FloatField(allow_null=True))


class DeploymentSummarySerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    task = serializers.CharField()
    status = serializers.CharField()
    serving = serializers.CharField()
    live_version = serializers.IntegerField(allow_null=True)
    health = serializers.ChoiceField(
        choices=["no data", "ok", "warn", "drift"],
        help_text="Worst of the latest window's drift bands and detector signals (compensated error: drift).",
    )
    health_reasons = serializers.ListField(child=serializers.CharField())
    events_per_minute = serializers.FloatField(help_text="Events received over the last 5 minutes, per minute.")
    latest_window = LatestWindowSerializer(allow_null=True)
    memory_size = serializers.IntegerField(help_text="Active samples in the live version's error memory.")
    memory_revision = serializers.IntegerField()
    sparkline = SparklineSerializer(help_text="AUC of the latest 30 windows, oldest first.")


class ActiveJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    deployment = serializers.SlugField(allow_null=True)
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    device = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)


class OverviewSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    deployments = DeploymentSummarySerializer(many=True)
    active_jobs = ActiveJobSerializer(many=True, help_text="Queued and running jobs, newest first (at most 20).")


# --- adaptation curve ------------------------------------------------------------------------------


class CurveQuerySerializer(TimeRangeQuerySerializer):
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_WINDOWS,
        default=MAX_WINDOWS,
        help_text=f"The newest this many windows (at most {MAX_WINDOWS}).",
    )


class CurveWindowsSerializer(serializers.Serializer):
    """Column arrays, one entry per window, oldest first."""

    id = serializers.ListField(child=serializers.IntegerField(), help_text="Window ids (see `.../windows/{id}`).")
    end = serializers.ListField(child=serializers.DateTimeField(), help_text="Event time of each window's last event.")
    version = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    n_labeled = serializers.ListField(child=serializers.IntegerField())
    memory_size = serializers.ListField(child=serializers.IntegerField())
    base_auc = serializers.ListField(child=serializers.FloatField(allow_null=True))
    compensated_auc = serializers.ListField(child=serializers.FloatField(allow_null=True))
    base_log_loss = serializers.ListField(child=serializers.FloatField(allow_null=True))
    compensated_log_loss = serializers.ListField(child=serializers.FloatField(allow_null=True))
    base_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))
    compensated_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))
    base_brier = serializers.ListField(child=serializers.FloatField(allow_null=True))
    compensated_brier = serializers.ListField(child=serializers.FloatField(allow_null=True))


class CurveMarkerSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["retrain", "promotion", "rollback"])
    at = serializers.DateTimeField(help_text="Wall-clock time of the change.")
    version = serializers.IntegerField()
    label = serializers.CharField()
    reason = serializers.CharField()
    position = serializers.IntegerField(help_text="Index of the first window that closed after the change.")


class CurveSerializer(serializers.Serializer):
    windows = CurveWindowsSerializer()
    markers = CurveMarkerSerializer(many=True)


# --- audit log -------------------------------------------------------------------------------------


class AuditEntrySerializer(serializers.ModelSerializer):
    deployment = serializers.CharField(source="deployment_slug", read_only=True, allow_null=True)
    actor = serializers.CharField(source="actor_label", read_only=True)
    action_label = serializers.CharField(source="get_action_display", read_only=True)
    from_version = serializers.IntegerField(source="from_number", read_only=True, allow_null=True)
    to_version = serializers.IntegerField(source="to_number", read_only=True, allow_null=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "deployment",
            "actor",
            "action",
            "action_label",
            "from_version",
            "to_version",
            "reason",
            "details",
        ]
        read_only_fields = fields


# --- the adaptation curve with its label-free estimates --------------------------------------------


class EstimatedCurveQuerySerializer(CurveQuerySerializer):
    pending = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_PENDING_WINDOWS,
        default=PENDING_WINDOWS,
        help_text="Window-sized chunks of the traffic after the last window to estimate without labels "
        f"(at most {MAX_PENDING_WINDOWS}; 0 for none).",
    )


class EstimatedCurveWindowsSerializer(CurveWindowsSerializer):
    """Column arrays, one entry per window, oldest first, with the label-free estimates."""

    estimated_base_auc = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        help_text="Label-free estimate of base_auc from the scores alone (null for multiclass or before "
        "estimates were stored).",
    )
    estimated_compensated_auc = serializers.ListField(child=serializers.FloatField(allow_null=True))
    estimated_base_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))
    estimated_compensated_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))


class PendingEstimatesSerializer(serializers.Serializer):
    """Column arrays, one entry per window-sized chunk of traffic after the last window, oldest first."""

    start = serializers.ListField(child=serializers.DateTimeField(), help_text="Event time of the chunk's first event.")
    end = serializers.ListField(child=serializers.DateTimeField(), help_text="Event time of its last event.")
    n_events = serializers.ListField(
        child=serializers.IntegerField(), help_text="Events in the chunk (window_events, fewer in the newest)."
    )
    estimated_base_auc = serializers.ListField(child=serializers.FloatField(allow_null=True))
    estimated_compensated_auc = serializers.ListField(child=serializers.FloatField(allow_null=True))
    estimated_base_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))
    estimated_compensated_accuracy = serializers.ListField(child=serializers.FloatField(allow_null=True))


class EstimatedCurveSerializer(serializers.Serializer):
    windows = EstimatedCurveWindowsSerializer()
    markers = CurveMarkerSerializer(many=True)
    pending = PendingEstimatesSerializer(
        help_text="Label-free estimates beyond the last window: empty for multiclass and external deployments, "
        "and when `until` is given."
    )
