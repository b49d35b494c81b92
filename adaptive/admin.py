"""Django admin pages for every model, with filters and search where operators need them.

Deployments, versions and jobs carry the operator's actions (pause, resume, reset memory, roll back,
promote, cancel). They call the same services as the REST API, with the admin user as the actor, and
report each result as a message: a refused action (a Conflict, a bad input) is an error message on
the list page, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from adaptive import models as m
from adaptive.errors import Conflict, InvalidInput
from adaptive.permissions import admin_site_permission
from adaptive.services import deployments, jobs, releases, retraining, tokens
from adaptive.services.deployments import SETTING_GROUPS, SETTINGS

# Members of the admin group reach Django admin without being staff (see adaptive.permissions).
admin.site.has_permission = admin_site_permission  # type: ignore[method-assign]

# The reason recorded on releases, audit entries and job messages for actions taken here.
ADMIN_REASON = "admin action"


def _each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    act: Callable[[Any], str],
) -> None:
    """Run ``act`` on every object and show its message; a refused action becomes an error message."""
    for obj in objects:
        try:
            message = act(obj)
        except (Conflict, InvalidInput) as exc:
            model_admin.message_user(request, f"{obj}: {exc}", level=messages.ERROR)
        else:
            model_admin.message_user(request, f"{obj}: {message}", level=messages.SUCCESS)


# What the admin's deployment form edits besides the adaptation settings.
DEPLOYMENT_FIELDS = ["slug", "name", "description", "task", "classes", "feature_schema", "status"]


class DeploymentForm(forms.ModelForm):
    """The admin's deployment form: the settings' bounds are the domain's, as for the API."""

    class Meta:
        model = m.Deployment
        fields = [*DEPLOYMENT_FIELDS, *SETTINGS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            deployments.check_bounds({name: cleaned[name] for name in SETTINGS if name in cleaned})
        except InvalidInput as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.reason)
        return cleaned


@admin.register(m.Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    form = DeploymentForm
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
            {"fields": [*DEPLOYMENT_FIELDS, "live_version"]},
        ),
        # The adaptation settings by topic, as the service defines them; the memory's revision shows
        # next to its settings.
        ("Compensation", {"fields": [*SETTING_GROUPS["Compensation"], "memory_revision"]}),
        ("Monitoring", {"fields": list(SETTING_GROUPS["Monitoring"])}),
        ("Retraining and gates", {"fields": list(SETTING_GROUPS["Retraining and gates"])}),
        ("History", {"fields": ["created_at", "updated_at", "created_by"]}),
    ]
    actions = ["pause", "resume", "reset_memory", "roll_back", "retrain"]

    def get_readonly_fields(self, request: HttpRequest, obj: m.Deployment | None = None) -> list[str]:
        # An existing deployment's status changes through pause/resume, which are audited.
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "status"] if obj is not None else readonly

    def save_model(self, request: HttpRequest, obj: m.Deployment, form: forms.ModelForm, change: bool) -> None:
        """Settings changes go through the service (audited with old and new values, like the API's)."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in SETTINGS}
        others = [name for name in form.changed_data if name not in SETTINGS]
        if others:
            obj.save(update_fields=[*others, "updated_at"])
        if changed:
            deployments.update_settings(deployment=obj, changes=changed, actor=request.user, reason=ADMIN_REASON)

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[m.Deployment], paused: bool) -> None:
        target = m.Deployment.Status.PAUSED if paused else m.Deployment.Status.ACTIVE

        def act(deployment: m.Deployment) -> str:
            before = deployment.status
            releases.set_paused(deployment=deployment, paused=paused, actor=request.user, reason=ADMIN_REASON)
            return f"already {target}" if before == target else f"adaptation {'paused' if paused else 'resumed'}"

        _each(self, request, queryset, act)

    @admin.action(description="Pause adaptation of the selected deployments", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[m.Deployment]) -> None:
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume adaptation of the selected deployments", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[m.Deployment]) -> None:
        self._set_paused(request, queryset, paused=False)

    @admin.action(description="Reset the live error memory of the selected deployments", permissions=["change"])
    def reset_memory(self, request: HttpRequest, queryset: QuerySet[m.Deployment]) -> None:
        def act(deployment: m.Deployment) -> str:
            cleared = releases.reset_memory(deployment=deployment, actor=request.user, reason=ADMIN_REASON)
            return f"memory reset, {cleared} samples cleared"

        _each(self, request, queryset, act)

    @admin.action(description="Roll back the selected deployments to their previous release", permissions=["change"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[m.Deployment]) -> None:
        def act(deployment: m.Deployment) -> str:
            release = releases.rollback(deployment=deployment, actor=request.user, reason=ADMIN_REASON)
            return f"rolled back, v{release.version.number} is live"

        _each(self, request, queryset, act)

    @admin.action(description="Retrain the live version of the selected deployments now", permissions=["change"])
    def retrain(self, request: HttpRequest, queryset: QuerySet[m.Deployment]) -> None:
        # The service queues the retrain task itself, once the job row is committed.
        def act(deployment: m.Deployment) -> str:
            job = retraining.request_retrain(deployment=deployment, actor=request.user, reason=ADMIN_REASON)
            return f"retrain queued as job {job.pk}"

        _each(self, request, queryset, act)


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "deployment", "number", "status", "origin", "architecture", "parent", "created_at"]
    list_filter = ["status", "origin", "architecture", "deployment"]
    search_fields = ["deployment__slug", "weights_sha256", "notes"]
    list_select_related = ["deployment", "parent"]
    raw_id_fields = ["parent", "origin_job"]
    # Weights are checked on upload through the API; the admin never edits them.
    readonly_fields = ["weights_path", "weights_sha256", "weights_size", "created_at", "created_by"]
    actions = ["promote"]

    @admin.action(description="Promote the selected version (select one)", permissions=["change"])
    def promote(self, request: HttpRequest, queryset: QuerySet[m.ModelVersion]) -> None:
        selected = list(queryset.select_related("deployment")[:2])
        if len(selected) != 1:
            self.message_user(request, "Select exactly one version to promote.", level=messages.ERROR)
            return

        def act(version: m.ModelVersion) -> str:
            # The promotion warms the version's memory before the switch: nothing to queue after it.
            requested_at = timezone.now()
            release = releases.promote(
                deployment=version.deployment, number=version.number, actor=request.user, reason=ADMIN_REASON
            )
            if release.started_at < requested_at:
                return "already live"
            return "promoted, now live"

        _each(self, request, selected, act)


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
    actions = ["cancel"]

    @admin.action(description="Cancel the selected jobs (queued or running)", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[m.Job]) -> None:
        def act(job: m.Job) -> str:
            jobs.cancel(job, actor=request.user, reason=ADMIN_REASON)
            return "cancelled"

        _each(self, request, queryset, act)


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


@admin.register(m.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Users' API tokens: only hashes are stored, so nothing here can show a secret. Tokens are created
    through the API or ``manage.py create_token``; revoking goes through the service (audited)."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["user", "name", "prefix", "key_hash", "created_at", "expires_at", "revoked_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: object) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens (audited)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[m.ApiToken]) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            tokens.revoke_token(token=token, actor=request.user, reason="revoked in the admin")
            count += 1
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)
