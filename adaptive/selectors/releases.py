"""Reads of the release history: the timeline, what was live at an instant, and flip reports."""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, Q, QuerySet
from django.http import Http404

from adaptive.models import Deployment, FlipReport, Release


def releases(deployment: Deployment) -> QuerySet[Release]:
    """The deployment's releases, newest first, with ``version_number`` annotated.

    The (deployment, started_at) index, read backwards; the version row is not loaded (it carries
    the training profile).
    """
    return (
        Release.objects.filter(deployment=deployment)
        .annotate(version_number=F("version__number"))
        .order_by("-started_at", "-id")
    )


def release_live_at(deployment: Deployment, at: datetime) -> Release | None:
    """The release with ``started_at <= at < ended_at`` (or still open); None before the first release."""
    return releases(deployment).filter(started_at__lte=at).filter(Q(ended_at__isnull=True) | Q(ended_at__gt=at)).first()


def first_release_started_at(deployment: Deployment) -> datetime | None:
    started: datetime | None = (
        Release.objects.filter(deployment=deployment)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return started


def with_version_number(release: Release) -> Release:
    """``release`` with ``version_number`` set from the database, without loading its version row."""
    release.version_number = (  # type: ignore[attr-defined]
        Release.objects.filter(pk=release.pk).values_list("version__number", flat=True).get()
    )
    return release


def flip_reports(deployment: Deployment) -> QuerySet[FlipReport]:
    """The deployment's flip reports, newest first, with ``old_number`` and ``new_number`` annotated."""
    return (
        FlipReport.objects.filter(deployment=deployment)
        .annotate(old_number=F("old_version__number"), new_number=F("new_version__number"))
        .order_by("-created_at", "-id")
    )


def get_flip_report(deployment: Deployment, pk: int) -> FlipReport:
    """One of the deployment's flip reports; Http404 when it has none with this id."""
    report = flip_reports(deployment).filter(pk=pk).first()
    if report is None:
        raise Http404(f"deployment {deployment.slug!r} has no flip report {pk}")
    return report
