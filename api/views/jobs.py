"""Jobs over REST: request a retrain or a comparison, follow and cancel background work.

Retrain and compare are one service call each (adaptive.services.retraining, .evaluation), which
creates the job and queues its task once the request's transaction commits; the answer is the
queued job (202). Cancelling a cancelled job changes nothing; one that already finished is a 409.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.models import Job
from adaptive.selectors import jobs as selected
from adaptive.selectors.deployments import get_deployment
from adaptive.services import evaluation, jobs, retraining
from api import serializers_actions as s
from api.filters import JobFilter
from api.permissions import IsOperatorForWrites
from api.serializers_fields import validated
from api.views.openapi import ACTION_ERRORS, DETAIL_ERRORS, READ_ERRORS, SLUG, path_id

JOB_ID = path_id("Job id.")
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


def _job_answer(job: Job) -> Response:
    return Response(s.JobSerializer(selected.get_job(job.pk)).data, status=status.HTTP_202_ACCEPTED)


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
        deployment = get_deployment(slug)
        body = validated(s.RetrainRequestSerializer, request.data)
        job = retraining.request_retrain(
            deployment=deployment, actor=request.user, reason=body["reason"], params=body["params"]
        )
        return _job_answer(job)


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
        deployment = get_deployment(slug)
        body = validated(s.CompareRequestSerializer, request.data)
        job = evaluation.request_evaluation(
            deployment=deployment, old_number=body["old"], new_number=body["new"], actor=request.user
        )
        return _job_answer(job)


@extend_schema(
    summary="Jobs",
    description=(
        "Background work of every deployment (compensation updates, drift scans, retrains, evaluations), "
        "newest first, with status, progress and message. Filter by deployment slug, kind and status."
    ),
    responses={200: s.JobSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("A queued retrain", value=JOB_EXAMPLE, response_only=True)],
)
class JobListView(generics.ListAPIView):
    serializer_class = s.JobSerializer
    permission_classes = [IsOperatorForWrites]
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[Job]:
        return selected.jobs()


@extend_schema(
    summary="One job",
    parameters=[JOB_ID],
    responses={200: s.JobSerializer, **DETAIL_ERRORS},
    examples=[OpenApiExample("A running retrain", value={**JOB_EXAMPLE, "status": "running"}, response_only=True)],
)
class JobDetailView(generics.RetrieveAPIView):
    serializer_class = s.JobSerializer
    permission_classes = [IsOperatorForWrites]

    def get_object(self) -> Job:
        return selected.get_job(self.kwargs["id"])


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
        job = selected.get_job(id)
        body = validated(s.OptionalReasonSerializer, request.data)
        cancelled = jobs.cancel(job, actor=request.user, reason=body["reason"])
        return Response(s.JobSerializer(selected.get_job(cancelled.pk)).data)
