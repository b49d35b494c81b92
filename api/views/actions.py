"""The operator's controls over REST: promote, roll back, pause/resume, reset memory, retrain, compare,
cancel a job; and the reads that go with them: the release timeline, what was live at an instant,
flip reports and jobs.

Every action is one service call (adaptive.services.releases, adaptive.services.jobs, or the
slow loop's entry points in tasks.training) by an operator or admin with a reason; work that follows
(a retrain, an evaluation) is queued after the commit. A promotion warms the new version's memory
itself, before the switch.
Actions are safe to retry: promoting the live version again answers the same release; rolling back
to an explicit version that is already live is a 409 that says so; pausing a paused deployment,
resuming an active one and cancelling a cancelled job change nothing.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.db.models import F, Q, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.errors import InvalidInput
from adaptive.models import Deployment, FlipReport, Job, Release
from adaptive.services import jobs, releases
from api import serializers_actions as s
from api.pagination import StrictLimitOffsetPagination
from api.permissions import IsOperatorForWrites
from api.serializers import ErrorSerializer
from api.views.monitoring import in_range
from tasks import training

SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The deployment's slug.")
ACTION_ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer}
READ_ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}

RELEASE_EXAMPLE = {
    "id": 42,
    "version": 3,
    "kind": "rollback",
    "memory_revision": 18211,
    "started_at": "2024-06-01T14:05:09.120Z",
    "ended_at": None,
    "actor": "alice",
    "reason": "v4 flips too many on-time flights",
}
JOB_EXAMPLE = {
    "id": 311,
    "deployment": "flights",
    "kind": "retrain",
    "status": "queued",
    "progress": 0.0,
    "message": "",
    "device": "",
    "params": {"epochs": 3},
    "metrics": {},
    "attempts": 0,
    "requested_by": "alice",
    "created_at": "2024-06-01T14:10:00Z",
    "started_at": None,
    "heartbeat_at": None,
    "finished_at": None,
}
FLIP_REPORT_EXAMPLE = {
    "id": 7,
    "old_version": 3,
    "new_version": 4,
    "job": 312,
    "n": 5000,
    "old_accuracy": 0.801,
    "new_accuracy": 0.815,
    "nfr": 0.021,
    "nfr_high": 0.025,
    "pfr": 0.035,
    "gate_passed": True,
    "created_at": "2024-06-01T15:02:41Z",
}


class ActionPagination(StrictLimitOffsetPagination):
    max_limit = 500


def _deployment(slug: str) -> Deployment:
    deployment = Deployment.objects.filter(slug=slug).first()
    if deployment is None:
        raise NotFound(f"no deployment {slug!r}")
    return deployment


def filter_deployment_pk(slug: str) -> int:
    """The pk of the deployment a list is filtered by; a 400 naming ``deployment`` when there is none.

    A typo in a filter must not read as an empty list ("no jobs", "nothing happened").
    """
    pk = Deployment.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if pk is None:
        raise InvalidInput("deployment", f"no deployment {slug!r}")
    return pk


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _release_answer(deployment: Deployment, release: Release, took_ms: float) -> dict[str, Any]:
    # The version number from the database (a release's version row carries the training profile,
    # so it is not loaded); the live version is read after the commit, as the next request sees it.
    release.version_number = (  # type: ignore[attr-defined]
        Release.objects.filter(pk=release.pk).values_list("version__number", flat=True).get()
    )
    live = Deployment.objects.filter(pk=deployment.pk).values("live_version__number", "live_version__status").get()
    return {
        "release": s.ReleaseSerializer(release).data,
        "live_version": {"number": live["live_version__number"], "status": live["live_version__status"]},
        "took_ms": took_ms,
    }


def _state_answer(deployment: Deployment, took_ms: float, **extra: Any) -> dict[str, Any]:
    row = Deployment.objects.filter(pk=deployment.pk).values("status", "live_version__number", "memory_revision").get()
    return {
        "deployment": deployment.slug,
        "status": row["status"],
        "live_version": row["live_version__number"],
        "memory_revision": row["memory_revision"],
        **extra,
        "took_ms": took_ms,
    }


def _jobs() -> QuerySet[Job]:
    return Job.objects.annotate(
        deployment_slug=F("deployment__slug"), requested_by_username=F("requested_by__username")
    ).order_by("-created_at", "-id")


def _job(pk: int, rows: QuerySet[Job]) -> Job:
    job = rows.filter(pk=pk).first()
    if job is None:
        raise NotFound(f"no job {pk}")
    return job


def _job_answer(job: Job) -> dict[str, Any]:
    return dict(s.JobSerializer(_jobs().get(pk=job.pk)).data)


# --- promote and roll back -------------------------------------------------------------------------


class PromoteView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Promote a version (operators)",
        description=(
            "Warms the version's error memory, then puts it live in one short transaction: the open release "
            "ends, a promotion release starts, the audit log records who and why. The warm-up re-embeds the "
            "newest labeled events (up to the memory's capacity) with the version's model before the switch, "
            "so the first prediction it serves is already compensated; a candidate that passed its gate was "
            "warmed by its evaluation, and only labels that arrived since are added. Predict and feedback go "
            "on meanwhile. Safe to retry: promoting the version that is already live changes nothing and "
            "answers the open release (one release, not two). `took_ms` is the server time of the warm-up "
            "and the switch."
        ),
        parameters=[SLUG],
        request=s.PromoteRequestSerializer,
        responses={200: s.ReleaseActionSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("Promote v4", value={"version": 4, "reason": "gates passed, NFR 2.1%"}, request_only=True),
            OpenApiExample(
                "Promoted",
                value={
                    "release": {**RELEASE_EXAMPLE, "version": 4, "kind": "promotion", "reason": "gates passed"},
                    "live_version": {"number": 4, "status": "live"},
                    "took_ms": 6.4,
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(s.PromoteRequestSerializer, request.data)
        started = time.perf_counter()
        release = releases.promote(
            deployment=deployment, number=body["version"], actor=request.user, reason=body["reason"]
        )
        return Response(_release_answer(deployment, release, _ms_since(started)))


class RollbackView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Roll back (operators)",
        description=(
            "Puts back the version that was live before the current release (or the `version` given), together "
            "with its error memory and detector state: memories belong to versions, so nothing is copied or "
            "rebuilt in the transaction, and `took_ms` (the server time of the transaction) stays in "
            "milliseconds whatever the memory's size. Serving processes that served the version before still "
            "hold its memory; others rebuild it from the stored samples on their next request.\n\n"
            "Retrying: a rollback with an explicit `version` that is already live is a 409 (`version N is "
            "already live`), so a retried request cannot move further back. Without `version`, every call "
            "goes one release back: retry only with the version number."
        ),
        parameters=[SLUG],
        request=s.RollbackRequestSerializer,
        responses={200: s.ReleaseActionSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("To the previous release", value={"reason": "v4 misbehaves"}, request_only=True),
            OpenApiExample("To v2", value={"version": 2, "reason": "back to the spring model"}, request_only=True),
            OpenApiExample(
                "Rolled back",
                value={"release": RELEASE_EXAMPLE, "live_version": {"number": 3, "status": "live"}, "took_ms": 4.9},
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(s.RollbackRequestSerializer, request.data)
        started = time.perf_counter()
        release = releases.rollback(
            deployment=deployment, actor=request.user, reason=body["reason"], number=body["version"]
        )
        return Response(_release_answer(deployment, release, _ms_since(started)))


# --- pause, resume, reset memory -------------------------------------------------------------------

STATE_EXAMPLE = {
    "deployment": "flights",
    "status": "paused",
    "live_version": 3,
    "memory_revision": 18211,
    "took_ms": 3.1,
}


class _PauseView(APIView):
    permission_classes = [IsOperatorForWrites]
    paused: bool
    body_serializer: type[serializers.Serializer]

    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(self.body_serializer, request.data)
        started = time.perf_counter()
        releases.set_paused(deployment=deployment, paused=self.paused, actor=request.user, reason=body["reason"])
        return Response(_state_answer(deployment, _ms_since(started)))


@extend_schema(
    summary="Pause adaptation (operators)",
    description=(
        "Serving goes on with the memory as it is; labels are stored and wait, and no window closes, until "
        "the deployment is resumed. Pausing a paused deployment changes nothing (no audit entry)."
    ),
    parameters=[SLUG],
    request=s.RequiredReasonSerializer,
    responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
    examples=[
        OpenApiExample("Pause", value={"reason": "label pipeline incident"}, request_only=True),
        OpenApiExample("Paused", value=STATE_EXAMPLE, response_only=True),
    ],
)
class PauseView(_PauseView):
    paused = True
    body_serializer = s.RequiredReasonSerializer


@extend_schema(
    summary="Resume adaptation (operators)",
    description=(
        "The labels that arrived while paused go into the memory on the next compensation update. Resuming an "
        "active deployment changes nothing. The reason is optional."
    ),
    parameters=[SLUG],
    request=s.OptionalReasonSerializer,
    responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
    examples=[
        OpenApiExample("Resume", value={"reason": "incident over"}, request_only=True),
        OpenApiExample("Resumed", value={**STATE_EXAMPLE, "status": "active"}, response_only=True),
    ],
)
class ResumeView(_PauseView):
    paused = False
    body_serializer = s.OptionalReasonSerializer


class ResetMemoryView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Reset the live version's error memory (operators)",
        description=(
            "Every sample of the live version's memory becomes inactive (rows are kept for the record) and "
            "serving processes start from an empty memory on their next request: scores are the base model's "
            "until new labels arrive. Answers how many samples were cleared; a repeat clears 0."
        ),
        parameters=[SLUG],
        request=s.RequiredReasonSerializer,
        responses={200: s.DeploymentStateSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("Reset", value={"reason": "mislabeled batch from the CRM export"}, request_only=True),
            OpenApiExample(
                "Reset done",
                value={**STATE_EXAMPLE, "status": "active", "memory_revision": 18212, "cleared": 50000},
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(s.RequiredReasonSerializer, request.data)
        started = time.perf_counter()
        cleared = releases.reset_memory(deployment=deployment, actor=request.user, reason=body["reason"])
        return Response(_state_answer(deployment, _ms_since(started), cleared=cleared))


# --- retrain and compare ---------------------------------------------------------------------------


class RetrainView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Request a retrain (operators)",
        description=(
            "Queues a retrain job on the `gpu` queue: continual training from the live version on recent labeled "
            "events plus replay, producing a candidate version that is then evaluated against the live one. "
            "Answers 202 with the job; follow it under /api/v1/jobs/{id}. One retrain at a time per deployment: "
            "asking again while one is queued or running is a 409, so a retried request never starts a second."
        ),
        parameters=[SLUG],
        request=s.RetrainRequestSerializer,
        responses={202: s.JobSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample(
                "Retrain", value={"reason": "compensated error drifts", "params": {"epochs": 3}}, request_only=True
            ),
            OpenApiExample("Queued", value=JOB_EXAMPLE, response_only=True, status_codes=["202"]),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(s.RetrainRequestSerializer, request.data)
        job = training.request_retrain_job(deployment, request.user, body["reason"], body["params"])
        return Response(_job_answer(job), status=status.HTTP_202_ACCEPTED)


class CompareView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Compare two versions (operators)",
        description=(
            "Queues an evaluation job: both versions score the same recent labeled events and a flip report "
            "(accuracy deltas, negative and positive flips, gate verdict) is written; list it under "
            "flip-reports. Answers 202 with the job. An on-demand comparison never promotes or rejects anything, "
            "so a retried request is harmless, but it queues a second evaluation: check the jobs list first."
        ),
        parameters=[SLUG],
        request=s.CompareRequestSerializer,
        responses={202: s.JobSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("v3 against v4", value={"old": 3, "new": 4}, request_only=True),
            OpenApiExample(
                "Queued",
                value={**JOB_EXAMPLE, "kind": "evaluation", "params": {"old": 3, "new": 4}},
                response_only=True,
                status_codes=["202"],
            ),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        body = _valid(s.CompareRequestSerializer, request.data)
        job = training.request_evaluation_job(deployment, body["old"], body["new"], request.user)
        return Response(_job_answer(job), status=status.HTTP_202_ACCEPTED)


# --- releases: the timeline and "what was live at T" -----------------------------------------------


def _releases(deployment: Deployment) -> QuerySet[Release]:
    return Release.objects.filter(deployment=deployment).annotate(version_number=F("version__number"))


@extend_schema(
    summary="Release timeline",
    description=(
        "What was live when, newest first: version, memory revision at the start, who put it live and why. "
        "`since`/`until` apply to the release's start."
    ),
    parameters=[SLUG, s.ReleaseQuerySerializer],
    responses={200: s.ReleaseSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("A rollback", value=RELEASE_EXAMPLE, response_only=True)],
)
class ReleaseListView(generics.ListAPIView):
    serializer_class = s.ReleaseSerializer
    permission_classes = [IsOperatorForWrites]
    pagination_class = ActionPagination

    def get_queryset(self) -> QuerySet[Release]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return Release.objects.none()
        deployment = _deployment(self.kwargs["slug"])
        params = _valid(s.ReleaseQuerySerializer, self.request.query_params)
        rows = in_range(_releases(deployment), "started_at", params)
        # The (deployment, started_at) index, read backwards.
        return rows.order_by("-started_at", "-id")


class LiveAtSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="The instant asked about.")
    release = s.ReleaseSerializer(help_text="The release live at that instant.")


class LiveAtView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="What was live at an instant",
        description=(
            "The release with `started_at <= at < ended_at` (or still open): the version number and the memory "
            "revision it started with, who put it live and why. 404 when nothing was live then (before the "
            "first release); 400 for a timestamp that is not ISO-8601."
        ),
        parameters=[SLUG, s.LiveAtQuerySerializer],
        responses={200: LiveAtSerializer, **READ_ERRORS},
        examples=[
            OpenApiExample(
                "Live at 14:10",
                value={"at": "2024-06-01T14:10:00Z", "release": RELEASE_EXAMPLE},
                response_only=True,
            )
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        deployment = _deployment(slug)
        at: datetime = _valid(s.LiveAtQuerySerializer, request.query_params).get("at") or timezone.now()
        release = (
            _releases(deployment)
            .filter(started_at__lte=at)
            .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=at))
            .order_by("-started_at", "-id")
            .first()
        )
        if release is None:
            first = Release.objects.filter(deployment=deployment).order_by("started_at").values("started_at").first()
            when = f"; its first release started at {first['started_at'].isoformat()}" if first else ""
            raise NotFound(f"nothing of {deployment.slug!r} was live at {at.isoformat()}{when}")
        return Response({"at": at, "release": s.ReleaseSerializer(release).data})


# --- flip reports ----------------------------------------------------------------------------------


def _flip_reports(deployment: Deployment) -> QuerySet[FlipReport]:
    return FlipReport.objects.filter(deployment=deployment).annotate(
        old_number=F("old_version__number"), new_number=F("new_version__number")
    )


@extend_schema(
    summary="Flip reports",
    description=(
        "Version comparisons, newest first: accuracies, negative flip rate (NFR, with its upper Wilson bound), "
        "positive flip rate and the gate verdict. Filter by the candidate (`new`) or reference (`old`) number."
    ),
    parameters=[SLUG, s.FlipReportQuerySerializer],
    responses={200: s.FlipReportSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("v3 against v4", value=FLIP_REPORT_EXAMPLE, response_only=True)],
)
class FlipReportListView(generics.ListAPIView):
    serializer_class = s.FlipReportSerializer
    permission_classes = [IsOperatorForWrites]
    pagination_class = ActionPagination

    def get_queryset(self) -> QuerySet[FlipReport]:
        if getattr(self, "swagger_fake_view", False):
            return FlipReport.objects.none()
        deployment = _deployment(self.kwargs["slug"])
        params = _valid(s.FlipReportQuerySerializer, self.request.query_params)
        rows = _flip_reports(deployment)
        if params.get("new") is not None:
            rows = rows.filter(new_version__number=params["new"])
        if params.get("old") is not None:
            rows = rows.filter(old_version__number=params["old"])
        return rows.order_by("-created_at", "-id")


@extend_schema(
    summary="One flip report, every figure",
    description=(
        "Adds AUCs, Wilson intervals, NFI, relative NFR, multiclass NFR, disagreement, McNemar's p-value, the "
        "per-class table, example event ids (external ids of negative flips) and the gate's reasons."
    ),
    parameters=[SLUG, OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Report id.")],
    responses={200: s.FlipReportDetailSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    examples=[
        OpenApiExample(
            "v3 against v4",
            value={
                **FLIP_REPORT_EXAMPLE,
                "old_auc": 0.861,
                "new_auc": 0.874,
                "nfr_low": 0.017,
                "pfr_low": 0.030,
                "pfr_high": 0.040,
                "nfi": 0.11,
                "relative_nfr": 0.59,
                "nfr_mc": None,
                "disagreement": 0.056,
                "mcnemar_p": 0.0004,
                "per_class": [],
                "example_event_ids": ["flight-2013-06-01-UA-1545"],
                "gate_reasons": ["accuracy +0.014 >= 0.000", "NFR upper bound 0.025 <= 0.050"],
            },
            response_only=True,
        )
    ],
)
class FlipReportDetailView(generics.RetrieveAPIView):
    serializer_class = s.FlipReportDetailSerializer
    permission_classes = [IsOperatorForWrites]

    def get_object(self) -> FlipReport:
        report = _flip_reports(_deployment(self.kwargs["slug"])).filter(pk=self.kwargs["id"]).first()
        if report is None:
            raise NotFound(f"deployment {self.kwargs['slug']!r} has no flip report {self.kwargs['id']}")
        return report


# --- jobs ------------------------------------------------------------------------------------------

JOB_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Job id.")


@extend_schema(
    summary="Jobs",
    description=(
        "Background work of every deployment (compensation updates, drift scans, retrains, evaluations), "
        "newest first, with status, progress and message. Filter by deployment slug, kind and status."
    ),
    parameters=[s.JobQuerySerializer],
    responses={200: s.JobSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("A queued retrain", value=JOB_EXAMPLE, response_only=True)],
)
class JobListView(generics.ListAPIView):
    serializer_class = s.JobSerializer
    permission_classes = [IsOperatorForWrites]
    pagination_class = ActionPagination

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        params = _valid(s.JobQuerySerializer, self.request.query_params)
        rows = _jobs()
        if params.get("deployment"):
            rows = rows.filter(deployment_id=filter_deployment_pk(params["deployment"]))
        if params.get("kind"):
            rows = rows.filter(kind=params["kind"])
        if params.get("status"):
            rows = rows.filter(status=params["status"])
        return rows


@extend_schema(
    summary="One job",
    parameters=[JOB_ID],
    responses={200: s.JobSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    examples=[OpenApiExample("A running retrain", value={**JOB_EXAMPLE, "status": "running"}, response_only=True)],
)
class JobDetailView(generics.RetrieveAPIView):
    serializer_class = s.JobSerializer
    permission_classes = [IsOperatorForWrites]

    def get_object(self) -> Job:
        return _job(self.kwargs["id"], _jobs())


class JobCancelView(APIView):
    permission_classes = [IsOperatorForWrites]

    @extend_schema(
        summary="Cancel a job (operators)",
        description=(
            "A queued or running job becomes `cancelled` with its finish time; the message records who cancelled "
            "it and why. A queued job never starts; a running one keeps its worker until the worker next reports, "
            "and its result is dropped (a cancelled job never turns succeeded or failed). Cancelling a cancelled "
            "job answers it unchanged (safe to retry); a job that already succeeded or failed is a 409."
        ),
        parameters=[JOB_ID],
        request=s.OptionalReasonSerializer,
        responses={200: s.JobSerializer, **ACTION_ERRORS},
        examples=[
            OpenApiExample("Cancel", value={"reason": "wrong parameters"}, request_only=True),
            OpenApiExample(
                "Cancelled",
                value={
                    **JOB_EXAMPLE,
                    "status": "cancelled",
                    "message": "cancelled by alice: wrong parameters",
                    "finished_at": "2024-06-01T14:11:02Z",
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, id: int) -> Response:
        job = _job(id, Job.objects.all())
        body = _valid(s.OptionalReasonSerializer, request.data)
        return Response(_job_answer(jobs.cancel(job, actor=request.user, reason=body["reason"])))
