"""Serializers for the monitoring reads: windows, drift metrics, detectors, error memory, samples.

Two kinds live here. *Query* serializers validate the query string of the reads that are not lists
(the lists filter with api.filters), so that a bad value is a 400 naming the field, and document
the parameters in the OpenAPI schema. *Row* serializers shape the output; related numbers (a
window's version, a sample's event id) come from queryset annotations, never from lazily loaded
objects, so a page costs one query whatever its size.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from adaptive.ml.drift import DETECTOR_KINDS
from adaptive.models import Deployment, DriftMetric, ErrorSample, Window
from api.serializers_fields import UNTIL_AFTER_SINCE, UNTIL_HELP, QueryDateTimeField, QuerySerializer

# --- query strings (the lists' filters are in api.filters) ------------------------------------------


def validate_time_range(attrs: dict[str, Any]) -> dict[str, Any]:
    """``until`` after ``since``: an empty or reversed range is a typo, not a question (400 naming until)."""
    since, until = attrs.get("since"), attrs.get("until")
    if since is not None and until is not None and until <= since:
        raise serializers.ValidationError({"until": UNTIL_AFTER_SINCE})
    return attrs


class TimeRangeQuerySerializer(QuerySerializer):
    """``since`` (inclusive) and ``until`` (exclusive) on the endpoint's time column."""

    since = QueryDateTimeField(required=False, help_text="ISO-8601; only rows at or after this instant.")
    until = QueryDateTimeField(
        required=False, help_text="ISO-8601; only rows strictly before this instant." + UNTIL_HELP
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return validate_time_range(attrs)


class VersionQuerySerializer(QuerySerializer):
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="A version number of a hosted deployment (400 if it has no such version, or is external); "
        "defaults to the live version.",
    )


# --- windows and drift -----------------------------------------------------------------------------


class DriftMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftMetric
        fields = ["id", "column", "column_kind", "method", "statistic", "p_value", "threshold", "level"]
        read_only_fields = fields


class WindowSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(
        source="version_number", allow_null=True, read_only=True, help_text="Number of the version that served it."
    )
    detector_signals = serializers.JSONField(
        read_only=True,
        help_text="What the streaming detectors said in this window, per error stream and detector: "
        '{"raw": {"adwin": {"drift": false, "detections": [], "warning": false, "n_seen": 1200, '
        '"n_detections": 0}, ...}, "compensated": {...}}; `detections` are positions within the window.',
    )

    class Meta:
        model = Window
        fields = [
            "id",
            "version",
            "start",
            "end",
            "labeled_from",
            "labeled_to",
            "n_events",
            "n_labeled",
            "base_auc",
            "compensated_auc",
            "base_log_loss",
            "compensated_log_loss",
            "base_accuracy",
            "compensated_accuracy",
            "base_brier",
            "compensated_brier",
            "memory_size",
            "memory_revision",
            "detector_signals",
            "created_at",
        ]
        read_only_fields = fields


class WindowDetailSerializer(WindowSerializer):
    drift_metrics = DriftMetricSerializer(many=True, read_only=True)

    class Meta(WindowSerializer.Meta):
        fields = [*WindowSerializer.Meta.fields, "drift_metrics"]
        read_only_fields = fields


class DriftRowSerializer(DriftMetricSerializer):
    """One drift test with its window's place on the time axis: a cell of the columns x windows grid."""

    window = serializers.IntegerField(source="window_id", read_only=True)
    window_start = serializers.DateTimeField(read_only=True)
    window_end = serializers.DateTimeField(read_only=True)
    version = serializers.IntegerField(source="version_number", allow_null=True, read_only=True)

    class Meta(DriftMetricSerializer.Meta):
        fields = ["window", "window_start", "window_end", "version", *DriftMetricSerializer.Meta.fields]
        read_only_fields = fields


class DetectorSignalRowSerializer(serializers.ModelSerializer):
    """A window's detector signals: one point of the detector timeline."""

    window = serializers.IntegerField(source="id", read_only=True)
    version = serializers.IntegerField(source="version_number", allow_null=True, read_only=True)
    signals = serializers.JSONField(source="detector_signals", read_only=True)

    class Meta:
        model = Window
        fields = ["window", "version", "start", "end", "n_labeled", "signals"]
        read_only_fields = fields


# --- detector state (documentation of the dicts the view builds) ----------------------------------


