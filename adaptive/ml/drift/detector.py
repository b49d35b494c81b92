"""Streaming drift detectors on a stream of per-event errors, saved as JSON and never pickled.

:class:`StreamDetector` wraps River's ADWIN, Page-Hinkley and DDM, and KSWIN (:mod:`adaptive.ml.kswin`:
River's detector, tested a batch at a time in NumPy instead of one SciPy call per event). Its state
is the detector's settings plus the bounded recent input stream, which
:meth:`StreamDetector.from_state` replays into a freshly built detector (KSWIN's also keeps its
random generator, so it is put back without a replay). See :class:`StreamDetector` for when a
restore is exact.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import numpy as np
from river import drift as river_drift

from adaptive.ml.drift.detector_state import (
    NATIVE_FIELDS,
    RiverDetector,
    native_state,
    non_negative_int,
    replay,
    set_native_state,
)
from adaptive.ml.kswin import KSWIN

DetectorKind = Literal["adwin", "page_hinkley", "kswin", "ddm"]
DETECTOR_KINDS: Final = get_args(DetectorKind)

ParamValue = int | float | str

# Our defaults, on top of River's, chosen on stationary error streams with fixed seeds (false
# alarms) and on streams whose error rises (detection delay). ADWIN's delta is River's.
# Page-Hinkley watches increases only: an error that falls is no reason to retrain. KSWIN's alpha
# drops from River's 0.005 to 1e-4 (the value of River's own example) because KSWIN tests at every
# step, and River's default raised false alarms on every stationary stream. DDM's warm start rises
# from 30 to 100 events: after 30 its minimum error rate rests on too few events and raises false
# alarms, while detection delays after a rise barely move.
DEFAULT_DETECTOR_PARAMS: Final[Mapping[str, Mapping[str, ParamValue]]] = MappingProxyType(
    {
        "adwin": {"delta": 0.002},
        "page_hinkley": {"mode": "up"},
        "kswin": {"alpha": 0.0001},
        "ddm": {"warm_start": 100},
    }
)
# The River constructor arguments a caller may set; KSWIN's ``seed`` has its own argument, and its
# ``window`` is how an approximate restore hands over the sliding window.
_ALLOWED_PARAMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "adwin": frozenset({"delta", "clock", "max_buckets", "min_window_length", "grace_period"}),
        "page_hinkley": frozenset({"min_instances", "delta", "threshold", "alpha", "mode"}),
        "kswin": frozenset({"alpha", "window_size", "stat_size"}),
        "ddm": frozenset({"warm_start", "warning_threshold", "drift_threshold"}),
    }
)

# 5,000 recent errors: about 100 kB of JSON per stream. ADWIN, Page-Hinkley and DDM restore exactly
# while fewer events than this have passed since their last detection; see StreamDetector.
DEFAULT_HISTORY: Final = 5000
STATE_FORMAT: Final = 1
# Input types that need no further check than finiteness (numpy floats are float subclasses, not these).
_PLAIN_NUMBERS: Final = frozenset({float, int, bool})


class StreamDetector:
    """One drift detector on a stream of per-event errors, with JSON-able saved state.

    ``kind`` is ``adwin``, ``page_hinkley``, ``kswin`` or ``ddm``; ``params`` override
    :data:`DEFAULT_DETECTOR_PARAMS` (River's constructor arguments); ``seed`` seeds KSWIN's sampling
    of its reference window. Inputs are real-valued errors (``|y - p|``, log loss); DDM models a
    Bernoulli error rate and takes 0/1 misclassifications only. Non-finite inputs raise
    ``ValueError``: a NaN would poison the running means for good.

    Saving without pickle. River's detectors reset themselves completely on the update after a
    detection, and are deterministic in between (KSWIN's sampler is reseeded at each reset). So a
    detector's state is a pure function of its settings and of the inputs since its last detection:
    :meth:`state_dict` keeps up to ``history`` of those inputs, and :meth:`from_state` replays them
    into a fresh detector. The restore is *exact* (the restored detector raises the same
    detections at the same steps as the original, for any future input) whenever at most
    ``history`` inputs have passed since the last detection; :attr:`restore_is_exact` says so.

    KSWIN's restore is always exact: its sliding window is the last ``window_size`` stored inputs
    (``history`` must cover ``window_size``) and its state also keeps its random generator
    (``sampler``), so it is rebuilt without running a test. A state saved without ``sampler`` (by
    River's KSWIN) gets its window back, and its sampler restarts from the seed.

    Beyond ``history`` the other restores are approximate, as if the detector had been reset
    ``history`` inputs ago: ADWIN and Page-Hinkley forget evidence older than ``history`` inputs
    (ADWIN's window is cut to the most recent ``history`` inputs, rounded down so its check clock
    keeps its phase), and DDM recomputes its minimum error rate over them.

    Detection is rare on a healthy stream (ADWIN at its default delta hardly ever fires on a
    stationary one), so long stationary runs do reach the approximate regime; what they lose is
    power against a very old baseline, not the recent window.
    """

    def __init__(
        self,
        kind: str,
        params: Mapping[str, ParamValue] | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        seed: int = 0,
    ) -> None:
        if kind not in DETECTOR_KINDS:
            raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {kind!r}")
        params = dict(params or {})
        unknown = sorted(set(params) - _ALLOWED_PARAMS[kind])
        if unknown:
            raise ValueError(f"{kind}: unknown parameters {unknown}; allowed: {sorted(_ALLOWED_PARAMS[kind])}")
        for name, value in params.items():
            # Only plain scalars, so that state_dict() stays JSON and from_state() rebuilds the same detector.
            if not isinstance(value, (int, float, str)):
                raise ValueError(f"{kind}: parameter {name!r} must be a number or a string, got {value!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive integer, got {history!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self._kind = kind
        self._params: dict[str, ParamValue] = {**DEFAULT_DETECTOR_PARAMS[kind], **params}
        self._history = history
        self._seed = seed
        self._detector = self._build()
        if kind == "kswin" and history < self._kswin_window_size:
            raise ValueError(f"kswin: history ({history}) must cover window_size ({self._kswin_window_size})")
        # Inputs since the detector's last reset (its last detection), the most recent `history` of them.
        self._stream: deque[float] = deque(maxlen=history)
        self._since_reset = 0
        self._n_seen = 0
        self._n_detections = 0
        self._last_detection_at: int | None = None
        self._drift_detected = False

    # -- reading ----------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """Which River detector this is."""
        return self._kind

    @property
    def params(self) -> dict[str, ParamValue]:
        """The detector's constructor arguments, defaults included (a copy)."""
        return dict(self._params)

    @property
    def history(self) -> int:
        """How many recent inputs the saved state keeps at most."""
        return self._history

    @property
    def seed(self) -> int:
        """KSWIN's sampling seed (kept, unused, by the other kinds)."""
        return self._seed

    @property
    def drift_detected(self) -> bool:
        """Whether the last input raised a detection."""
        return self._drift_detected

    @property
    def warning_detected(self) -> bool:
        """DDM's warning zone after the last input; always False for the other kinds."""
        return bool(getattr(self._detector, "warning_detected", False))

    @property
    def n_seen(self) -> int:
        """How many inputs the detector has taken, over its whole life (restores included)."""
        return self._n_seen

    @property
    def n_detections(self) -> int:
        """How many detections it has raised, over its whole life."""
        return self._n_detections

    @property
    def last_detection_at(self) -> int | None:
        """0-based index, in the whole stream, of the input that raised the last detection."""
        return self._last_detection_at

    @property
    def since_reset(self) -> int:
        """How many inputs have passed since the last detection (or since the start)."""
        return self._since_reset

    @property
    def restore_is_exact(self) -> bool:
        """Whether :meth:`from_state` of the current state rebuilds this detector exactly.

        Always for KSWIN, Page-Hinkley and DDM, whose state keeps what they hold; for ADWIN while at
        most ``history`` inputs have passed since the last detection.
        """
        return (
            self._since_reset <= self._history
            or hasattr(self._detector, "sampler_state")
            or self._kind in NATIVE_FIELDS
        )

    # -- updating ---------------------------------------------------------------------------------

    def update(self, x: float) -> bool:
        """Feed one error; True when it raises a detection."""
        return bool(self._feed([self._validated(x)]))

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed errors in order; the positions *within xs* of those that raised a detection.

        All inputs are checked before any is fed, so an invalid one leaves the detector unchanged.
        """
        return self._feed(self._validated_many(xs))

    def _feed(self, values: list[float]) -> list[int]:
        """Feed checked inputs; the positions of those that raised a detection."""
        if not values:
            return []
        detector = self._detector
        batch = getattr(detector, "update_many", None)
        if batch is not None:
            detections: list[int] = batch(values)  # the vectorised KSWIN: the whole batch at once
        else:
            detections = []
            update = detector.update
            for i, value in enumerate(values):
                update(value)
                if detector.drift_detected:
                    detections.append(i)
        start = self._n_seen
        self._n_seen += len(values)
        if detections:
            # River resets the detector on its next update and drops everything seen so far; drop
            # the same inputs now, so a state saved in between replays nothing and stays exact.
            last = detections[-1]
            self._stream.clear()
            self._stream.extend(values[last + 1 :])
            self._since_reset = len(values) - last - 1
            self._n_detections += len(detections)
            self._last_detection_at = start + last
            self._drift_detected = last == len(values) - 1
        else:
            self._stream.extend(values)
            self._since_reset += len(values)
            self._drift_detected = False
        return detections

    def _validated_many(self, xs: Iterable[object]) -> list[float]:
        """The inputs as floats, checked as :meth:`_validated` checks one, in one NumPy pass."""
        values = list(xs)
        # Exact types first: an isinstance() against numbers.Real per input would cost more than
        # the detectors themselves.
        if set(map(type, values)) <= _PLAIN_NUMBERS:
            array = np.asarray(values, dtype=np.float64)
            if np.all(np.isfinite(array)) and (self._kind != "ddm" or np.all((array == 0.0) | (array == 1.0))):
                checked: list[float] = array.tolist()
                return checked
        return [self._validated(x) for x in values]  # raises with the first bad input, or converts the rest

    def _validated(self, x: object) -> float:
        # Booleans are welcome: a misclassification flag is a 0/1 error (numpy's bool is no numbers.Real).
        if not isinstance(x, (numbers.Real, np.bool_)):
            raise ValueError(f"{self._kind}: errors must be real numbers, got {x!r}")
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"{self._kind}: errors must be finite, got {value}")
        if self._kind == "ddm" and value not in (0.0, 1.0):
            raise ValueError(
                f"ddm takes 0/1 misclassification errors, got {value}; use another kind for real-valued errors"
            )
        return value

    # -- saving and restoring ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The detector's state as JSON-able plain values; :meth:`from_state` rebuilds it.

        KSWIN's also holds ``sampler``, its random generator's state (625 integers in base64): with the
        stored inputs, which cover its window, that makes its restore exact at any stream length.
        """
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "kind": self._kind,
            "params": dict(self._params),
            "seed": self._seed,
            "history": self._history,
            "stream": list(self._stream),
            "since_reset": self._since_reset,
            "n_seen": self._n_seen,
            "n_detections": self._n_detections,
            "last_detection_at": self._last_detection_at,
            "drift_detected": self._drift_detected,
        }
        sampler_state = getattr(self._detector, "sampler_state", None)
        if sampler_state is not None:
            state["sampler"] = sampler_state()
            position = getattr(self._detector, "sampler_position", None)
            if position is not None:
                state["sampler_position"] = position
        native = native_state(self._kind, self._detector)
        if native is not None and not self._drift_detected:  # after a detection River starts afresh
            state["native"] = native
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StreamDetector:
        """Rebuild a detector from :meth:`state_dict`'s output by replaying its stored stream.

        Raises ``ValueError`` on a state this module did not write (wrong format, inconsistent counts).
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown detector state format {state.get('format')!r}, expected {STATE_FORMAT}")
        try:
            detector = cls(state["kind"], state["params"], history=state["history"], seed=state["seed"])
            stream = detector._validated_many(state["stream"])
            since_reset = non_negative_int(state["since_reset"], "since_reset")
            n_seen = non_negative_int(state["n_seen"], "n_seen")
            n_detections = non_negative_int(state["n_detections"], "n_detections")
            last_detection_at = state["last_detection_at"]
            drift_detected = state["drift_detected"]
        except KeyError as exc:
            raise ValueError(f"detector state lacks {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"detector state is malformed: {exc}") from None
        if len(stream) != min(since_reset, detector.history) or since_reset > n_seen:
            raise ValueError(
                f"detector state is inconsistent: {len(stream)} stored inputs, {since_reset} since reset, "
                f"{n_seen} seen, history {detector.history}"
            )
        if last_detection_at is not None:
            last_detection_at = non_negative_int(last_detection_at, "last_detection_at")
        if (last_detection_at is None) != (n_detections == 0) or not isinstance(drift_detected, bool):
            raise ValueError("detector state is inconsistent: detection counters disagree")
        if drift_detected and stream:
            raise ValueError("detector state is inconsistent: inputs stored past a detection")
        sampler = state.get("sampler")
        native = state.get("native")
        if sampler is not None and hasattr(detector._detector, "set_sampler_state"):
            detector._restore_kswin(stream, since_reset, sampler, state.get("sampler_position"), drift_detected)
        elif native is not None and not drift_detected:
            set_native_state(detector._kind, detector._detector, native)
            detector._stream = deque(stream, maxlen=detector._history)
            detector._since_reset = since_reset
        else:
            detector._restore_stream(stream, since_reset)
        detector._n_seen = n_seen
        detector._n_detections = n_detections
        detector._last_detection_at = last_detection_at
        # After a detection the stream is empty and the fresh River detector already matches the
        # original's state after its pending reset; only the flag itself needs carrying over.
        detector._drift_detected = drift_detected
        return detector

    def _restore_kswin(
        self, stream: list[float], since_reset: int, sampler: Any, position: Any, drift_detected: bool
    ) -> None:
        """Put KSWIN back as it was: its window is the last ``window_size`` stored inputs (none
        after a detection), its sampler the saved generator state. No test is run again."""
        detector = self._build()
        assert isinstance(detector, KSWIN)  # from_state checked that the built detector keeps a sampler
        if position is not None:
            position = non_negative_int(position, "sampler_position")
        try:
            detector.set_sampler_state(sampler, position)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"detector state: kswin sampler is malformed: {exc}") from None
        detector.restore(stream, drift_detected=drift_detected, n=since_reset)
        self._detector = detector
        self._stream = deque(stream, maxlen=self._history)
        self._since_reset = since_reset

    def _restore_stream(self, stream: list[float], since_reset: int) -> None:
        """Rebuild the River detector from the inputs since its last reset (or the last `history`)."""
        if since_reset == len(stream):
            replay_values = stream
        elif self._kind == "kswin":
            # A state saved without the sampler (before it was kept, or by River's KSWIN): the
            # sliding window is all the data KSWIN holds; hand it over without running the tests a
            # replay would run (their subsamples would differ from the original's).
            window = stream[-self._kswin_window_size :]
            self._detector = self._build(window=window)
            self._stream = deque(stream, maxlen=self._history)
            self._since_reset = since_reset
            return
        elif self._kind == "adwin":
            # ADWIN checks for change every `clock` inputs since its reset; drop a multiple of the
            # clock from the front so the checks still fall on the same future inputs.
            clock = int(getattr(self._detector, "clock", 1))
            replay_values = stream[(len(stream) - since_reset) % clock :]
        else:
            replay_values = stream
        detector, replay_left, reset_in_replay = replay(self._build, replay_values)
        self._detector = detector
        if reset_in_replay:
            self._stream = deque(replay_left, maxlen=self._history)
            self._since_reset = len(replay_left)
        else:
            self._stream = deque(stream, maxlen=self._history)
            self._since_reset = since_reset

    def _build(self, window: Sequence[float] | None = None) -> RiverDetector:
        params: dict[str, Any] = dict(self._params)
        if self._kind == "adwin":
            return river_drift.ADWIN(**params)
        if self._kind == "page_hinkley":
            return river_drift.PageHinkley(**params)
        if self._kind == "kswin":
            # The vectorised KSWIN (adaptive.ml.kswin); River's class fits here too (the window-close
            # benchmark swaps it in as the "before" baseline).
            return KSWIN(**params, seed=self._seed, window=window)
        return river_drift.binary.DDM(**params)

    @property
    def _kswin_window_size(self) -> int:
        return int(getattr(self._detector, "window_size", 0))

    def __repr__(self) -> str:
        return (
            f"StreamDetector({self._kind!r}, n_seen={self._n_seen}, n_detections={self._n_detections}, "
            f"drift_detected={self._drift_detected})"
        )
