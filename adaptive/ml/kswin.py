"""KSWIN (Kolmogorov-Smirnov windowing) that tests a whole batch of inputs at once.

River's ``river.drift.KSWIN`` (0.26.1) runs one SciPy two-sample KS test per input, which made it
most of the monitoring worker's cost per label and held the worker far below the rate the API
takes labels at (issue 14; figures in bench/README.md).
:class:`KSWIN` here makes the same decisions at the same inputs, from the same random draws:

* **The window and the samples.** A sliding window of the last ``window_size`` inputs; once full,
  every input triggers a test of the last ``stat_size`` inputs against ``stat_size`` of the older
  ones, drawn by ``random.Random(seed).sample(range(window_size - stat_size), stat_size)`` (River's
  call). The draws are reproduced exactly for a whole batch at once (:func:`sample_many`); the
  generator is reseeded at every reset, as River does. So every detector with one seed draws the
  same samples after a reset: they are drawn once per process and shared (:class:`_Sequence`).
* **The statistic.** For two samples of one size ``n`` the KS distance is ``h / n`` for an integer
  ``h``: the largest gap between the two samples' counts at or below any value. With the values
  replaced by their ranks, one sort of every test's ``2n`` ranks (``[tests, 2n]``) and one
  cumulative sum give all ``h`` at once.
* **The p-value** depends on ``(n, h)`` only: SciPy's ``ks_2samp(method="auto")`` (River's call) is
  exact for ``n <= 10,000`` and rounds the distance to ``h / n`` before it computes anything. So it
  is computed once per distinct ``h``, by the same SciPy call on two samples built to have that
  distance, and cached for the life of the process.
* **The rule** is River's: drift when ``p <= alpha`` and ``h / n > 0.1``; the detector then resets
  on its next input (empty window, reseeded sampler).

A detection resets the detector, so what follows depends on where it happened: the batch is tested
in passes, each up to its first detection, and the next pass starts from the reset.

Besides its window, its state is the generator's (:meth:`KSWIN.sampler_state`: 625 integers, in
base64, and :attr:`KSWIN.sampler_position`, how far into the shared sequence it is): that is
everything the detector holds, so a restored detector continues exactly (River's could not be
restored without pickling its generator). Pure NumPy and SciPy: no Django.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import random
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

# SciPy's ks_2samp is exact (and rounds its statistic to h / n) up to this sample size; above it it
# switches to an asymptotic formula on the unrounded statistic, which this module does not mirror.
MAX_STAT_SIZE: Final = 10_000
# River's second condition: a distance at or below this never counts as drift, whatever the p-value.
MIN_DISTANCE: Final = 0.1

_WORD_BITS: Final = 32
# random.Random.getstate()'s words: the 624 of the Mersenne Twister and the position in them.
_MT_STATE_WORDS: Final = 625
# Mersenne Twister outputs drawn per sample beyond the expected number, in standard deviations:
# running short only costs a second, larger draw.
_SPARE_WORDS_SD: Final = 6.0

# Tests per pass over a batch (see KSWIN.update_many): the first covers a 1,000-label window in one
# pass; after a detection 512 (a detection needs a new full window first, so they rarely cluster);
# doubling while none comes, up to a size that bounds a pass's arrays (a few MB).
_FIRST_PASS_TESTS: Final = 1024
_TESTS_AFTER_DETECTION: Final = 512
_MAX_PASS_TESTS: Final = 8192

_p_values: dict[tuple[int, int], float] = {}


def ks_p_value(n: int, h: int) -> float:
    """SciPy's two-sided ``ks_2samp(method="auto")`` p-value for two samples of size ``n`` at distance ``h / n``.

    ``ks_2samp`` computes its p-value from ``n`` and the rounded distance alone, so two samples built
    to be exactly ``h`` apart (``0..n-1`` against ``h..n+h-1``) give the value that any samples at
    that distance get. Cached: a detector asks for a handful of distinct ``h``.
    """
    key = (n, h)
    cached = _p_values.get(key)
    if cached is None:
        first = np.arange(n, dtype=np.float64)
        # Like River: when the exact computation fails SciPy falls back to the asymptotic one with a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            result = stats.ks_2samp(first, first + h, method="auto")
        if round(float(result.statistic) * n) != h:  # a SciPy whose rounding changed: not River's p-values
            raise RuntimeError(f"ks_2samp gave distance {result.statistic} for {h}/{n}")
        cached = _p_values[key] = float(result.pvalue)
    return cached


def ks_distances(first: NDArray[np.float64], second: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per row, the two-sample KS distance of ``first[i]`` and ``second[i]`` (both ``[tests, n]``) times ``n``.

    Ties count as ``ks_2samp`` counts them (its empirical CDFs are taken at every value, right-closed).
    """
    both = np.concatenate([first, second], axis=1)
    _, ranks = np.unique(both, return_inverse=True)
    return _ks_distances_of_ranks(ranks.reshape(both.shape), first.shape[1])


