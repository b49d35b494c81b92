"""Counters in the shared cache for throttles and lockouts, and the client address they are keyed by.

Used by the API's authentication-failure guard (api.middleware), the ingestion-key throttle
(api.throttling) and the login lockout (dashboard.login). Counting needs a cache that every web
process shares (``CACHE_URL``: the locking file cache by default, Redis in production); an atomic
``add``/``incr`` on it keeps concurrent requests from losing counts.

Windows are fixed and aligned (``now // seconds``): the window's number is part of the key, so a
counter is never incremented after its window ends and its expiry only frees space. The clock is
``clock()`` in this module, so that tests can move time forward without sleeping.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from config.rates import Rate

# Seconds a counter outlives its window, so that no increment can find it expired mid-window.
_GRACE_SECONDS = 5


def clock() -> float:
    return time.time()


def client_ip(request: HttpRequest) -> str:
    """The address a throttle counts: REMOTE_ADDR, or behind a proxy the one it saw.

    With ``BEHIND_PROXY`` the rightmost X-Forwarded-For entry is used: the one our proxy appended.
    Entries left of it come from the client and could be anything. Without ``BEHIND_PROXY`` the
    header is ignored, so a client cannot pick a fresh address per request. IPv6 clients are counted
    per /64: one host usually holds a whole /64.
    """
    address = request.META.get("REMOTE_ADDR", "")
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        address = forwarded or address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)).network_address}/64"
    return str(ip)


def hashed(text: str) -> str:
    """A cache-safe key part for user-supplied text (usernames): any length, any character."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FixedWindow:
    """Counts events per ``rate.seconds`` window under ``scope``; ``rate.count`` of them are allowed."""

    scope: str
    rate: Rate

    def _current(self) -> tuple[str, float]:
        """The current window's key and the seconds left in it."""
        now = clock()
        index = int(now // self.rate.seconds)
        return f"rl:{self.scope}:{self.rate.seconds}:{index}", (index + 1) * self.rate.seconds - now

    def count(self) -> int:
        key, _ = self._current()
        return int(cache.get(key, 0))

    def hit(self) -> int:
        """Count one event; returns the window's count including it."""
        key, left = self._current()
        if cache.add(key, 1, timeout=math.ceil(left) + _GRACE_SECONDS):
            return 1
        try:
            return int(cache.incr(key))
        except ValueError:  # evicted (a full cache culls entries) between add and incr
            cache.add(key, 1, timeout=math.ceil(left) + _GRACE_SECONDS)
            return 1

    def exceeded_for(self) -> int | None:
        """Seconds until the window ends (for Retry-After) when its count is spent, else None."""
        key, left = self._current()
        if int(cache.get(key, 0)) < self.rate.count:
            return None
        return max(1, math.ceil(left))

    def reset(self) -> None:
        cache.delete(self._current()[0])


@dataclass(frozen=True)
class Lock:
    """A lock under ``scope`` that holds until a time stored with it (the expiry only frees space)."""

    scope: str

    @property
    def _key(self) -> str:
        return f"lock:{self.scope}"

    def engage(self, seconds: int) -> None:
        cache.set(self._key, clock() + seconds, timeout=seconds + _GRACE_SECONDS)

    def remaining(self) -> int | None:
        """Seconds left while the lock holds, else None."""
        until = cache.get(self._key)
        if until is None:
            return None
        left = float(until) - clock()
        return math.ceil(left) if left > 0 else None
