"""The domain model (docs/design.md, "Domain model").

A Deployment serves one model family; ModelVersions form its lineage; Events are served
predictions that later receive labels; ErrorSamples are the persisted error memory; Windows and
DriftMetrics are the pre-aggregated monitoring data the dashboard reads; Jobs track background
work; FlipReports compare versions; Releases and AuditEntries record who changed what and why.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from adaptive.ml.compensation import DEFAULT_GAMMA, DEFAULT_LAMBDA
from adaptive.ml.drift.calibration import DEFAULT_COLUMN_ALPHA, DEFAULT_MIN_EFFECT
from adaptive.ml.memory import DEFAULT_EXACT_CAPACITY, DEFAULT_EXACT_K, DEFAULT_TAU
from config.rates import MAX_RATE_LENGTH, validate_rate


class Task(models.TextChoices):
    BINARY = "binary", "Binary classification"
    MULTICLASS = "multiclass", "Multiclass classification"


class DeploymentQuerySet(models.QuerySet["Deployment"]):
    def active(self) -> DeploymentQuerySet:
        return self.filter(status=Deployment.Status.ACTIVE)

    def visible(self) -> DeploymentQuerySet:
        return self.exclude(status=Deployment.Status.ARCHIVED)


class Deployment(models.Model):
    """A named slot that serves one model family, with its live version and adaptation settings."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused (serving, not adapting)"
        ARCHIVED = "archived", "Archived"

    class MemoryKind(models.TextChoices):
        EXACT = "exact", "Exact (ring buffer, cosine top-k)"
        SKETCH = "sketch", "Sketch (LSH buckets, constant size)"

    class RetrainPolicy(models.TextChoices):
        MANUAL = "manual", "Manual (flag only)"
        AUTO = "auto", "Automatic"

    class Serving(models.TextChoices):
        HOSTED = "hosted", "Hosted (the control room runs the model)"
        EXTERNAL = "external", "External (the client sends scores and keys)"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=16, choices=Task.choices)
    # Class names in index order; a binary task has two ("0", "1" unless named).
    classes = models.JSONField(default=list)
    # [{"name": "dep_delay", "type": "numeric"}, {"name": "carrier", "type": "categorical"}, ...]
    feature_schema = models.JSONField()
    live_version = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    serving = models.CharField(max_length=16, choices=Serving.choices, default=Serving.HOSTED)
    # External deployments: the dimension of the key vectors clients send to /compensate.
    key_dim = models.PositiveIntegerField(null=True, blank=True)

    # Compensation (docs/design.md, "Compensation"). The defaults are the exact memory's tuned values,
    # defined once in adaptive.ml next to the code they tune.
    compensation_enabled = models.BooleanField(default=True)
    memory_kind = models.CharField(max_length=16, choices=MemoryKind.choices, default=MemoryKind.EXACT)
    memory_capacity = models.PositiveIntegerField(default=DEFAULT_EXACT_CAPACITY)
    memory_k = models.PositiveIntegerField(default=DEFAULT_EXACT_K)
    compensation_lambda = models.FloatField(default=DEFAULT_LAMBDA)
    compensation_gamma = models.FloatField(default=DEFAULT_GAMMA)
    compensation_tau = models.FloatField(default=DEFAULT_TAU)
    # The compensation gate (adaptive.ml.gate): when on, the share of the memory's correction that
    # is served is learned from the labels (``compensation_strength``, written with each memory
    # revision); when off, the full correction is served.
    compensation_gate = models.BooleanField(
        default=True, help_text="Learn from the labels how much of the correction to serve."
    )
    compensation_strength = models.FloatField(
        default=0.0, help_text="The share of the correction served while the gate is on (learned)."
    )
    # Bumped each time the error memory changes; serving processes compare it to their cache.
    memory_revision = models.BigIntegerField(default=0)
    # Bumped when the memory is replaced rather than extended (reset, rollback, promotion, settings
    # that change its shape): serving processes then rebuild it instead of applying a delta.
    memory_epoch = models.BigIntegerField(default=0)

    # Monitoring (docs/design.md, "Monitoring")
    window_events = models.PositiveIntegerField(default=1000, help_text="Close a window every N labels.")
    window_minutes = models.PositiveIntegerField(default=60, help_text="Close a window every T minutes.")
    # Calibrated drift (adaptive.ml.drift.calibration): a column's false-alarm rate per window, and
    # the smallest effect (normalised Wasserstein, Jensen-Shannon) that counts as drift.
    drift_p_value = models.FloatField(
        default=DEFAULT_COLUMN_ALPHA, help_text="A column's false-alarm rate per window (calibrated)."
    )
    drift_distance = models.FloatField(
        default=DEFAULT_MIN_EFFECT, help_text="Smallest effect size that counts as drift."
    )

    # Retraining and gates (docs/design.md, "The slow loop")
    retrain_policy = models.CharField(max_length=16, choices=RetrainPolicy.choices, default=RetrainPolicy.MANUAL)
    retrain_cooldown_minutes = models.PositiveIntegerField(default=60)
    gate_min_metric_delta = models.FloatField(default=0.0)
    gate_max_nfr = models.FloatField(default=0.05)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(compensation_lambda__gte=0) & Q(compensation_lambda__lte=1),
                name="deployment_lambda_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(compensation_gamma__gte=0) & Q(compensation_gamma__lte=1),
                name="deployment_gamma_in_unit_interval",
            ),
            models.CheckConstraint(condition=Q(compensation_tau__gt=0), name="deployment_tau_positive"),
            models.CheckConstraint(condition=Q(memory_k__gte=1), name="deployment_k_positive"),
            models.CheckConstraint(
                condition=Q(serving="hosted") | Q(key_dim__gte=1), name="external_deployment_has_key_dim"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def n_outputs(self) -> int:
        """Logit count of the deployment's models: one for binary, one per class otherwise."""
        return 1 if self.task == Task.BINARY else len(self.classes)


class ModelVersion(models.Model):
    """One trained model of a deployment: architecture, weights (safetensors) and lineage."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        LIVE = "live", "Live"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected"

    class Origin(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        RETRAINED = "retrained", "Retrained"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    architecture = models.CharField(max_length=32)
    config = models.JSONField(default=dict)
    # Feature preprocessing: numeric mean/std and categorical vocabularies (see adaptive.ml).
    preprocessing = models.JSONField()
    # Training mean of the last hidden layer; keys are centred by it before normalisation.
    key_mean = models.JSONField(null=True, blank=True)
    threshold = models.FloatField(default=0.5)
    # Reference sample of the training data for drift tests: {"features": {name: [values]},
    # "prediction": [scores], "label": [labels]} (at most a few thousand values per column).
    profile = models.JSONField(default=dict, blank=True)
    weights_path = models.CharField(max_length=255, help_text="Relative to ARTIFACT_ROOT.")
    weights_sha256 = models.CharField(max_length=64)
    weights_size = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.UPLOADED)
    origin_job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_versions"
    )
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # What monitoring needs from the version, computed from its profile when it is registered
    # (adaptive.services.profiling): each feature's permutation importance, and the isotonic map
    # from its scores to calibrated probabilities for label-free performance estimates.
    importance = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["deployment", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "number"], name="version_number_unique_per_deployment"),
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(status="live"), name="one_live_version_per_deployment"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}:v{self.number}"


class Release(models.Model):
    """What was live when: one row per period a version (and memory revision) served traffic."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial"
        PROMOTION = "promotion", "Promotion"
        ROLLBACK = "rollback", "Rollback"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="releases")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="releases")
    memory_revision = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=64, blank=True, help_text="'policy', 'system', or a username.")
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["deployment", "-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(ended_at__isnull=True), name="one_open_release_per_deployment"
            ),
        ]
        indexes = [
            # "What was live at T": WHERE deployment = ? AND started_at <= T ORDER BY started_at DESC
            models.Index(fields=["deployment", "started_at"], name="release_deployment_started"),
        ]

    def __str__(self) -> str:
        return f"{self.version} from {self.started_at:%Y-%m-%d %H:%M}"