def _ks_distances_of_ranks(ranks: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """:func:`ks_distances` of ``ranks[:, :n]`` against ``ranks[:, n:]``, values given by their ranks
    (equal values, equal ranks): sorting small integers is several times faster than floats.

    Each value is sorted as ``2 * rank + sample``; the running count difference is then read only
    where a run of one rank ends, so the order within a run of ties does not matter.
    """
    keys = 2 * ranks.astype(np.int32)  # a pass holds far fewer than 2^30 values
    keys[:, n:] += 1
    keys.sort(axis=1)
    # int16 holds every count difference: 2n is at most 2 * MAX_STAT_SIZE.
    gaps = np.cumsum(1 - 2 * (keys & 1).astype(np.int16), axis=1, dtype=np.int16)
    run_ends = np.empty(keys.shape, dtype=bool)
    np.not_equal(keys[:, 1:] >> 1, keys[:, :-1] >> 1, out=run_ends[:, :-1])
    run_ends[:, -1] = True
    gaps = np.abs(gaps)
    gaps *= run_ends
    distances: NDArray[np.int64] = gaps.max(axis=1).astype(np.int64)
    return distances


def _set_size(k: int) -> int:
    """``random.sample``'s switch point: above this population size it draws into a set, not a pool."""
    size = 21
    if k > 5:
        size += 4 ** math.ceil(math.log(k * 3, 4))
    return size


@dataclass(frozen=True)
class _Draws:
    """How ``random.sample(range(n), k)`` turns Mersenne Twister outputs into picks, as a regex.

    ``randbelow(b)`` takes the top ``b.bit_length()`` bits of an output until they are below ``b``.
    The top ``bits`` bits of an output (``bits`` that of ``n``, the largest bound) decide every draw:
    draw ``i`` (bound ``n - i``, top ``bits_i`` bits) accepts it when those bits are below
    ``(n - i) << (bits - bits_i)``. Writing each output as one character of that value, a whole
    sample is ``([rejected by 0]*+([accepted by 0])...[rejected by k-1]*+([accepted by k-1]))``: the two
    classes of a draw are disjoint, so the match is unique; the inner groups are the accepted outputs.

    ``findall`` then reads sample after sample in one C call. Its matches follow each other without
    a gap: a sample can fail to match only where the outputs run out, and then none starting later
    matches either (a sample started later has made at most as many draws as the failed one at every
    output, since two draws at the same position move together from then on).
    """

    bits: int
    shifts: NDArray[np.int64]  # per draw, from ``bits`` top bits down to the draw's own
    pattern: re.Pattern[Any]
    mean_words: float  # outputs per sample: expected value and standard deviation
    sd_words: float

    @classmethod
    def build(cls, n: int, k: int) -> _Draws:
        bounds = [n - i for i in range(k)]
        bits = n.bit_length()
        shifts = np.array([bits - b.bit_length() for b in bounds], dtype=np.int64)
        limits = [b << int(shift) for b, shift in zip(bounds, shifts, strict=True)]
        top = 1 << bits
        # Bytes up to 8 bits, characters beyond (all below the surrogates, which UTF-32 cannot carry).
        char = (lambda v: f"\\x{v:02x}") if bits <= 8 else (lambda v: f"\\u{v:04x}")
        # Possessive (*+): a run of rejected outputs is never given back, which saves the engine's
        # backtracking bookkeeping (Python 3.11+).
        draws = "".join(f"[{char(limit)}-{char(top - 1)}]*+([{char(0)}-{char(limit - 1)}])" for limit in limits)
        body = f"({draws})"
        pattern = re.compile(body.encode("ascii") if bits <= 8 else body)
        accept = np.array(limits) / top
        return cls(
            bits,
            shifts,
            pattern,
            float(np.sum(1 / accept)),
            float(np.sqrt(np.sum((1 - accept) / accept**2))),
        )

    def encode(self, words: NDArray[np.int64]) -> bytes | str:
        top = words >> (_WORD_BITS - self.bits)
        if self.bits <= 8:
            return top.astype(np.uint8).tobytes()
        return top.astype("<u4").tobytes().decode("utf-32-le")

    def decode(self, matches: list[tuple[Any, ...]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """From ``findall``'s matches: the outputs used up to the end of each sample (cumulative), and
        every sample's draws ``[samples, k]`` as ``randbelow`` returned them."""
        columns = list(zip(*matches, strict=True))
        used = np.cumsum(np.fromiter(map(len, columns[0]), dtype=np.int64, count=len(matches)))
        empty: Any = b"" if self.bits <= 8 else ""
        top = np.empty((len(matches), len(columns) - 1), dtype=np.int64)
        for i, column in enumerate(columns[1:]):
            flat = empty.join(column)
            top[:, i] = np.frombuffer(flat if self.bits <= 8 else flat.encode("utf-32-le"), dtype=self._dtype)
        return used, top >> self.shifts

    @property
    def _dtype(self) -> str:
        return "u1" if self.bits <= 8 else "<u4"


@functools.lru_cache(maxsize=32)
def _draws(n: int, k: int) -> _Draws:
    return _Draws.build(n, k)


def sample_many(rng: random.Random, n: int, k: int, count: int) -> NDArray[np.int64]:
    """``count`` calls of ``rng.sample(range(n), k)`` as a ``[count, k]`` array, leaving ``rng`` as they would.

    CPython's ``sample`` on a small population (``n`` at most :func:`_set_size`, as KSWIN's is) draws
    ``randbelow(n - i)`` for ``i = 0..k-1`` and swaps each pick out of a pool. ``getrandbits(32 * m)``
    hands over ``m`` Mersenne Twister outputs at once; a regex (:class:`_Draws`) finds, sample after
    sample, which of them the draws accepted; the pool swaps then run for all samples together,
    several times faster than the calls.
    Larger populations (a set instead of a pool) and bounds of 2^15 and more call ``rng.sample``.

    The array is read-only: a call from the same generator state gets the last call's samples
    again. Detectors with one seed (the monitoring service's raw and compensated streams) draw the
    same samples until one of them resets, so the second one of a window draws nothing.
    """
    if count <= 0:
        return np.zeros((0, k), dtype=np.int64)
    start_state = rng.getstate()
    if _last_samples and _last_samples[0][0] == ((n, k, count), start_state):
        _, end_state, picked = _last_samples[0]
        rng.setstate(end_state)
        return picked
    if _pooled(n, k):
        picked, _ = _pooled_samples(rng, n, k, count)
    else:
        picked = np.array([rng.sample(range(n), k) for _ in range(count)], dtype=np.int64).reshape(count, k)
    picked.flags.writeable = False
    _last_samples[:] = [(((n, k, count), start_state), rng.getstate(), picked)]
    return picked


# Samples of the shared sequence after a reset (see _Sequence), drawn in chunks: 16 windows of 1,000
# tests, 0.5 MB for KSWIN's 30 of 70. Past them a detector draws from its own generator.
_SEQUENCE_SAMPLES: Final = 1 << 14
_SEQUENCE_CHUNK: Final = 1024

# The last sample_many call: ((n, k, count), generator state before), the state after, the samples.
_last_samples: list[tuple[tuple[tuple[int, int, int], Any], Any, NDArray[np.int64]]] = []


def _pooled(n: int, k: int) -> bool:
    """Whether :func:`_pooled_samples` reproduces ``random.sample(range(n), k)`` (its pool path)."""
    return 0 < k <= n <= _set_size(k) and n < 1 << 15


def _pooled_samples(rng: random.Random, n: int, k: int, count: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``count`` samples as :func:`sample_many` draws them on the pool path, and the generator outputs
    used up to the end of each one (cumulative)."""
    draws = _draws(n, k)
    words = math.ceil(count * draws.mean_words + _SPARE_WORDS_SD * draws.sd_words * math.sqrt(count)) + k
    start_state = rng.getstate()
    while True:
        matches = draws.pattern.findall(draws.encode(_mt_words(rng, words)))
        if len(matches) >= count:
            break
        rng.setstate(start_state)
        words *= 2
    used, drawn = draws.decode(matches[:count])
    # Leave the generator exactly as many outputs on as the samples used.
    rng.setstate(start_state)
    rng.getrandbits(_WORD_BITS * int(used[-1]))
    # random.sample's pool swaps, for every sample at once, in one flat array of the samples' pools.
    starts = np.arange(count) * n
    pools = np.tile(np.arange(n, dtype=np.int64), count)
    positions = np.ascontiguousarray((starts[:, None] + drawn).T)
    picked = np.empty((k, count), dtype=np.int64)
    for i in range(k):
        picked[i] = pools[positions[i]]
        pools[positions[i]] = pools[starts + (n - i - 1)]
    return np.ascontiguousarray(picked.T), used


class _Sequence:
    """The samples ``random.Random(seed)`` draws first, ``sample(range(n), k)`` after ``sample``.

    KSWIN reseeds its generator at every reset, so from a reset on every detector with one
    ``(seed, n, k)`` draws this same sequence: it is drawn once per process (:func:`_sequence`), a
    chunk at a time as detectors get further, up to :data:`_SEQUENCE_SAMPLES`. The generator's state
    at any point of it is rebuilt from the state at the start of its chunk.
    """

    def __init__(self, seed: int, n: int, k: int) -> None:
        self._n, self._k = n, k
        self._rng = random.Random(seed)
        self._samples = np.empty((_SEQUENCE_SAMPLES, k), dtype=np.uint8 if n <= 256 else np.uint16)
        self._samples.flags.writeable = False
        self._drawn = 0
        self._chunk_states: list[Any] = []  # the generator before each chunk
        self._chunk_words: list[NDArray[np.int64]] = []  # outputs used up to the end of each sample

    def take(self, start: int, count: int) -> NDArray[np.integer[Any]] | None:
        """Samples ``start .. start + count`` (read-only), or None past :data:`_SEQUENCE_SAMPLES`."""
        end = start + count
        if end > _SEQUENCE_SAMPLES:
            return None
        while self._drawn < end:
            self._chunk_states.append(self._rng.getstate())
            picked, used = _pooled_samples(self._rng, self._n, self._k, _SEQUENCE_CHUNK)
            self._samples.flags.writeable = True
            self._samples[self._drawn : self._drawn + _SEQUENCE_CHUNK] = picked
            self._samples.flags.writeable = False
            self._chunk_words.append(used)
            self._drawn += _SEQUENCE_CHUNK
        return self._samples[start:end]

    def state_at(self, index: int) -> Any:
        """The generator's state after the first ``index`` samples (``index`` at most those taken)."""
        chunk, offset = divmod(index, _SEQUENCE_CHUNK)
        if chunk == len(self._chunk_states):  # the end of the last chunk drawn
            return self._rng.getstate()
        rng = random.Random()
        rng.setstate(self._chunk_states[chunk])
        if offset:
            rng.getrandbits(_WORD_BITS * int(self._chunk_words[chunk][offset - 1]))
        return rng.getstate()


@functools.lru_cache(maxsize=8)
def _sequence(seed: int, n: int, k: int) -> _Sequence:
    return _Sequence(seed, n, k)


def _mt_words(rng: random.Random, m: int) -> NDArray[np.int64]:
    """The generator's next ``m`` 32-bit outputs (``getrandbits`` fills an integer from its low end)."""
    bits = rng.getrandbits(_WORD_BITS * m)
    return np.frombuffer(bits.to_bytes(4 * m, "little"), dtype="<u4").astype(np.int64)


class KSWIN:
    """River's KSWIN with batch updates and a JSON-able state; see the module docstring.

    Constructor arguments are River's. Settings River accepts but fails on at its first test
    (``stat_size`` 0, or an older part of the window smaller than ``stat_size``) raise ``ValueError``
    here, and so does ``stat_size`` above :data:`MAX_STAT_SIZE`. Inputs must be finite numbers.
    """

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int | None = None,
        window: Iterable[float] | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("Alpha must be between 0 and 1.")
        if not 1 <= stat_size <= MAX_STAT_SIZE:
            raise ValueError(f"stat_size must be in [1, {MAX_STAT_SIZE}], got {stat_size}")
        if window_size < 2 * stat_size:
            raise ValueError(f"window_size ({window_size}) must be at least twice stat_size ({stat_size})")
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        self._window: NDArray[np.float64] = np.empty(0)
        self._rng = random.Random(seed)
        # Where the generator is in the shared sequence of samples after a reset (_Sequence), while
        # it follows it; None once it draws on its own (``_rng`` is then its state).
        self._position: int | None = None
        self._reset()
        if window is not None:
            self._window = _finite(window)[-window_size:]

    def _reset(self) -> None:
        self._window = np.empty(0)
        self._rng = random.Random(self.seed)
        self._position = 0 if self._shared_sequence() is not None else None
        self._drift_detected = False
        self.p_value = 0.0
        self.n = 0

    @property
    def drift_detected(self) -> bool:
        """Whether the last input raised a detection."""
        return self._drift_detected

    @property
    def window(self) -> list[float]:
        """The sliding window, oldest first (after a detection: its last ``stat_size`` inputs, as River keeps)."""
        return self._window.tolist()

    def update(self, x: float) -> None:
        """Feed one input (River's interface)."""
        self.update_many([x])

    def update_many(self, xs: ArrayLike) -> list[int]:
        """Feed inputs in order; the positions within ``xs`` of those that raised a detection."""
        values = _finite(xs)
        detections: list[int] = []
        start = 0
        tests = _FIRST_PASS_TESTS
        while start < values.size:
            if self._drift_detected:
                self._reset()
            # Inputs up to the pass's last test; a pass that ends in a detection wastes the tests
            # after it, so passes start short after a detection and double while none comes.
            part = values[start : start + max(0, self.window_size - 1 - self._window.size) + tests]
            found = self._test(part)
            if found is None:
                start += part.size
                tests = min(2 * tests, _MAX_PASS_TESTS)
            else:
                detections.append(start + found)
                start += found + 1
                tests = _TESTS_AFTER_DETECTION
        return detections

    def _test(self, xs: NDArray[np.float64]) -> int | None:
        """Feed ``xs`` to a detector with no pending reset; the position of its first detection, if any.

        Stops right after that detection: the inputs after it belong to a reset detector.
        """
        size, stat = self.window_size, self.stat_size
        held = self._window.size
        data = np.concatenate([self._window, xs])
        self.n += xs.size
        # Input i fills the window to held + i + 1 values: it is tested once that reaches window_size.
        first = max(0, size - 1 - held)
        tests = xs.size - first
        if tests <= 0:
            self._window = data[-size:]
            return None
        ends = held + first + 1 + np.arange(tests)  # each tested window is data[end - size : end]
        older = self._draw(tests)
        # Each test's values as ranks in the pass's data: one sort of it instead of one per test.
        _, ranks = np.unique(data, return_inverse=True)
        tested = np.concatenate(
            [ranks[(ends - size)[:, None] + older], ranks[(ends - stat)[:, None] + np.arange(stat)]], axis=1
        )
        distances = _ks_distances_of_ranks(tested, stat)
        # The rule on each distinct distance, then per test.
        unique, which = np.unique(distances, return_inverse=True)
        p_values = np.array([ks_p_value(stat, int(h)) for h in unique])
        drifted = (p_values <= self.alpha) & (unique / stat > MIN_DISTANCE)
        hits = np.flatnonzero(drifted[which])
        if hits.size == 0:
            self._window = data[-size:]
            self.p_value = float(p_values[which[-1]])
            return None
        t = int(hits[0])
        # River's state after a detection at this input. The draws meant for later tests were made
        # on a generator that the reset replaces, and the inputs after it are fed again by the caller.
        self.n -= xs.size - (first + t + 1)
        self._window = data[ends[t] - stat : ends[t]]
        self.p_value = float(p_values[which[t]])
        self._drift_detected = True
        return first + t

    def _draw(self, tests: int) -> NDArray[np.integer[Any]]:
        """The older part's sample indices for the next ``tests`` tests: from the shared sequence
        while the generator follows it, else from the generator itself."""
        sequence = self._shared_sequence()
        if self._position is not None and sequence is not None:
            samples = sequence.take(self._position, tests)
            if samples is not None:
                self._position += tests
                return samples
            self._rng.setstate(sequence.state_at(self._position))
            self._position = None
        return sample_many(self._rng, self.window_size - self.stat_size, self.stat_size, tests)

    def _shared_sequence(self) -> _Sequence | None:
        """The sequence of samples the generator follows from a reset (see :class:`_Sequence`); None
        without a seed, or for a population that ``random.sample`` draws into a set."""
        n, k = self.window_size - self.stat_size, self.stat_size
        if self.seed is None or not _pooled(n, k):
            return None
        return _sequence(self.seed, n, k)

    # -- saving and restoring ---------------------------------------------------------------------

    def sampler_state(self) -> str:
        """The random generator's state: its 624 Mersenne Twister words and its position, as 625
        little-endian 32-bit integers in base64 (3.3 kB of JSON rather than 7 kB of numbers)."""
        state = self._rng.getstate()
        sequence = self._shared_sequence()
        if self._position is not None and sequence is not None:  # it follows the sequence: its state there
            state = sequence.state_at(self._position)
        _, internal, _ = state
        return base64.b64encode(np.asarray(internal, dtype="<u4").tobytes()).decode("ascii")

    @property
    def sampler_position(self) -> int | None:
        """How many samples the generator has drawn since the last reset, while that is all it has
        done (it follows the shared sequence); None otherwise. Saved with :meth:`sampler_state` so
        that a restored detector follows the sequence again."""
        return self._position

    def set_sampler_state(self, state: str, position: int | None = None) -> None:
        """Restore :meth:`sampler_state`'s output (and :attr:`sampler_position`'s); ``ValueError`` if
        it is not one. A position is only taken when the shared sequence has that state there."""
        if not isinstance(state, str):
            raise ValueError(f"a KSWIN sampler state is a base64 string, got {type(state).__name__}")
        try:
            raw = base64.b64decode(state, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"a KSWIN sampler state is base64: {exc}") from None
        if len(raw) != 4 * _MT_STATE_WORDS:
            raise ValueError(f"a KSWIN sampler state holds {_MT_STATE_WORDS} words, got {len(raw)} bytes")
        words = np.frombuffer(raw, dtype="<u4").tolist()
        if words[-1] > _MT_STATE_WORDS - 1:
            raise ValueError(f"a KSWIN sampler position is at most {_MT_STATE_WORDS - 1}, got {words[-1]}")
        # random.Random's own state layout: (version 3, 624 words + position, no cached gauss value).
        self._rng.setstate((3, tuple(words), None))
        self._position = None
        sequence = self._shared_sequence()
        if position is None or sequence is None or sequence.take(0, position) is None:
            return  # drawn on its own, or further than the shared sequence goes
        if sequence.state_at(position) == self._rng.getstate():
            self._position = position

    def restore(self, window: Sequence[float], *, drift_detected: bool, n: int) -> None:
        """Put back a window and flags saved elsewhere (the stream detector keeps the inputs)."""
        self._window = _finite(window)[-self.window_size :]
        self._drift_detected = drift_detected
        self.n = n

    def __repr__(self) -> str:
        return (
            f"KSWIN(alpha={self.alpha}, window_size={self.window_size}, stat_size={self.stat_size}, "
            f"seed={self.seed}, held={self._window.size}, drift_detected={self._drift_detected})"
        )


def _finite(values: Any) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError("KSWIN takes finite numbers")
    return array
