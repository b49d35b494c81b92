"""Django admin pages for every model, with filters and search where operators need them."""

from __future__ import annotations

from django.contrib import admin

from adaptive import models as m


@admin.register(m.Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "task",
        "status",
        "live_version",
        "memory_kind",
        "memory_revision",
        "retrain_policy",
    ]
    list_filter = ["task", "status", "memory_kind", "retrain_policy", "compensation_enabled"]
    search_fields = ["slug", "name", "description"]
    readonly_fields = ["live_version", "memory_revision", "created_at", "updated_at", "created_by"]
    fieldsets = [
        (
            None,
            {"fields": ["slug", "name", "description", "task", "classes", "feature_schema", "status", "live_version"]},
        ),
        (
            "Compensation",
            {
                "fields": [
                    "compensation_enabled",
                    "memory_kind",
                    "memory_capacity",
                    "memory_k",
                    "compensation_lambda",
                    "compensation_gamma",
                    "compensation_tau",
                    "memory_revision",
                ]
            },
        ),
        ("Monitoring", {"fields": ["window_events", "window_minutes", "drift_p_value", "drift_distance"]}),
        (
            "Retraining and gates",
            {"fields": ["retrain_policy", "retrain_cooldown_minutes", "gate_min_metric_delta", "gate_max_nfr"]},
        ),
        ("History", {"fields": ["created_at", "updated_at", "created_by"]}),
    ]


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "deployment", "number", "status", "origin", "architecture", "parent", "created_at"]
    list_filter = ["status", "origin", "architecture", "deployment"]
    search_fields = ["deployment__slug", "weights_sha256", "notes"]
    list_select_related = ["deployment", "parent"]
    raw_id_fields = ["parent", "origin_job"]
    # Weights are checked on upload through the API; the admin never edits them.
    readonly_fields = ["weights_path", "weights_sha256", "weights_size", "created_at", "created_by"]


@admin.register(m.Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["deployment", "version", "kind", "started_at", "ended_at", "actor_label", "memory_revision"]
    list_filter = ["kind", "deployment"]
    search_fields = ["deployment__slug", "reason", "actor_label"]
    list_select_related = ["deployment", "version"]
    date_hierarchy = "started_at"


@admin.register(m.Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["external_id", "deployment", "event_time", "version", "base_score", "score", "label"]
    list_filter = ["deployment"]
    # Exact id lookups use the (deployment, external_id) unique index; no LIKE scans over events.
    search_fields = ["=external_id"]
    list_select_related = ["deployment", "version"]
    raw_id_fields = ["version"]
    show_full_result_count = False


@admin.register(m.ErrorSample)
class ErrorSampleAdmin(admin.ModelAdmin):
    list_display = ["pk", "deployment", "version", "label", "base_score", "revision", "active", "written_at"]
    list_filter = ["active", "deployment"]
    list_select_related = ["deployment", "version"]
    raw_id_fields = ["event", "version"]
    show_full_result_count = False


class DriftMetricInline(admin.TabularInline):
    model = m.DriftMetric
    extra = 0


@admin.register(m.Window)
class WindowAdmin(admin.ModelAdmin):
    list_display = ["deployment", "start", "end", "n_labeled", "base_auc", "compensated_auc", "memory_size"]
    list_filter = ["deployment"]
    list_select_related = ["deployment"]
    date_hierarchy = "end"
    inlines = [DriftMetricInline]


@admin.register(m.DriftMetric)
class DriftMetricAdmin(admin.ModelAdmin):
    list_display = ["window", "column", "column_kind", "method", "statistic", "p_value", "level"]
    list_filter = ["level", "column_kind", "method"]
    search_fields = ["column"]
    raw_id_fields = ["window"]


@admin.register(m.Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "deployment", "status", "progress", "device", "created_at", "finished_at"]
    list_filter = ["kind", "status", "deployment"]
    search_fields = ["message", "celery_task_id"]
    list_select_related = ["deployment"]


@admin.register(m.FlipReport)
class FlipReportAdmin(admin.ModelAdmin):
    list_display = ["deployment", "old_version", "new_version", "n", "nfr", "pfr", "gate_passed", "created_at"]
    list_filter = ["gate_passed", "deployment"]
    list_select_related = ["deployment", "old_version", "new_version"]


@admin.register(m.AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "deployment", "actor_label", "action", "from_version", "to_version", "reason"]
    list_filter = ["action", "deployment"]
    search_fields = ["actor_label", "reason"]
    list_select_related = ["deployment", "from_version", "to_version"]
    date_hierarchy = "created_at"

    # The audit log is append-only, in the admin too.
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(m.IngestionKey)
class IngestionKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "deployment", "prefix", "created_at", "revoked_at"]
    list_filter = ["deployment"]
    search_fields = ["name", "prefix"]
    # Keys are created through the API or `manage.py create_ingestion_key`, which show the secret once.
    readonly_fields = ["prefix", "key_hash", "created_at", "created_by"]

    def has_add_permission(self, request: object) -> bool:
        return False
