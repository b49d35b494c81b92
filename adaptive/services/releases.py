"""Promotion, rollback, pause/resume and memory reset: the operator's controls (docs/design.md).

Each switch is one short transaction under a lock on the deployment row, so a rollback racing a
promotion ends in one consistent state: whichever commits second sees the first's result. The
live version switches, the open Release closes and a new one opens, and an AuditEntry records the
actor and the reason. Error memories and detector states belong to versions (ErrorSample.version,
MonitorState.version), so switching the live version switches them too: nothing is copied, and a
rollback is instant. Serving processes read the deployment row per request and pick up the switch
on their next call; a process that served the restored version before still holds its memory.

Warm, then switch: ``promote`` first gives the version the memory it would hold had it served
(``memory.warm``: the newest labeled events re-embedded with its model), outside the switch's
transaction, so the first prediction after the switch is already compensated. A candidate that
passed its gate was pre-warmed by its evaluation, so this is a top-up with the labels since. Every
entry point (API, dashboard, admin, the auto policy) gets it by calling ``promote``.

The lock is ``FOR NO KEY UPDATE`` (``no_key=True``): it orders the controls and memory writes but
lets predict and feedback insert events that reference the deployment meanwhile (a plain
``FOR UPDATE`` blocks them in PostgreSQL's foreign-key check).
"""

from __future__ import annotations

from typing import Any, Final

from django.db import transaction
from django.utils import timezone

from adaptive.errors import Conflict, InvalidInput
from adaptive.models import AuditEntry, Deployment, ErrorSample, ModelVersion, Release
from adaptive.services import audit, memory

# A warm-up pass that wrote more samples than this took long enough (about 0.1 s per 1,000 on two
# cores) for new labels to arrive meanwhile: promote goes again, up to MAX_WARM_PASSES, so that
# the switch finds the memory current. A pre-warmed candidate needs one short pass.
TOP_UP_AGAIN_ABOVE: Final = 1000
MAX_WARM_PASSES: Final = 3


def _locked(deployment: Deployment) -> Deployment:
    """The deployment row, locked (no key), with its live version read after the lock.

    Not a select_related: when PostgreSQL waits for the lock and re-reads the row, the joined
    version row would still be the one from before the wait (a stale live version).
    """
    locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
    live_id = locked.live_version_id
    locked.live_version = ModelVersion.objects.filter(pk=live_id).first() if live_id is not None else None
    return locked


def _switch(
    deployment: Deployment, version: ModelVersion, *, kind: str, actor: Any, reason: str, label: str | None
) -> Release:
    """Make ``version`` live on the locked ``deployment``: statuses, Release rows, audit entry."""
    previous = deployment.live_version
    now = timezone.now()
    if previous is not None:
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.RETIRED)
    Release.objects.filter(deployment=deployment, ended_at__isnull=True).update(ended_at=now)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.LIVE)
    Deployment.objects.filter(pk=deployment.pk).update(live_version=version, updated_at=now)
    deployment.live_version = version
    release = Release.objects.create(
        deployment=deployment,
        version=version,
        memory_revision=deployment.memory_revision,
        kind=kind,
        started_at=now,
        actor=audit.user_of(actor),
        actor_label=label or audit.actor_label(actor),
        reason=reason,
    )
    audit.record(
        action=AuditEntry.Action.PROMOTE if kind == Release.Kind.PROMOTION else AuditEntry.Action.ROLLBACK,
        deployment=deployment,
        actor=actor,
        label=label,
        reason=reason,
        from_version=previous,
        to_version=version,
        details={"release": release.pk, "memory_revision": deployment.memory_revision},
    )
    return release


def _version(deployment: Deployment, number: Any, field: str = "version") -> ModelVersion:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidInput(field, "required, a version number")
    version = ModelVersion.objects.filter(deployment=deployment, number=number).first()
    if version is None:
        raise InvalidInput(field, f"deployment {deployment.slug!r} has no version {number}")
    return version


