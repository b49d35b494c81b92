"""Reads of background jobs, with the deployment's slug and the requester's name annotated."""

from __future__ import annotations

from django.db.models import F, QuerySet
from django.http import Http404

from adaptive.models import Job


def jobs() -> QuerySet[Job]:
    """Every job, newest first; slug and username come from the join, not from loaded objects."""
    return Job.objects.annotate(
        deployment_slug=F("deployment__slug"), requested_by_username=F("requested_by__username")
    ).order_by("-created_at", "-id")


def get_job(pk: int) -> Job:
    """One job, annotated like :func:`jobs`; Http404 when there is none."""
    job = jobs().filter(pk=pk).first()
    if job is None:
        raise Http404(f"no job {pk}")
    return job
