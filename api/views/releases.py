"""Promote and roll back over REST, and the reads that go with them: the release timeline and what
was live at an instant.

Each action is one service call (adaptive.services.releases) by an operator or admin with a
reason. A promotion warms the new version's memory itself, before the switch. Safe to retry:
promoting the live version again answers the same release; rolling back to an explicit version that
is already live is a 409 that says so.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive.models import Deployment, Release
from adaptive.selectors import releases as selected
from adaptive.selectors.deployments import get_deployment, live_version_state
from adaptive.services import releases
from api import serializers_actions as s
from api.filters import ReleaseFilter
from api.permissions import IsOperatorForWrites
from api.serializers_fields import validated
from api.views.openapi import ACTION_ERRORS, READ_ERRORS, SLUG
from api.views.timing import ms_since

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


def _release_answer(deployment: Deployment, release: Release, took_ms: float) -> dict[str, Any]:
    # The live version is read after the commit, as the next request sees it.
    return {
        "release": s.ReleaseSerializer(selected.with_version_number(release)).data,
        "live_version": live_version_state(deployment),
        "took_ms": took_ms,
    }


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
        deployment = get_deployment(slug)
        body = validated(s.PromoteRequestSerializer, request.data)
        started = time.perf_counter()
        release = releases.promote(
            deployment=deployment, number=body["version"], actor=request.user, reason=body["reason"]
        )
        return Response(_release_answer(deployment, release, ms_since(started)))


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
        deployment = get_deployment(slug)
        body = validated(s.RollbackRequestSerializer, request.data)
        started = time.perf_counter()
        release = releases.rollback(
            deployment=deployment, actor=request.user, reason=body["reason"], number=body["version"]
        )
        return Response(_release_answer(deployment, release, ms_since(started)))


@extend_schema(
    summary="Release timeline",
    description=(
        "What was live when, newest first: version, memory revision at the start, who put it live and why. "
        "`since`/`until` apply to the release's start."
    ),
    parameters=[SLUG],
    responses={200: s.ReleaseSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("A rollback", value=RELEASE_EXAMPLE, response_only=True)],
)
class ReleaseListView(generics.ListAPIView):
    serializer_class = s.ReleaseSerializer
    permission_classes = [IsOperatorForWrites]
    filterset_class = ReleaseFilter

    def get_queryset(self) -> QuerySet[Release]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return Release.objects.none()
        return selected.releases(get_deployment(self.kwargs["slug"]))


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
        deployment = get_deployment(slug)
        at: datetime = validated(s.LiveAtQuerySerializer, request.query_params).get("at") or timezone.now()
        release = selected.release_live_at(deployment, at)
        if release is None:
            first = selected.first_release_started_at(deployment)
            when = f"; its first release started at {first.isoformat()}" if first else ""
            raise NotFound(f"nothing of {deployment.slug!r} was live at {at.isoformat()}{when}")
        return Response({"at": at, "release": s.ReleaseSerializer(release).data})