class EventQuerySet(models.QuerySet["Event"]):
    def labeled(self) -> EventQuerySet:
        return self.filter(label__isnull=False)


class Event(models.Model):
    """One served prediction; the label arrives later through feedback.

    ``external_id`` is the client's id, unique per deployment: it makes predict and feedback
    idempotent. Binary scores are P(y=1); multiclass scores are the predicted class's
    probability, with full vectors in ``base_proba``/``proba``.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    external_id = models.CharField(max_length=128)
    event_time = models.DateTimeField()
    received_at = models.DateTimeField()
    features = models.JSONField()
    # Null for external deployments, whose model lives outside the control room.
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    base_score = models.FloatField()
    score = models.FloatField()
    base_proba = models.JSONField(null=True, blank=True)
    proba = models.JSONField(null=True, blank=True)
    # The score at the full strength of the correction, which the compensation gate learns from
    # whatever strength was served (null when no correction was computed: empty memory, off).
    full_score = models.FloatField(null=True, blank=True)
    full_proba = models.JSONField(null=True, blank=True)
    label = models.SmallIntegerField(null=True, blank=True, help_text="Class index.")
    labeled_at = models.DateTimeField(null=True, blank=True)
    # The memory key computed at predict time (float32 little-endian), so feedback needs no second
    # forward pass; and the memory revision that served the prediction.
    key = models.BinaryField(null=True, blank=True)
    served_revision = models.BigIntegerField(null=True, blank=True)
    # The memory revision that took this event's label in; null while the label waits for the
    # compensation-update job (or when the event has no key).
    memory_revision = models.BigIntegerField(null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["deployment", "-event_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "external_id"], name="event_external_id_unique_per_deployment"
            ),
        ]
        indexes = [
            # Time-range reads (windows, replay sampling): WHERE deployment = ? AND event_time BETWEEN ...
            models.Index(fields=["deployment", "event_time"], name="event_deployment_time"),
            # Events per minute on the dashboard: WHERE deployment = ? AND received_at >= now - 5 min
            models.Index(fields=["deployment", "received_at"], name="event_deployment_received"),
            # Newly labeled events for compensation and windows: WHERE deployment = ? AND labeled_at > ?
            models.Index(
                fields=["deployment", "labeled_at"], name="event_deployment_labeled", condition=Q(label__isnull=False)
            ),
            # Labels waiting for the memory: WHERE deployment = ? AND label IS NOT NULL AND memory_revision IS NULL
            models.Index(
                fields=["deployment", "labeled_at"],
                name="event_pending_memory",
                condition=Q(label__isnull=False, memory_revision__isnull=True, key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}:{self.external_id}"


class ErrorSample(models.Model):
    """One entry of the persisted error memory: (key, label, base score) of a labeled event.

    Keys belong to the version that computed them, so each version has its own memory; rolling
    back to a version makes its samples the live memory again.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="error_samples")
    # Null for external deployments (one memory, keys from the client's model).
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="error_samples"
    )
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key = models.BinaryField(help_text="float32 little-endian vector")
    label = models.SmallIntegerField()
    base_score = models.FloatField()
    base_proba = models.JSONField(null=True, blank=True)
    revision = models.BigIntegerField(help_text="Memory revision that added this sample.")
    written_at = models.DateTimeField()
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["version", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["version", "event"], name="error_sample_once_per_version_event"),
            models.UniqueConstraint(
                fields=["deployment", "event"],
                condition=Q(version__isnull=True),
                name="error_sample_once_per_external_event",
            ),
        ]
        indexes = [
            # Runtime delta load: WHERE version = ? AND active AND revision > ?
            models.Index(fields=["version", "active", "revision"], name="errorsample_version_rev"),
            # External deployments and the samples list: WHERE deployment = ? ORDER BY revision DESC
            models.Index(fields=["deployment", "revision"], name="errorsample_deployment_rev"),
        ]

    def __str__(self) -> str:
        return f"sample {self.pk} of {self.version}"


