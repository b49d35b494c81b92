"""The slow loop's gate: compare two versions on the same labeled events (docs/design.md).

``request_evaluation`` queues an evaluation Job for any two versions of a deployment (an
operator's on-demand comparison, or the retrain task's check of its candidate against the live
version it started from). ``run_evaluation`` is the job's work: it scores both versions' *base*
models (compensation is per version and would blur the comparison) on the same labeled events,
computes the flip report and the gate, and writes one FlipReport row.

Which events: for a retrained candidate, exactly the holdout its round never trained on (stored in
``metrics["holdout"]`` of the candidate); on demand, the ``n_events`` most recent labeled events.

Only the evaluation a retrain asked for acts on its verdict: a candidate that fails its gate becomes
``rejected``; one that passes under ``retrain_policy == "auto"`` is promoted by the policy, in the
same transaction as its report, so an evaluation killed half-way neither promotes nor leaves a
report without its consequence. On-demand comparisons only report.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import torch
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from adaptive import runtime
from adaptive.errors import Conflict, InvalidInput
from adaptive.ml.flips import FlipReport as FlipMetrics
from adaptive.ml.flips import evaluate_gate, flip_report
from adaptive.ml.preprocessing import RowError
from adaptive.models import Deployment, Event, FlipReport, Job, ModelVersion
from adaptive.services import audit, dispatch, memory, releases
from adaptive.services.retraining import Cancelled, JobReporter, holdout_events

# On-demand comparisons score this many of the newest labeled events unless asked otherwise.
DEFAULT_EVENTS: Final = 2000
MAX_EVENTS: Final = 200_000
# Rows per forward pass; the job's heartbeat is written between chunks.
SCORE_CHUNK: Final = 4096
# The gate compares this metric (new minus old) with the deployment's gate_min_metric_delta.
GATE_METRIC: Final = "auc"


class EvaluationError(Exception):
    """The comparison cannot be made (no labeled events, a version gone, a row that no longer encodes)."""


def request_evaluation(
    *,
    deployment: Deployment,
    old_number: Any,
    new_number: Any,
    actor: Any,
    params: Any = None,
    retrain_job: Job | None = None,
) -> Job:
    """Queue a comparison of version ``old_number`` (the reference) with ``new_number``.

    ``params`` may set ``n_events`` (on demand: how many of the newest labeled events to score).
    ``retrain_job`` is the retrain that produced ``new_number``: the evaluation then uses that
    round's holdout and acts on the gate (reject, or promote under the auto policy).
    """
    if deployment.serving == Deployment.Serving.EXTERNAL:
        raise Conflict("this deployment's model is served elsewhere: there are no versions to compare")
    old = _version(deployment, old_number, "old")
    new = _version(deployment, new_number, "new")
    if old.pk == new.pk:
        raise InvalidInput("new", "must differ from old")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput("params", "must be a JSON object")
    unknown = sorted(set(params) - {"n_events"})
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}", "unknown parameter; allowed: n_events")
    n_events = params.get("n_events", DEFAULT_EVENTS)
    if isinstance(n_events, bool) or not isinstance(n_events, int) or not 1 <= n_events <= MAX_EVENTS:
        raise InvalidInput("params.n_events", f"must be an integer in [1, {MAX_EVENTS}]")
    job_params: dict[str, Any] = {"old": old.number, "new": new.number, "n_events": n_events}
    if retrain_job is not None:
        holdout = new.metrics.get("holdout") if isinstance(new.metrics, dict) else None
        if new.origin_job_id != retrain_job.pk or not holdout:
            raise InvalidInput("new", f"version {new.number} was not produced by retrain job {retrain_job.pk}")
        job_params.update(retrain_job=retrain_job.pk, holdout=holdout)
    job = Job.objects.create(
        deployment=deployment,
        kind=Job.Kind.EVALUATION,
        status=Job.Status.QUEUED,
        params=job_params,
        requested_by=audit.user_of(actor),
        message=f"queued: v{old.number} vs v{new.number}",
        celery_task_id=dispatch.new_task_id(),
    )
    dispatch.send(job)  # evaluated once the caller commits
    return job


def _version(deployment: Deployment, number: Any, field: str) -> ModelVersion:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidInput(field, "required, a version number")
    version = ModelVersion.objects.filter(deployment=deployment, number=number).first()
    if version is None:
        raise InvalidInput(field, f"deployment {deployment.slug!r} has no version {number}")
    return version


def run_evaluation(job: Job) -> FlipReport:
    """Score both versions on the job's events, write the FlipReport and act on a retrain's gate.

    The job must be ``running`` (claimed). Running it again for the same job returns the report
    written the first time.
    """
    existing = FlipReport.objects.filter(job=job).first()
    if existing is not None:
        return existing
    params = job.params
    if job.deployment_id is None:
        raise EvaluationError(f"job {job.pk} names no deployment")
    deployment = Deployment.objects.get(pk=job.deployment_id)
    old = ModelVersion.objects.filter(deployment=deployment, number=params.get("old")).first()
    new = ModelVersion.objects.filter(deployment=deployment, number=params.get("new")).first()
    if old is None or new is None:
        raise EvaluationError(f"version {params.get('old') if old is None else params.get('new')} no longer exists")
    reporter = JobReporter(job, epochs=0, interval=0.0)
    reporter.write(0.0, f"reading labeled events for v{old.number} vs v{new.number}")

    events = _events(deployment, params)
    ids = [row[0] for row in events]
    if not ids:
        raise EvaluationError("no labeled events to evaluate on")
    external_ids = [row[1] for row in events]
    features = [row[2] for row in events]
    labels = np.array([row[3] for row in events], dtype=np.int64)

    old_p = _score(deployment, old, features, ids, reporter, 0.0)
    new_p = _score(deployment, new, features, ids, reporter, 0.45)
    report = flip_report(old_p, new_p, labels, old_threshold=old.threshold, new_threshold=new.threshold)
    passed, reasons = evaluate_gate(
        report,
        min_metric_delta=deployment.gate_min_metric_delta,
        max_nfr=deployment.gate_max_nfr,
        metric=GATE_METRIC,
    )
    examples = [external_ids[i] for i in report.negative_flip_examples]
    if params.get("retrain_job") is not None and passed and new.status == ModelVersion.Status.CANDIDATE:
        # Pre-warm: a candidate that passed its gate may go live (below, under the auto policy, or
        # later by an operator). Warming it here, outside any lock, leaves the promotion a top-up.
        reporter.write(0.9, f"warming the error memory of v{new.number}")
        memory.warm(deployment, new)

    with transaction.atomic():
        # No-key locks: the inserts of events that reference these rows go on meanwhile.
        locked = Deployment.objects.select_for_update(no_key=True).get(pk=deployment.pk)
        # Under the lock: a second delivery that raced this one finds the first report here.
        existing = FlipReport.objects.filter(job=job).first()
        if existing is not None:
            return existing
        status = Job.objects.select_for_update().values_list("status", flat=True).get(pk=job.pk)
        if status != Job.Status.RUNNING:
            raise Cancelled(f"job {job.pk} is no longer running (status {status})")
        flips = FlipReport.objects.create(
            deployment=locked,
            old_version=old,
            new_version=new,
            job=job,
            **report_columns(report),
            example_event_ids=examples,
            gate_passed=passed,
            gate_reasons=reasons,
        )
        if params.get("retrain_job") is not None:
            _act_on_gate(locked, old, new, passed, reasons)
    return flips


def report_columns(report: FlipMetrics) -> dict[str, Any]:
    """The FlipReport columns that come from the metrics themselves (not who, what or the gate)."""
    return {
        "n": report.n,
        "old_accuracy": report.old_accuracy,
        "new_accuracy": report.new_accuracy,
        "old_auc": report.old_auc,
        "new_auc": report.new_auc,
        "nfr": report.nfr,
        "nfr_low": report.nfr_interval.low,
        "nfr_high": report.nfr_interval.high,
        "pfr": report.pfr,
        "pfr_low": report.pfr_interval.low,
        "pfr_high": report.pfr_interval.high,
        "nfi": report.nfi,
        "relative_nfr": report.relative_nfr,
        "nfr_mc": report.nfr_mc,
        "disagreement": report.disagreement,
        "mcnemar_p": report.mcnemar_p,
        "per_class": report.to_dict()["per_class"],
    }


def _events(deployment: Deployment, params: dict[str, Any]) -> list[tuple[int, str, dict[str, Any], int]]:
    """(id, external id, features, label) of the events to score, oldest first."""
    fields = ("id", "external_id", "features", "label")
    if params.get("holdout"):
        rows = list(holdout_events(deployment, params["holdout"]).values_list(*fields))
    else:
        newest: QuerySet[Event] = Event.objects.filter(deployment=deployment, label__isnull=False).order_by(
            "-event_time", "-id"
        )
        rows = list(newest.values_list(*fields)[: params.get("n_events", DEFAULT_EVENTS)])[::-1]
    return [(pk, external_id, features, int(label)) for pk, external_id, features, label in rows]


def _score(
    deployment: Deployment,
    version: ModelVersion,
    features: list[dict[str, Any]],
    ids: list[int],
    reporter: JobReporter,
    start: float,
) -> np.ndarray:
    """The version's base probabilities for the rows: [N] (binary) or [N, C] (multiclass)."""
    loaded = runtime.load_version(deployment, version)
    parts: list[torch.Tensor] = []
    for offset in range(0, len(features), SCORE_CHUNK):
        try:
            parts.append(loaded.predict_proba(features[offset : offset + SCORE_CHUNK]))
        except RowError as exc:
            raise EvaluationError(
                f"event {ids[offset + exc.index]} does not encode for v{version.number}: {exc.reason}"
            ) from exc
        done = min(offset + SCORE_CHUNK, len(features)) / len(features)
        reporter.write(start + 0.45 * done, f"scoring v{version.number}: {int(done * 100)}%")
    return torch.cat(parts).double().numpy()


