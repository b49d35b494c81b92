"""``GET /api/v1/health``: public, no authentication; 503 when the database or broker is down."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adaptive import health
from api import serializers as s
from tasks.celery import app as celery_app


class HealthView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health of database, broker and workers",
        description="`ok` when all three are up, `degraded` when no worker answers, `down` (503) otherwise.",
        responses={200: s.HealthSerializer, 503: s.HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        database = health.check_database()
        broker = health.check_broker(celery_app)
        workers = health.check_workers(celery_app) if broker["ok"] else {"ok": False, "count": 0, "names": []}
        if not (database["ok"] and broker["ok"]):
            state, code = "down", 503
        elif not workers["ok"]:
            state, code = "degraded", 200
        else:
            state, code = "ok", 200
        body = {"status": state, "database": database, "broker": broker, "workers": workers}
        return Response(body, status=code)
