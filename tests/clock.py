"""A hand-moved clock for config.ratelimit (its windows are keyed by the clock): tests move time
forward instead of sleeping. The ``clock`` fixture in tests/conftest.py installs one."""

from __future__ import annotations


class Clock:
    """Starts at the beginning of an hour (so at the beginning of every shorter window too)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0 - 1_800_000_000.0 % 3600

    def __call__(self) -> float:
        return self.now
