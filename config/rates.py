"""Rates such as ``"20/min"`` or ``"1000/10s"``: a count per period, parsed once and failing loudly.

Used by the settings (``AUTH_FAILURES_PER_IP``, ``INGESTION_KEY_RATE``) and by ingestion keys' own
``rate``. Pure: no Django import beyond the error types, so config.settings may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured, ValidationError

from config.env import env_str

_UNITS = {1: ("s", "sec", "second"), 60: ("m", "min", "minute"), 3600: ("h", "hour"), 86400: ("d", "day")}
_UNIT_SECONDS = {name: seconds for seconds, names in _UNITS.items() for name in names}
_UNIT_SECONDS |= {f"{name}s": seconds for name, seconds in _UNIT_SECONDS.items() if len(name) > 1}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
# A day is the longest window: counters live in the cache, and a longer one would outlive a restart
# of a Redis without persistence anyway.
MAX_PERIOD_SECONDS = 86400
MAX_RATE_LENGTH = 32  # IngestionKey.rate's column


@dataclass(frozen=True)
class Rate:
    """At most ``count`` events per ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


@lru_cache(maxsize=256)
def parse_rate(text: str) -> Rate | None:
    """``"20/min"`` -> Rate(20, 60); ``"100/10s"`` -> Rate(100, 10); ``""`` -> None (unlimited).

    Raises ValueError naming what is wrong. Cached: the hot path parses the same few strings.
    """
    if not text.strip():
        return None
    if len(text) > MAX_RATE_LENGTH:
        raise ValueError(f"at most {MAX_RATE_LENGTH} characters")
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNIT_SECONDS:
        raise ValueError(f"{text!r} is not a rate like '20/min', '1000/10s' or '5000/hour'")
    count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    seconds = multiple * _UNIT_SECONDS[unit]
    if count < 1 or multiple < 1:
        raise ValueError(f"{text!r}: the count and the period must be at least 1")
    if seconds > MAX_PERIOD_SECONDS:
        raise ValueError(f"{text!r}: the period may be at most a day")
    return Rate(count=count, seconds=seconds)


def validate_rate(value: str) -> None:
    """Model/form validator for a stored rate ("" allowed: the setting's default applies)."""
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_rate") from exc


def env_rate(name: str, default: str) -> str:
    """A rate from the environment, checked now (so a typo stops start-up), kept as its text."""
    value = env_str(name, default) or ""
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from exc
    return value.strip()