def _act_on_gate(
    deployment: Deployment, old: ModelVersion, new: ModelVersion, passed: bool, reasons: list[str]
) -> None:
    """A retrain's candidate: rejected when its gate fails; promoted by the auto policy when it passes."""
    current = ModelVersion.objects.select_for_update(no_key=True).get(pk=new.pk)
    if current.status != ModelVersion.Status.CANDIDATE:
        return  # an operator promoted or rejected it already: their decision stands
    if not passed:
        ModelVersion.objects.filter(pk=new.pk).update(status=ModelVersion.Status.REJECTED)
        return
    if deployment.retrain_policy != Deployment.RetrainPolicy.AUTO:
        return  # manual policy: the candidate waits for an operator
    if deployment.live_version_id != old.pk:
        return  # the live version changed since the candidate was trained: the comparison is moot
    releases.promote(
        deployment=deployment,
        number=new.number,
        actor=None,
        reason="gates passed: " + "; ".join(reasons),
        label="policy",
    )


def outcome(report: FlipReport) -> dict[str, Any]:
    """JSON metrics of an evaluation job: the verdict and what became of the candidate."""
    new = ModelVersion.objects.get(pk=report.new_version_id)
    return {
        "report": report.pk,
        "n": report.n,
        "old": report.old_version.number,
        "new": new.number,
        "gate_passed": report.gate_passed,
        "new_status": new.status,
        "nfr": report.nfr,
        "auc_delta": None if report.new_auc is None or report.old_auc is None else report.new_auc - report.old_auc,
        "accuracy_delta": report.new_accuracy - report.old_accuracy,
        "evaluated_at": timezone.now().isoformat(),
    }
