"""What an error memory may be configured with: defaults, limits and the checks that apply them.

The defaults were tuned on the development streams by ``bench/stream_replay.py --tune``; the
figures behind each choice are in bench/README.md and bench/RESULTS-stream-replay.md. The limits
exist because params come from users, through deployment settings.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Final

# --- defaults -------------------------------------------------------------------------------------
# The paper's ranges are tau about 0.1 and k 70-180. The exact memory reads its top 100 with a
# sharper tau; its 50k-row window scored within noise of a larger one at a fraction of the read
# cost. The sketch's 16 tables of 2^10 buckets, read with a prior of 20 rows, is the smallest shape
# that keeps most of the exact memory's gain on both streams.

DEFAULT_TAU: Final = 0.05
DEFAULT_EXACT_CAPACITY: Final = 50_000
DEFAULT_EXACT_K: Final = 100
DEFAULT_SKETCH_TAU: Final = 0.1
DEFAULT_SKETCH_TABLES: Final = 16
DEFAULT_SKETCH_BITS: Final = 10
DEFAULT_SKETCH_SEED: Final = 0
# Exponential forgetting: a row's weight halves every ``half_life`` rows, the sketch's analogue of the
# exact memory's bounded window (None: plain sums over the whole stream, as in the paper). 20k rows
# gives rows a mean age close to that of a full 50k-row exact window. Without it a sketch fed a
# whole year stays full of summer rows in autumn (bench/README.md).
DEFAULT_SKETCH_HALF_LIFE: Final[float | None] = 20_000.0
# Pseudo-rows of the sketch read: a bucket of n rows is trusted n / (n + prior). None: the paper's
# plain read (bucket means weighted by centroid similarity only), which memories saved before the
# prior existed keep.
DEFAULT_SKETCH_PRIOR: Final[float | None] = 20.0

# Each kind's constructor parameters beyond dim and n_outputs, with the type each must have:
# make_memory, ErrorMemory.config() and the config.* state entries are all driven by this.
PARAMS_BY_KIND: Final = MappingProxyType(
    {
        "exact": MappingProxyType({"capacity": int, "k": int, "tau": float}),
        "sketch": MappingProxyType(
            {"n_tables": int, "n_bits": int, "tau": float, "seed": int, "half_life": float, "prior": float}
        ),
    }
)
MEMORY_KINDS: Final = ("exact", "sketch")

# --- limits (params come from users through deployment settings) --------------------------------

MAX_DIM: Final = 4096
MAX_OUTPUTS: Final = 10_000
MAX_EXACT_CAPACITY: Final = 50_000_000
MAX_EXACT_K: Final = 10_000
MAX_SKETCH_TABLES: Final = 64
MAX_SKETCH_BITS: Final = 20
# Caps K * 2^L: the tables hold (1 + 2 W + D) float64 sums plus a float32 read copy per bucket, and
# bucket numbers are computed as int32 (CPU) or float32 (elsewhere) integers, exact below 2^24.
MAX_SKETCH_BUCKETS: Final = 2**20
MIN_TAU: Final = 1e-3
MAX_TAU: Final = 100.0
MAX_HALF_LIFE: Final = 1e12
MIN_PRIOR: Final = 1e-3
MAX_PRIOR: Final = 1e9


class MemoryConfigError(ValueError):
    """A memory kind or parameter is not usable."""


def int_param(name: str, value: object, low: int, high: int) -> int:
    """``value`` when it is an integer (not a bool) in ``low..high``; ``MemoryConfigError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MemoryConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def float_param(name: str, value: object, low: float, high: float) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]``; ``MemoryConfigError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MemoryConfigError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise MemoryConfigError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)