class Window(models.Model):
    """A point of the adaptation curve: metrics of base and compensated scores over a time range."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="windows")
    version = models.ForeignKey(ModelVersion, null=True, on_delete=models.SET_NULL, related_name="windows")
    start = models.DateTimeField()
    end = models.DateTimeField()
    n_events = models.PositiveIntegerField(default=0)
    n_labeled = models.PositiveIntegerField(default=0)
    base_auc = models.FloatField(null=True, blank=True)
    compensated_auc = models.FloatField(null=True, blank=True)
    base_log_loss = models.FloatField(null=True, blank=True)
    compensated_log_loss = models.FloatField(null=True, blank=True)
    base_accuracy = models.FloatField(null=True, blank=True)
    compensated_accuracy = models.FloatField(null=True, blank=True)
    base_brier = models.FloatField(null=True, blank=True)
    compensated_brier = models.FloatField(null=True, blank=True)
    memory_size = models.PositiveIntegerField(default=0)
    memory_revision = models.BigIntegerField(default=0)
    # The window holds the events labeled in (labeled_from, labeled_to]; the next one starts at labeled_to.
    labeled_from = models.DateTimeField(null=True, blank=True)
    labeled_to = models.DateTimeField(null=True, blank=True)
    detector_signals = models.JSONField(default=dict, blank=True)
    # Calibrated alarms (docs/adaptation.md): the deployment-level drift status of the window, the
    # retrain trigger's CUSUM statistic on the compensated loss, and every alarm with its reason.
    drift_status = models.CharField(max_length=8, default="ok", blank=True)
    loss_cusum = models.FloatField(null=True, blank=True)
    alarms = models.JSONField(default=list, blank=True)
    # Label-free estimates from the scores alone (confidence-based performance estimation).
    estimated_base_auc = models.FloatField(null=True, blank=True)
    estimated_compensated_auc = models.FloatField(null=True, blank=True)
    estimated_base_accuracy = models.FloatField(null=True, blank=True)
    estimated_compensated_accuracy = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-end"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gte=models.F("start")), name="window_end_after_start"),
        ]
        indexes = [
            # Curves: WHERE deployment = ? AND end BETWEEN ? ORDER BY end
            models.Index(fields=["deployment", "end"], name="window_deployment_end"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.start:%Y-%m-%d %H:%M}..{self.end:%H:%M}"


class DriftMetric(models.Model):
    """One drift test of one column in one window, with its band."""

    class Level(models.TextChoices):
        OK = "ok", "OK"
        WARN = "warn", "Warning"
        DRIFT = "drift", "Drift"

    class ColumnKind(models.TextChoices):
        FEATURE = "feature", "Feature"
        PREDICTION = "prediction", "Prediction"
        LABEL = "label", "Label"
        ERROR = "error", "Error"

    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="drift_metrics")
    column = models.CharField(max_length=128)
    column_kind = models.CharField(max_length=16, choices=ColumnKind.choices, default=ColumnKind.FEATURE)
    method = models.CharField(max_length=32)
    statistic = models.FloatField()
    p_value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    level = models.CharField(max_length=8, choices=Level.choices)
    # Severity is statistic / threshold (1 is the drift boundary); importance is the column's share
    # of the model's permutation importance (None where unknown); psi is the population stability
    # index beside the main distance; histogram holds the reference and current distributions.
    severity = models.FloatField(null=True, blank=True)
    importance = models.FloatField(null=True, blank=True)
    psi = models.FloatField(null=True, blank=True)
    histogram = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["window", "column"]
        constraints = [
            models.UniqueConstraint(fields=["window", "column", "method"], name="drift_metric_once_per_window"),
        ]

    def __str__(self) -> str:
        return f"{self.column} {self.method}={self.statistic:.3g} ({self.level})"


class GateState(models.Model):
    """The compensation gate's evidence for one deployment (adaptive.ml.gate.CompensationGate).

    Written under the deployment's row lock by the compensation-update job, with the strength it
    implies copied to ``Deployment.compensation_strength`` for serving.
    """

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="gate_state")
    state = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"compensation gate of {self.deployment_id}"


class MonitorState(models.Model):
    """Streaming detector state and drift reference of one version (or of an external deployment).

    Kept per version so that rolling back to a version restores its detectors along with its memory.
    ``detectors`` holds, per error stream ("raw", "compensated"), the JSON states of its detector
    banks (see adaptive.services.monitoring.ErrorStreamDetectors and adaptive.ml.drift);
    ``reference`` is the drift reference sample when the version has no training profile (the
    first window it served).
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="monitor_states")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    detectors = models.JSONField(default=dict, blank=True)
    reference = models.JSONField(default=dict, blank=True)
    # The retrain trigger's CUSUM on the compensated loss (adaptive.ml.cusum.LossCusum.state_dict).
    cusum = models.JSONField(default=dict, blank=True)
    # Calibrated drift nulls of the reference's columns, "group/column/kind/size" -> [mean, std]
    # (adaptive.ml.drift.reference.DriftReference), so that a restarted worker need not redraw them.
    nulls = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "version"], name="monitor_state_once_per_version"),
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(version__isnull=True), name="monitor_state_once_per_external"
            ),
        ]

    def __str__(self) -> str:
        return f"monitor state of {self.deployment_id}:{self.version_id}"


