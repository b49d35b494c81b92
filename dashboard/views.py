"""Dashboard pages. For now an overview of deployments; charts and controls come later."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from adaptive.models import Deployment
from adaptive.roles import role_of


@login_required
def index(request: HttpRequest) -> HttpResponse:
    deployments = Deployment.objects.visible().select_related("live_version")
    return render(
        request,
        "dashboard/index.html",
        {"deployments": deployments, "role": role_of(request.user).name.lower()},
    )
