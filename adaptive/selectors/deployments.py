"""Finding a deployment: the one lookup every entry point uses, and the small reads about its state."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from adaptive.errors import InvalidInput
from adaptive.models import Deployment


def get_deployment(slug: str, *, with_live_version: bool = False) -> Deployment:
    """The deployment with this slug, archived ones included; ``Http404`` naming the slug if there is none.

    Http404 because each web entry point answers it in its own way: the REST API as a JSON 404 with
    this message, the dashboard as its HTML page. ``with_live_version`` joins the live version into
    the same query (the ingestion hot path scores with it), without its training profile, which
    only drift monitoring reads and which holds thousands of values per column.
    """
    rows: QuerySet[Deployment] = Deployment.objects.all()
    if with_live_version:
        rows = rows.select_related("live_version").defer("live_version__profile")
    deployment = rows.filter(slug=slug).first()
    if deployment is None:
        raise Http404(f"no deployment {slug!r}")
    return deployment


def deployment_pk_for_filter(slug: str, *, field: str = "deployment") -> int:
    """The pk of the deployment a list is filtered by; InvalidInput naming ``field`` when there is none.

    A typo in a filter must not read as an empty list ("no jobs", "nothing happened").
    """
    pk = Deployment.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if pk is None:
        raise InvalidInput(field, f"no deployment {slug!r}")
    return int(pk)


def deployment_slugs() -> list[str]:
    """Every deployment's slug, for the filters of the dashboard's lists."""
    return list(Deployment.objects.order_by("slug").values_list("slug", flat=True))


def deployment_state(deployment: Deployment) -> dict[str, Any]:
    """Status, live version number and memory revision, read fresh: what the next request sees."""
    row = Deployment.objects.filter(pk=deployment.pk).values("status", "live_version__number", "memory_revision").get()
    return {
        "deployment": deployment.slug,
        "status": row["status"],
        "live_version": row["live_version__number"],
        "memory_revision": row["memory_revision"],
    }


def live_version_state(deployment: Deployment) -> dict[str, Any]:
    """The live version's number and status, read fresh (after an action's commit)."""
    live = Deployment.objects.filter(pk=deployment.pk).values("live_version__number", "live_version__status").get()
    return {"number": live["live_version__number"], "status": live["live_version__status"]}
