"""Rate limits per ingestion key on predict, compensate and feedback (DRF throttles).

A key's rate counts requests (not rows: a batch is already capped by MAX_BATCH_ROWS, so rows per
period are at most rate x MAX_BATCH_ROWS). It is the key's own ``rate``, else the
``INGESTION_KEY_RATE`` setting; empty means unlimited, and then no cache is touched at all: the key
row came with the authentication, so deciding costs nothing. Over the limit DRF answers 429 with
``Retry-After`` (the seconds left in the window), which examples/replay_client.py waits out.
Users' tokens are not throttled here: this limits what one integration can push.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from adaptive.models import IngestionKey
from config.ratelimit import FixedWindow
from config.rates import parse_rate


class IngestionKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        # IngestionKeyAuthentication puts the key row in request.auth; a user's request has a token there.
        key = request.auth
        if not isinstance(key, IngestionKey):
            return True
        rate = parse_rate(key.rate or settings.INGESTION_KEY_RATE)
        if rate is None:
            return True
        window = FixedWindow(f"ingest:key:{key.pk}", rate)
        if window.hit() <= rate.count:
            return True
        self._wait = window.exceeded_for()
        return False

    def wait(self) -> float | None:
        return self._wait
