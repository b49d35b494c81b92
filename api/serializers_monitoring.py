"""Serializers for the monitoring reads: windows, drift metrics, detectors, error memory, samples.

Two kinds live here. *Query* serializers validate the query string of the reads that are not lists
(the lists filter with api.filters), so that a bad value is a 400 naming the field, and document
the parameters in the OpenAPI schema. *Row* serializers shape the output; related numbers (a
window's version, a sample's event id) come from queryset annotations, never from lazily loaded
objects, so a page costs one query whatever its size.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
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


class AlarmSerializer(serializers.Serializer):
    """One entry of a window's alarm timeline (documentation of the JSON the monitoring service stores)."""

    kind = serializers.ChoiceField(
        choices=[
            ("drift_status", "The calibrated dataset-level drift status"),
            ("retrain_trigger", "The retrain trigger (CUSUM on the compensated loss)"),
            ("detector", "A streaming detector (uncalibrated)"),
        ]
    )
    level = serializers.ChoiceField(choices=["drift", "warn", "info"])
    calibrated = serializers.BooleanField(
        help_text="Whether the alarm's false-alarm rate is calibrated; detector signals are not (level info)."
    )
    reason = serializers.CharField(help_text="What fired and why, in a sentence.")


class HistogramSerializer(serializers.Serializer):
    """The reference and current distributions of one column (documentation of the stored JSON).

    Every key is optional: a row written before histograms were kept has an empty object.
    """

    kind = serializers.ChoiceField(choices=["numeric", "categorical"], required=False)
    edges = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Numeric: the 21 bin edges of the 20 bins."
    )
    categories = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Categorical: the categories, in bar order."
    )
    reference = serializers.ListField(
        child=serializers.FloatField(),
        required=False,
        help_text="Share of the reference (training) rows per bin or category.",
    )
    current = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Share of the window's rows."
    )


@extend_schema_field(AlarmSerializer(many=True))
class AlarmsField(serializers.JSONField):
    """The stored alarm list as it is: the schema documents its items, the answer keeps every key."""


@extend_schema_field(HistogramSerializer)
class HistogramField(serializers.JSONField):
    """The stored histogram as it is; an empty object for a test written before histograms were kept."""


class DriftMetricSerializer(serializers.ModelSerializer):
    method = serializers.CharField(
        read_only=True,
        help_text="wasserstein (numeric columns) or jensenshannon (categorical); older rows name older tests.",
    )
    statistic = serializers.FloatField(read_only=True, help_text="The effect size (the test's distance).")
    p_value = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Calibrated against the reference's own sampling noise."
    )
    threshold = serializers.FloatField(
        read_only=True, help_text="The calibrated drift boundary of the statistic for this window's size."
    )
    severity = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="statistic / threshold: 1 is the drift boundary, 2 twice as far. Null on rows from before "
        "calibrated drift.",
    )
    importance = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="The column's share of the version's permutation importance, in [0, 1]; null when unknown "
        "(the prediction, label and error columns, or a version without importances).",
    )
    psi = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Population stability index, beside the main distance."
    )

    class Meta:
        model = DriftMetric
        fields = [
            "id",
            "column",
            "column_kind",
            "method",
            "statistic",
            "p_value",
            "threshold",
            "level",
            "severity",
            "importance",
            "psi",
        ]
        read_only_fields = fields


class DriftMetricDetailSerializer(DriftMetricSerializer):
    """A drift test with the distributions it compared: the drill-down of one grid cell."""

    histogram = HistogramField(
        read_only=True,
        help_text='Numeric: {"kind": "numeric", "edges": [21 floats], "reference": [20 shares], '
        '"current": [20 shares]}; categorical: {"kind": "categorical", "categories": [...], "reference": '
        '[...], "current": [...]}. An empty object for rows written before histograms were kept.',
    )

    class Meta(DriftMetricSerializer.Meta):
        fields = [*DriftMetricSerializer.Meta.fields, "histogram"]
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
    drift_status = serializers.ChoiceField(
        choices=DriftMetric.Level.choices,
        read_only=True,
        help_text="The calibrated dataset-level drift status of the window.",
    )
    loss_cusum = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="The retrain trigger's CUSUM statistic on the compensated loss; null during its burn-in.",
    )
    alarms = AlarmsField(
        read_only=True,
        help_text="The window's alarm timeline: calibrated alarms (drift status, retrain trigger) and the "
        "detectors' uncalibrated signals (level info), each with its reason.",
    )
    estimated_base_auc = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Label-free estimate (confidence-based, from the scores alone) of base_auc; null for multiclass.",
    )
    estimated_compensated_auc = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Label-free estimate of compensated_auc."
    )
    estimated_base_accuracy = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Label-free estimate of base_accuracy."
    )
    estimated_compensated_accuracy = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Label-free estimate of compensated_accuracy."
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
            "drift_status",
            "loss_cusum",
            "alarms",
            "estimated_base_auc",
            "estimated_compensated_auc",
            "estimated_base_accuracy",
            "estimated_compensated_accuracy",
            "created_at",
        ]
        read_only_fields = fields


class WindowDetailSerializer(WindowSerializer):
    drift_metrics = DriftMetricDetailSerializer(
        many=True, read_only=True, help_text="The window's drift tests, each with its histogram."
    )

    class Meta(WindowSerializer.Meta):
        fields = [*WindowSerializer.Meta.fields, "drift_metrics"]
        read_only_fields = fields


class DriftRowSerializer(DriftMetricSerializer):
    """One drift test with its window's place on the time axis: a cell of the columns x windows grid.

    Without the histogram, so that a grid of many windows stays small: the window detail has it.
    """

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


class GateSerializer(serializers.Serializer):
    """The compensation gate (docs/adaptation.md, "The compensation gate")."""

    enabled = serializers.BooleanField(help_text="Whether the served strength is learned (compensation_gate).")
    served_strength = serializers.FloatField(help_text="The share of the correction predict serves now.")
    strength = serializers.FloatField(help_text="The share the evidence supports (served while the gate is on).")
    support = serializers.FloatField(help_text="Effective number of labels behind the evidence (discounted).")
    labels_seen = serializers.IntegerField(help_text="Labels the gate has learned from.")
    loss_change = serializers.FloatField(
        allow_null=True, help_text="Mean change of log loss per label at `strength` (negative: it helps)."
    )
    loss_change_bound = serializers.FloatField(
        allow_null=True, help_text="Its upper confidence bound; null before enough label batches."
    )
    full_loss_change = serializers.FloatField(allow_null=True, help_text="The same at full strength.")
    full_loss_change_bound = serializers.FloatField(allow_null=True)
    half_life = serializers.FloatField(help_text="Labels after which evidence weighs half.")
    z = serializers.FloatField(help_text="Width of the confidence bound, in standard errors.")
    min_support = serializers.FloatField(help_text="Labels before any correction is served.")


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
    gate = GateSerializer(help_text="The compensation gate: how much of the correction is served, and why.")


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
