"""Reads of the model registry: a deployment's versions and ingestion keys."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from adaptive.models import Deployment, IngestionKey, ModelVersion

# What a version list never shows of a version's parent: its training profile (thousands of values
# per column), preprocessing, key mean and free-form fields.
_HEAVY = ("profile", "preprocessing", "key_mean", "config", "metrics", "notes")


def versions(deployment: Deployment) -> QuerySet[ModelVersion]:
    """The deployment's versions, newest first, without any training profile.

    The parent is shown by number only, so none of its heavy fields is loaded either.
    """
    return (
        ModelVersion.objects.filter(deployment=deployment)
        .select_related("deployment", "parent")
        .defer("profile", "deployment__feature_schema", *(f"parent__{field}" for field in _HEAVY))
    )


def get_version(slug: str, number: int) -> ModelVersion:
    """Version ``number`` of deployment ``slug``; Http404 when either does not exist."""
    version = (
        ModelVersion.objects.select_related("deployment", "parent").filter(deployment__slug=slug, number=number).first()
    )
    if version is None:
        raise Http404(f"deployment {slug!r} has no version {number}")
    return version


def version_rows(deployment: Deployment) -> list[dict[str, Any]]:
    """Number, parent's number, status, origin, architecture, training range and creation time of
    every version, newest first: what the lineage table shows before its script loads."""
    rows = ModelVersion.objects.filter(deployment=deployment).order_by("-number")
    fields = ("number", "parent__number", "status", "origin", "architecture", "data_start", "data_end", "created_at")
    return [dict(row) for row in rows.values(*fields)]


def ingestion_keys(deployment: Deployment, *, usable_first: bool = False) -> QuerySet[IngestionKey]:
    """The deployment's ingestion keys by name, or usable ones first (no secret is stored, only hashes)."""
    rows = IngestionKey.objects.filter(deployment=deployment)
    return rows.order_by("revoked_at", "name") if usable_first else rows


def get_ingestion_key(slug: str, pk: int) -> IngestionKey:
    """Key ``pk`` of deployment ``slug``; Http404 when that deployment has no such key."""
    key = IngestionKey.objects.select_related("deployment").filter(deployment__slug=slug, pk=pk).first()
    if key is None:
        raise Http404(f"no ingestion key {pk} of deployment {slug!r}")
    return key
