"""The pages. Each renders a shell with what only the server knows cheaply (the deployment, its
versions for the dialogs, the settings form); the page's script fills and refreshes the rest from
the REST API, so a page costs a handful of indexed reads whatever the traffic."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from adaptive.models import AuditEntry, Job, ModelVersion
from adaptive.roles import Role
from adaptive.selectors.audit import actor_labels
from adaptive.selectors.deployments import deployment_slugs, get_deployment
from adaptive.selectors.registry import ingestion_keys, version_rows
from dashboard.access import page_context, viewer_required
from dashboard.forms import SettingsForm


@viewer_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", page_context(request, "overview"))


@viewer_required
def deployment(request: HttpRequest, slug: str) -> HttpResponse:
    row = get_deployment(slug, with_live_version=True)
    context = page_context(request, "overview", deployment=row, versions=version_rows(row))
    context["settings_form"] = SettingsForm(instance=row, read_only=not context["can_act"])
    # Ingestion keys (never their secrets, which are not stored) for admins, who may revoke them.
    context["show_keys"] = request.role >= Role.ADMIN  # type: ignore[attr-defined]
    if context["show_keys"]:
        keys = ingestion_keys(row, usable_first=True)
        context["keys"] = list(keys.values("id", "name", "prefix", "created_at", "revoked_at"))
    return render(request, "dashboard/deployment.html", context)


@viewer_required
def versions(request: HttpRequest, slug: str) -> HttpResponse:
    row = get_deployment(slug, with_live_version=True)
    rows = version_rows(row)
    # The comparison form starts on "live vs the newest candidate" (or vs the newest other version).
    others = [v for v in rows if v["status"] != ModelVersion.Status.LIVE]
    candidates = [v for v in others if v["status"] == ModelVersion.Status.CANDIDATE]
    compare_new = (candidates or others or rows or [{"number": None}])[0]["number"]
    context = page_context(request, "overview", deployment=row, versions=rows, compare_new=compare_new)
    return render(request, "dashboard/versions.html", context)


@viewer_required
def jobs(request: HttpRequest) -> HttpResponse:
    context = page_context(
        request,
        "jobs",
        deployments=deployment_slugs(),
        kinds=[choice for choice in Job.Kind.choices if choice[0] != Job.Kind.PING],
        statuses=Job.Status.choices,
    )
    return render(request, "dashboard/jobs.html", context)


@viewer_required
def audit(request: HttpRequest) -> HttpResponse:
    context = page_context(
        request,
        "audit",
        deployments=deployment_slugs(),
        actors=actor_labels(),
        actions=AuditEntry.Action.choices,
        selected={name: request.GET.get(name, "") for name in ("deployment", "actor", "action")},
    )
    return render(request, "dashboard/audit.html", context)