def promote(*, deployment: Deployment, number: int, actor: Any, reason: str, label: str | None = None) -> Release:
    """Warm the version's memory, then put it live. Promoting the live version again is a no-op.

    The warm-up runs before the switch's transaction. Called inside a transaction (the evaluation
    promotes in the one that writes its report), it runs in that transaction instead; the caller
    then pre-warms first, so that what remains is a small top-up.
    """
    _warm_before_switch(deployment, number, label)
    with transaction.atomic():
        locked = _locked(deployment)
        version = _version(locked, number)
        if version.pk == locked.live_version_id:
            release = Release.objects.get(deployment=locked, ended_at__isnull=True)
            return release
        if version.status == ModelVersion.Status.REJECTED and label == "policy":
            raise Conflict(f"version {number} was rejected by its gates; only an operator can promote it")
        return _switch(locked, version, kind=Release.Kind.PROMOTION, actor=actor, reason=reason, label=label)


def _warm_before_switch(deployment: Deployment, number: Any, label: str | None) -> None:
    """Top the version's memory up to the newest labeled events, unless promote will refuse or no-op."""
    version = _version(deployment, number)
    current = Deployment.objects.filter(pk=deployment.pk).values_list("live_version_id", "serving").first()
    if current is None or current[1] == Deployment.Serving.EXTERNAL or current[0] == version.pk:
        return
    if version.status == ModelVersion.Status.REJECTED and label == "policy":
        return  # refused below
    for _ in range(MAX_WARM_PASSES):
        if memory.warm(deployment, version).written <= TOP_UP_AGAIN_ABOVE:
            break


def rollback(*, deployment: Deployment, actor: Any, reason: str, number: int | None = None) -> Release:
    """Put back the version live before the current release (or version ``number``), with its memory."""
    with transaction.atomic():
        locked = _locked(deployment)
        if number is None:
            current = Release.objects.filter(deployment=locked, ended_at__isnull=True).first()
            earlier = (
                Release.objects.filter(deployment=locked)
                .exclude(version_id=locked.live_version_id)
                .filter(started_at__lte=current.started_at if current else timezone.now())
                .order_by("-started_at")
                .select_related("version")
                .first()
            )
            if earlier is None:
                raise Conflict("there is no earlier release to roll back to")
            version = earlier.version
        else:
            version = _version(locked, number)
            if version.pk == locked.live_version_id:
                raise Conflict(f"version {number} is already live")
        return _switch(locked, version, kind=Release.Kind.ROLLBACK, actor=actor, reason=reason, label=None)


def set_paused(*, deployment: Deployment, paused: bool, actor: Any, reason: str) -> Deployment:
    """Pause or resume adaptation: while paused, serving goes on and labels wait for the memory."""
    target = Deployment.Status.PAUSED if paused else Deployment.Status.ACTIVE
    with transaction.atomic():
        locked = _locked(deployment)
        if locked.status == Deployment.Status.ARCHIVED:
            raise Conflict("the deployment is archived")
        if locked.status == target:
            return locked
        Deployment.objects.filter(pk=locked.pk).update(status=target, updated_at=timezone.now())
        locked.status = target
        audit.record(
            action=AuditEntry.Action.PAUSE if paused else AuditEntry.Action.RESUME,
            deployment=locked,
            actor=actor,
            reason=reason,
        )
    return locked


def reset_memory(*, deployment: Deployment, actor: Any, reason: str) -> int:
    """Empty the live version's error memory (samples are kept, inactive); returns how many."""
    with transaction.atomic():
        locked = _locked(deployment)
        cleared = ErrorSample.objects.filter(deployment=locked, version_id=locked.live_version_id, active=True).update(
            active=False
        )
        revision = locked.memory_revision + 1
        epoch = locked.memory_epoch + 1
        Deployment.objects.filter(pk=locked.pk).update(memory_revision=revision, memory_epoch=epoch)
        audit.record(
            action=AuditEntry.Action.RESET_MEMORY,
            deployment=locked,
            actor=actor,
            reason=reason,
            to_version=locked.live_version,
            details={"cleared": cleared, "revision": revision},
        )
    return cleared