class DetectorSummarySerializer(serializers.Serializer):
    detector = serializers.ChoiceField(choices=list(DETECTOR_KINDS))
    params = serializers.DictField(help_text="River constructor arguments, defaults included.")
    n_seen = serializers.IntegerField(help_text="Errors taken over the detector's life.")
    n_detections = serializers.IntegerField()
    last_detection_at = serializers.IntegerField(
        allow_null=True, help_text="Position in the error stream (0-based) of the last detection."
    )
    since_last_detection = serializers.IntegerField(
        allow_null=True, help_text="Errors taken after the last detection; null when it never fired."
    )
    drift = serializers.BooleanField(help_text="The last error taken raised a detection.")
    warning = serializers.BooleanField(
        allow_null=True, help_text="DDM's warning zone after the last error; null for the other detectors."
    )
    history = serializers.IntegerField(help_text="Recent errors the saved state keeps at most.")
    stored = serializers.IntegerField(help_text="Recent errors (since the last detection) the saved state holds.")
    restore_exact = serializers.BooleanField(
        help_text="The saved state rebuilds the detector exactly (no more errors since its last reset than history)."
    )


class DetectorStreamSerializer(serializers.Serializer):
    stream = serializers.ChoiceField(
        choices=[("raw", "Errors of the base scores"), ("compensated", "Errors of the compensated scores")]
    )
    drift = serializers.BooleanField(help_text="Any detector's last error raised a detection.")
    warning = serializers.BooleanField(help_text="Any detector is in its warning zone.")
    detectors = DetectorSummarySerializer(many=True)
    error = serializers.CharField(
        required=False, help_text="Present when the saved state could not be read; the detectors list is then empty."
    )


class DetectorStateSerializer(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="Null for an external deployment.")
    live = serializers.BooleanField(help_text="Whether this is the version serving now.")
    updated_at = serializers.DateTimeField(allow_null=True, help_text="Null when no detector has run yet.")
    streams = DetectorStreamSerializer(many=True)


# --- error memory ----------------------------------------------------------------------------------


class LabelShareSerializer(serializers.Serializer):
    label = serializers.IntegerField(help_text="Class index.")
    name = serializers.CharField(help_text="Class name.")
    count = serializers.IntegerField()
    share = serializers.FloatField()


class MemorySupportSerializer(serializers.Serializer):
    events = serializers.IntegerField(help_text="Recent served events whose keys were looked up.")
    hit_rate = serializers.FloatField(allow_null=True, help_text="Share of them with any support in the memory.")
    mean_support = serializers.FloatField(allow_null=True, help_text="Mean support (the memory kind's own scale).")
    mean_weight = serializers.FloatField(
        allow_null=True,
        help_text="Mean weight of the correction, support / (support + shrink), in [0, 1]: comparable across kinds.",
    )


class MemoryStatsSerializer(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="Whose memory; null for an external deployment.")
    live = serializers.BooleanField(help_text="Whether this is the memory serving now.")
    memory_kind = serializers.ChoiceField(choices=Deployment.MemoryKind.choices)
    compensation_enabled = serializers.BooleanField()
    capacity = serializers.IntegerField()
    k = serializers.IntegerField()
    compensation_lambda = serializers.FloatField()
    compensation_gamma = serializers.FloatField()
    compensation_tau = serializers.FloatField()
    key_dim = serializers.IntegerField(allow_null=True, help_text="Length of the key vectors; null when empty.")
    revision = serializers.IntegerField(help_text="The deployment's memory revision.")
    epoch = serializers.IntegerField(help_text="Bumped when the memory is replaced rather than extended.")
    size = serializers.IntegerField(help_text="Active error samples.")
    pending_labels = serializers.IntegerField(help_text="Labels received that the memory has not taken in yet.")
    oldest_sample_at = serializers.DateTimeField(allow_null=True)
    newest_sample_at = serializers.DateTimeField(allow_null=True)
    label_balance = LabelShareSerializer(many=True)
    support = MemorySupportSerializer(
        allow_null=True,
        help_text="How much evidence the live memory holds for the latest served events; null for a version "
        "that is not live.",
    )


class ErrorSampleSerializer(serializers.ModelSerializer):
    """One entry of the error memory. The key vector itself is never returned."""

    event = serializers.CharField(
        source="event_external_id", allow_null=True, read_only=True, help_text="The event's external id."
    )
    version = serializers.IntegerField(source="version_number", allow_null=True, read_only=True)

    class Meta:
        model = ErrorSample
        fields = ["id", "event", "version", "label", "base_score", "base_proba", "revision", "written_at", "active"]
        read_only_fields = fields
