"""``GET /api/v1/health`` (public) and ``GET /api/v1/loop`` (viewers): is the control room up, and is
its loop keeping up?

Health is for load balancers and probes: 503 when the database or broker is down, ``degraded``
when a queue the loop needs has no healthy consumer or a worker fails every task. Anyone gets the
status; only viewers and up get the parts (database, broker, workers), whose error text and host
names are nobody else's business. The loop status adds what an operator needs to see a stall: per
deployment the label-to-memory and window lags, the oldest queued job of each kind, and the alerts
the dashboard shows as a banner.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive import health
from adaptive.roles import Role, role_of
from adaptive.services import loop
from api import serializers as s
from api.serializers import ErrorSerializer
from tasks.celery import app as celery_app

# Asking every worker takes the whole reply timeout (a second): pages that poll share one answer.
WORKERS_CACHE_SECONDS = 5


def workers_state() -> dict[str, Any]:
    """``adaptive.health.check_workers`` for the loop's queues, cached briefly per process."""
    state = cache.get("loop:workers")
    if state is None:
        state = health.check_workers(
            celery_app, queues=settings.LOOP_QUEUES, unhealthy_after=settings.WORKER_UNHEALTHY_AFTER
        )
        cache.set("loop:workers", state, WORKERS_CACHE_SECONDS)
    return state


def _public(workers: dict[str, Any]) -> dict[str, Any]:
    """Worker state without error text: health answers anyone."""
    detail = {
        name: {key: value for key, value in state.items() if key != "last_error"}
        for name, state in workers.get("workers", {}).items()
    }
    return {**workers, "workers": detail}


class HealthView(APIView):
    # Authentication runs (a viewer sees the parts), but nobody needs it: probes send no credentials.
    permission_classes = [AllowAny]

    def perform_authentication(self, request: Request) -> None:
        # A probe with stale credentials still gets the status, as an anonymous caller does (DRF has
        # already made the request's user anonymous when it raises).
        with contextlib.suppress(AuthenticationFailed):
            request.user  # noqa: B018 (DRF authenticates on first access)

    @extend_schema(
        summary="Health of database, broker, workers and the loop's queues",
        description=(
            "`ok` when the database and broker are up and every queue the loop needs (`LOOP_QUEUES`) has a "
            "healthy consumer; `degraded` when a queue has none or a worker failed its last "
            "`WORKER_UNHEALTHY_AFTER` tasks; `down` (503) when the database or broker is down. "
            "`workers.queues` lists the consumers per queue. Anonymous callers get `status` only; viewers and "
            "up also get `database`, `broker` and `workers`."
        ),
        responses={200: s.HealthSerializer, 503: s.HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        database = health.check_database()
        broker = health.check_broker(celery_app)
        if broker["ok"]:
            workers = workers_state()
        else:
            workers = {"ok": False, "count": 0, "names": [], "queues": {}, "unhealthy": []}
        if not (database["ok"] and broker["ok"]):
            state, code = "down", 503
        elif not workers["ok"]:
            state, code = "degraded", 200
        else:
            state, code = "ok", 200
        if role_of(request.user) < Role.VIEWER:
            return Response({"status": state}, status=code)
        body = {"status": state, "database": database, "broker": broker, "workers": _public(workers)}
        return Response(body, status=code)


class LoopView(APIView):
    @extend_schema(
        summary="Is the loop keeping up?",
        description=(
            "Per deployment (not archived): labels waiting for the error memory and labels in no closed window, "
            "each with the oldest one's age in seconds; per job kind the oldest queued job and its wait; the "
            "workers with their queues and task outcomes; and `alerts`, every reason the loop may be stalled "
            "(a queue without a healthy consumer, an unhealthy worker, a job waiting more than "
            "`JOB_WAIT_WARN_SECONDS`, labels waiting more than `LABEL_LAG_WARN_SECONDS`, windows behind)."
        ),
        responses={200: s.LoopSerializer, 403: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        broker = health.check_broker(celery_app)
        workers = workers_state() if broker["ok"] else None
        return Response(s.LoopSerializer(loop.status(workers)).data)
