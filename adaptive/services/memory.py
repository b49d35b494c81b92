"""The persisted error memory: labeled events become ErrorSamples, and the revision moves on.

``apply_pending`` is the compensation-update job's work. In one transaction, under a lock on the
deployment row, it turns labeled events whose label is not yet in the memory into ErrorSamples
(the key computed at predict time, the label, the base score), marks those events with the new
revision, evicts the oldest samples past the capacity, and bumps ``Deployment.memory_revision``.
Serving processes see the new revision on their next request and read only the new samples
(adaptive.runtime). Running it twice is harmless: the second run finds nothing pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from django.db import transaction
from django.utils import timezone

from adaptive.models import Deployment, ErrorSample, Event

# Labels moved per transaction: keeps each lock short while a backlog drains.
APPLY_BATCH: Final = 5000


@dataclass(frozen=True)
class ApplyResult:
    applied: int
    evicted: int
    revision: int
    paused: bool = False


def pending_labels(deployment: Deployment) -> int:
    """Labeled events whose label has not reached the memory yet."""
    return Event.objects.filter(
        deployment=deployment, label__isnull=False, memory_revision__isnull=True, key__isnull=False
    ).count()


def apply_pending(deployment_id: int, *, limit: int = APPLY_BATCH) -> ApplyResult:
    """Move up to ``limit`` pending labels into the memory as one new revision."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        if deployment.status != Deployment.Status.ACTIVE:
            # Paused (or archived): adaptation stops, labels wait in the events.
            return ApplyResult(0, 0, deployment.memory_revision, paused=True)
        # The filter guarantees label and key are set; `or` only narrows the types.
        rows = list(
            Event.objects.filter(
                deployment=deployment, label__isnull=False, memory_revision__isnull=True, key__isnull=False
            )
            .order_by("labeled_at", "id")
            .values_list("id", "version_id", "key", "label", "base_score", "base_proba")[:limit]
        )
        if not rows:
            return ApplyResult(0, 0, deployment.memory_revision)
        revision = deployment.memory_revision + 1
        now = timezone.now()
        ErrorSample.objects.bulk_create(
            [
                ErrorSample(
                    deployment_id=deployment.pk,
                    version_id=version_id,
                    event_id=event_id,
                    key=bytes(key or b""),
                    label=int(label or 0),
                    base_score=base_score,
                    base_proba=base_proba,
                    revision=revision,
                    written_at=now,
                )
                for event_id, version_id, key, label, base_score, base_proba in rows
            ],
            batch_size=1000,
        )
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), 900):
            Event.objects.filter(pk__in=ids[start : start + 900]).update(memory_revision=revision)
        evicted = 0
        for version_id in {r[1] for r in rows}:
            evicted += _evict(deployment, version_id, revision)
        Deployment.objects.filter(pk=deployment.pk).update(memory_revision=revision)
    return ApplyResult(len(rows), evicted, revision)


def _evict(deployment: Deployment, version_id: int | None, revision: int) -> int:
    """Deactivate the oldest samples of a version past the deployment's capacity."""
    active = ErrorSample.objects.filter(deployment=deployment, version_id=version_id, active=True)
    excess = active.count() - deployment.memory_capacity
    if excess <= 0:
        return 0
    oldest = list(active.order_by("revision", "id").values_list("id", flat=True)[:excess])
    for start in range(0, len(oldest), 900):
        ErrorSample.objects.filter(pk__in=oldest[start : start + 900]).update(active=False)
    return len(oldest)
