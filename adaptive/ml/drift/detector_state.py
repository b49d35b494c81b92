"""Pieces of a streaming detector's saved state: the native numbers and the replay.

A restore either sets a detector's few numbers directly (``native``, Page-Hinkley and DDM) or
rebuilds it by replaying the stored inputs into a fresh one (:func:`replay`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol


class RiverDetector(Protocol):
    """What the detectors here use of a River drift detector."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: Any) -> None: ...


def replay(build: Callable[[], RiverDetector], values: list[float]) -> tuple[RiverDetector, list[float], bool]:
    """A detector from ``build`` fed ``values``: the detector, the inputs it holds, whether it reset.

    A truncated replay can raise a detection the original never had; the detector then resets, as
    the original would have, and from there on only the inputs after it count.
    """
    reset_in_replay = False
    while True:
        detector = build()
        batch = getattr(detector, "update_many", None)
        if batch is not None:
            detections = batch(values)
            if not detections:
                return detector, values, reset_in_replay
            values = values[detections[-1] + 1 :]
            reset_in_replay = True
            continue
        update = detector.update
        for i, value in enumerate(values):
            update(value)
            if detector.drift_detected:
                values = values[i + 1 :]
                reset_in_replay = True
                break
        else:
            return detector, values, reset_in_replay


# Page-Hinkley's and DDM's whole state: a few numbers, saved as they are (``native`` in the state), so
# that a restore sets them instead of replaying up to ``history`` inputs through River. These are
# River 0.26.1's attribute names (requirements.txt pins it); a detector without them saves no
# ``native`` and is replayed. Infinite values (before the first inputs) save as None.
NATIVE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "page_hinkley": ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease"),
        "ddm": ("_p_min", "_s_min", "_ps_min", "_warning_detected"),
    }
)
# The running mean each keeps (river.stats.Mean: n and _mean).
NATIVE_MEAN: Final[Mapping[str, str]] = MappingProxyType({"page_hinkley": "_x_mean", "ddm": "_p"})


def native_state(kind: str, detector: Any) -> dict[str, Any] | None:
    """The detector's ``native`` numbers, or ``None`` for a kind (or River version) without them."""
    if kind not in NATIVE_FIELDS:
        return None
    try:
        mean = getattr(detector, NATIVE_MEAN[kind])
        values = {name: getattr(detector, name) for name in NATIVE_FIELDS[kind]}
        values["mean_n"], values["mean"] = mean.n, mean._mean
    except AttributeError:
        return None
    return {name: None if isinstance(v, float) and math.isinf(v) else v for name, v in values.items()}


def set_native_state(kind: str, detector: Any, native: Any) -> None:
    """Check saved ``native`` numbers and set them on a fresh detector of ``kind``."""
    fields = (*NATIVE_FIELDS[kind], "mean_n", "mean")
    if not isinstance(native, Mapping) or set(native) != set(fields):
        raise ValueError(f"detector state: {kind} native state must hold {sorted(fields)}")
    values: dict[str, Any] = {}
    for name in fields:
        value = native[name]
        if name == "_warning_detected":
            if not isinstance(value, bool):
                raise ValueError(f"detector state: {kind} {name} must be a boolean, got {value!r}")
        elif value is None:
            # Infinite before the first inputs; p_min and s_min are None until DDM's warm start ends.
            value = None if name in ("_p_min", "_s_min") else math.inf
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"detector state: {kind} {name} must be a finite number, got {value!r}")
        values[name] = value
    mean = getattr(detector, NATIVE_MEAN[kind])
    mean.n, mean._mean = float(values.pop("mean_n")), float(values.pop("mean"))
    for name, value in values.items():
        setattr(detector, name, value)


def non_negative_int(value: object, name: str) -> int:
    """A state entry that must be a non-negative integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"detector state: {name} must be a non-negative integer, got {value!r}")
    return value
