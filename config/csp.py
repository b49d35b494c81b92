"""A Content-Security-Policy header on every HTML page (Django 5.2 has none built in).

The policy is picked by the longest prefix of the path in ``CONTENT_SECURITY_POLICIES``; one that
mentions ``{nonce}`` gets a fresh nonce per request, which templates read as ``request.csp_nonce``
for the few inline blocks a third-party page needs. JSON, static files and other non-HTML responses
get no header: a policy governs what a document loads, and the API's answers are not documents.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def policy_for(path: str) -> str | None:
    matches = [prefix for prefix in settings.CONTENT_SECURITY_POLICIES if path.startswith(prefix)]
    return settings.CONTENT_SECURITY_POLICIES[max(matches, key=len)] if matches else None


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        policy = policy_for(request.path_info)
        if policy is not None and "{nonce}" in policy:
            # Set before the view runs: the template that uses it is rendered inside get_response.
            nonce = secrets.token_urlsafe(18)
            request.csp_nonce = nonce  # type: ignore[attr-defined]
            policy = policy.replace("{nonce}", nonce)
        response = self.get_response(request)
        if policy is None or HEADER in response or not response.get("Content-Type", "").startswith("text/html"):
            return response
        # Django's debug error pages are built from inline styles and scripts.
        if settings.DEBUG and response.status_code >= 400:
            return response
        response[HEADER] = policy
        return response
