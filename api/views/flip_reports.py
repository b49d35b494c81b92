"""Flip reports over REST: how a candidate version's predictions differ from the version it replaces."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics

from adaptive.models import FlipReport
from adaptive.selectors import releases as selected
from adaptive.selectors.deployments import get_deployment
from api import serializers_actions as s
from api.filters import FlipReportFilter
from api.permissions import IsOperatorForWrites
from api.views.openapi import DETAIL_ERRORS, READ_ERRORS, SLUG, path_id

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


@extend_schema(
    summary="Flip reports",
    description=(
        "Version comparisons, newest first: accuracies, negative flip rate (NFR, with its upper Wilson bound), "
        "positive flip rate and the gate verdict. Filter by the candidate (`new`) or reference (`old`) number."
    ),
    parameters=[SLUG],
    responses={200: s.FlipReportSerializer(many=True), **READ_ERRORS},
    examples=[OpenApiExample("v3 against v4", value=FLIP_REPORT_EXAMPLE, response_only=True)],
)
class FlipReportListView(generics.ListAPIView):
    serializer_class = s.FlipReportSerializer
    permission_classes = [IsOperatorForWrites]
    filterset_class = FlipReportFilter

    def get_queryset(self) -> QuerySet[FlipReport]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request to read
            return FlipReport.objects.none()
        return selected.flip_reports(get_deployment(self.kwargs["slug"]))


@extend_schema(
    summary="One flip report, every figure",
    description=(
        "Adds AUCs, Wilson intervals, NFI, relative NFR, multiclass NFR, disagreement, McNemar's p-value, the "
        "per-class table, example event ids (external ids of negative flips) and the gate's reasons."
    ),
    parameters=[SLUG, path_id("Report id.")],
    responses={200: s.FlipReportDetailSerializer, **DETAIL_ERRORS},
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
        return selected.get_flip_report(get_deployment(self.kwargs["slug"]), self.kwargs["id"])
