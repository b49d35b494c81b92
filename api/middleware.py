"""Throttling of authentication failures on the API, per client address.

A 401 to a request that carried credentials (an ``Authorization`` header) is a failed guess: a wrong
user token or ingestion key. After ``AUTH_FAILURES_PER_IP`` of them in one window, every further
request from that address to /api/ is answered 429 with ``Retry-After`` until the window ends, even
one with a valid credential: otherwise a guesser would learn which guess was right.

Counting happens here, on the response, and not in the authentication classes, so that every way of
failing (a bad key, a bad token, a malformed header) counts the same. A 401 without credentials
(an anonymous request) guesses nothing and is not counted. API credentials name no user (the token is
the whole secret), so there is no per-user count here; the login forms count per username
(dashboard.login). Health stays open: a load balancer probing from a blocked address must not take
the service out of rotation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from api.errors import json_response
from config.ratelimit import FixedWindow, client_ip
from config.rates import parse_rate

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
UNTHROTTLED_PATHS = frozenset({"/api/v1/health"})


def throttled_response(seconds: int, detail: str) -> HttpResponse:
    return json_response(
        {"error": "throttled", "detail": f"{detail}; retry in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


class AuthFailureThrottleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        rate = parse_rate(settings.AUTH_FAILURES_PER_IP)
        if rate is None or not path.startswith(API_PREFIX) or path in UNTHROTTLED_PATHS:
            return self.get_response(request)
        address = client_ip(request)
        failures = FixedWindow(f"authfail:ip:{address}", rate)
        wait = failures.exceeded_for()
        if wait is not None:
            return throttled_response(wait, "too many failed authentications from this address")
        response = self.get_response(request)
        guessed = response.status_code == 401 and request.META.get("HTTP_AUTHORIZATION")
        if guessed and failures.hit() == rate.count:
            log.warning("%d failed authentications from %s: API blocked for this window", rate.count, address)
        return response