class JobQuerySet(models.QuerySet["Job"]):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=Job.ACTIVE_STATUSES)


class Job(models.Model):
    """Background work (compensation update, drift scan, retrain, evaluation) and its progress."""

    class Kind(models.TextChoices):
        COMPENSATION = "compensation", "Compensation update"
        DRIFT_SCAN = "drift_scan", "Drift scan"
        RETRAIN = "retrain", "Retrain"
        EVALUATION = "evaluation", "Evaluation"
        PING = "ping", "Worker ping"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    device = models.CharField(max_length=32, blank=True)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Never two retrains at once for one deployment.
            models.UniqueConstraint(
                fields=["deployment"],
                condition=Q(kind="retrain", status__in=["queued", "running"]),
                name="one_active_retrain_per_deployment",
            ),
            # Coalescing: at most one queued compensation update and one queued window close per
            # deployment; feedback that finds one queued relies on it (it has not read labels yet).
            models.UniqueConstraint(
                fields=["deployment", "kind"],
                condition=Q(kind__in=["compensation", "drift_scan"], status="queued"),
                name="one_queued_update_per_deployment_kind",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_in_unit_interval"
            ),
        ]
        indexes = [
            # Jobs page and coalescing: WHERE deployment = ? AND kind = ? AND status IN (...)
            models.Index(fields=["deployment", "kind", "status"], name="job_deployment_kind_status"),
            models.Index(fields=["status", "created_at"], name="job_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"


class FlipReport(models.Model):
    """Live (old) vs candidate (new) on the same labeled events: accuracy and negative flips."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="flip_reports")
    old_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    new_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="flip_reports")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="flip_reports")
    n = models.PositiveIntegerField()
    old_accuracy = models.FloatField()
    new_accuracy = models.FloatField()
    old_auc = models.FloatField(null=True, blank=True)
    new_auc = models.FloatField(null=True, blank=True)
    nfr = models.FloatField()
    nfr_low = models.FloatField()
    nfr_high = models.FloatField()
    pfr = models.FloatField()
    pfr_low = models.FloatField()
    pfr_high = models.FloatField()
    nfi = models.FloatField(null=True, blank=True)
    relative_nfr = models.FloatField(null=True, blank=True)
    nfr_mc = models.FloatField(null=True, blank=True)
    disagreement = models.FloatField()
    mcnemar_p = models.FloatField()
    per_class = models.JSONField(default=list, blank=True)
    example_event_ids = models.JSONField(default=list, blank=True)
    gate_passed = models.BooleanField(null=True, blank=True)
    gate_reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["deployment", "created_at"], name="flipreport_deployment_created")]

    def __str__(self) -> str:
        return f"{self.old_version} -> {self.new_version}: NFR {self.nfr:.3%}"


class AuditEntry(models.Model):
    """Who (a user or the policy) did what to which deployment, from what to what, and why."""

    class Action(models.TextChoices):
        CREATE_DEPLOYMENT = "create_deployment", "Create deployment"
        UPDATE_SETTINGS = "update_settings", "Update settings"
        UPLOAD_VERSION = "upload_version", "Upload version"
        PROMOTE = "promote", "Promote"
        ROLLBACK = "rollback", "Roll back"
        RETRAIN = "retrain", "Retrain requested"
        PAUSE = "pause", "Pause adaptation"
        RESUME = "resume", "Resume adaptation"
        RESET_MEMORY = "reset_memory", "Reset memory"
        CREATE_KEY = "create_key", "Create ingestion key"
        REVOKE_KEY = "revoke_key", "Revoke ingestion key"
        CREATE_TOKEN = "create_token", "Create API token"
        REVOKE_TOKEN = "revoke_token", "Revoke API token"

    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=64, help_text="Username at the time, or 'policy' / 'system'.")
    action = models.CharField(max_length=32, choices=Action.choices)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"
        indexes = [
            # Audit log page: WHERE deployment = ? ORDER BY created_at DESC
            models.Index(fields=["deployment", "created_at"], name="audit_deployment_created"),
            models.Index(fields=["action", "created_at"], name="audit_action_created"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.deployment_id}"


class IngestionKey(models.Model):
    """A secret scoped to one deployment that may only call predict and feedback.

    Only a SHA-256 of the key is stored; the prefix finds the row without a scan.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="ingestion_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Requests per period (api.throttling), e.g. "1000/min"; empty: the INGESTION_KEY_RATE setting.
    rate = models.CharField(
        max_length=MAX_RATE_LENGTH,
        blank=True,
        default="",
        validators=[validate_rate],
        help_text='Requests per period, e.g. "1000/min" or "50/10s"; empty: the INGESTION_KEY_RATE setting.',
    )

    class Meta:
        ordering = ["deployment", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) for {self.deployment_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        """Neither revoked nor expired (now)."""
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        )


class ApiToken(models.Model):
    """A user's API token (``Authorization: Token <token>``), with an optional expiry; revocable.

    Only a SHA-256 of the token is stored, as for ingestion keys: the raw token is shown once, at
    creation. The prefix (public, part of the token) finds the row without a scan.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64)
    # A default, not auto_now_add: tokens migrated from plain-text rows keep their creation time.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written at most once a minute per token (adaptive.services.tokens.LAST_USED_RESOLUTION).
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["user", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("created_at")),
                name="api_token_expires_after_creation",
            ),
        ]
        indexes = [
            # Authentication: WHERE prefix = ? (then the hash is compared in constant time).
            models.Index(fields=["prefix"], name="api_token_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user_id}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
