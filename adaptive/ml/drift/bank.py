"""Several streaming detectors on one error stream, saved together."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypedDict

from adaptive.ml.drift.detector import DEFAULT_HISTORY, DETECTOR_KINDS, STATE_FORMAT, ParamValue, StreamDetector
from adaptive.ml.drift.detector_state import non_negative_int


class DetectorSignal(TypedDict):
    """What one detector of a bank says about one batch of errors."""

    detections: list[int]  # positions within the batch
    drift: bool  # at least one detection in the batch


class DetectorBank:
    """Several detectors (by default all four kinds) on one error stream, saved together.

    The state stores the shared recent stream once: every detector's since-reset inputs are a suffix
    of it. With ``ddm`` in the bank the stream must be 0/1 misclassifications; build the bank from
    the other kinds for real-valued errors.
    """

    def __init__(
        self,
        kinds: Iterable[str] = DETECTOR_KINDS,
        params: Mapping[str, Mapping[str, ParamValue]] | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        seed: int = 0,
    ) -> None:
        kinds = list(kinds)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"a bank needs distinct detector kinds, got {kinds}")
        params = params or {}
        unknown = sorted(set(params) - set(kinds))
        if unknown:
            raise ValueError(f"parameters given for kinds not in the bank: {unknown}")
        self._history = history
        self._seed = seed
        self._detectors = {kind: StreamDetector(kind, params.get(kind), history=history, seed=seed) for kind in kinds}

    @property
    def detectors(self) -> Mapping[str, StreamDetector]:
        """The detectors by kind, read-only. Feed them through the bank, so their streams stay aligned."""
        return MappingProxyType(self._detectors)

    def update_many(self, xs: Iterable[float]) -> dict[str, DetectorSignal]:
        """Feed errors to every detector; per kind, the batch positions that raised a detection.

        All inputs are checked by every detector first, so an invalid one changes none of them.
        """
        raw = list(xs)
        # Every kind but DDM checks inputs alike: check once per rule, then feed the checked floats.
        checked: dict[bool, list[float]] = {}
        for kind, detector in self._detectors.items():
            rule = kind == "ddm"
            if rule not in checked:
                checked[rule] = detector._validated_many(raw)
        signals: dict[str, DetectorSignal] = {}
        for kind, detector in self._detectors.items():
            detections = detector._feed(checked[kind == "ddm"])
            signals[kind] = {"detections": detections, "drift": bool(detections)}
        return signals

    def state_dict(self) -> dict[str, Any]:
        """The bank's state as JSON-able plain values; :meth:`from_state` rebuilds it."""
        states = {kind: detector.state_dict() for kind, detector in self._detectors.items()}
        shared: list[float] = max((state["stream"] for state in states.values()), key=len)
        detectors: dict[str, dict[str, Any]] = {}
        for kind, state in states.items():
            own = state.pop("stream")
            if own and shared[len(shared) - len(own) :] != own:
                raise ValueError(f"{kind} has seen a different stream from the rest of the bank")
            state["stream_length"] = len(own)
            for shared_key in ("format", "history", "seed"):
                del state[shared_key]
            detectors[kind] = state
        return {
            "format": STATE_FORMAT,
            "history": self._history,
            "seed": self._seed,
            "stream": shared,
            "detectors": detectors,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DetectorBank:
        """Rebuild a bank from :meth:`state_dict`'s output."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown bank state format {state.get('format')!r}, expected {STATE_FORMAT}")
        try:
            history, seed, shared, entries = state["history"], state["seed"], state["stream"], state["detectors"]
            detectors = {}
            for kind, entry in entries.items():
                length = non_negative_int(entry["stream_length"], "stream_length")
                if length > len(shared):
                    raise ValueError(f"{kind}: stream_length {length} exceeds the stored stream ({len(shared)})")
                own = {key: value for key, value in entry.items() if key != "stream_length"}
                own.update(format=STATE_FORMAT, history=history, seed=seed, stream=shared[len(shared) - length :])
                detectors[kind] = StreamDetector.from_state(own)
        except KeyError as exc:
            raise ValueError(f"bank state lacks {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"bank state is malformed: {exc}") from None
        bank = cls(list(detectors), {kind: d.params for kind, d in detectors.items()}, history=history, seed=seed)
        bank._detectors = detectors
        return bank
