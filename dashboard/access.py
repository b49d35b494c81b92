"""Who may open the dashboard: any signed-in user with a role; what they may *do* is decided by the
REST API's permissions (the pages only hide controls a role may not use)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from adaptive.roles import Role, role_of

View = Callable[..., HttpResponse]


def viewer_required(view: View) -> View:
    """Login first; a user without any role gets a 403 page that says whom to ask."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = role_of(request.user)
        if role < Role.VIEWER:
            return render(request, "dashboard/no_role.html", {"role": "none"}, status=403)
        request.role = role  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return login_required(wrapped)


def page_context(request: HttpRequest, nav: str, **extra: Any) -> dict[str, Any]:
    role: Role = request.role  # type: ignore[attr-defined]
    return {"role": role.name.lower(), "can_act": role >= Role.OPERATOR, "nav": nav, **extra}
