"""Error memories for ReLoop2's self-correcting loop (Zhu et al., KDD 2023).

A memory stores, for every labeled event, the model's key ``h`` (last hidden layer, centred and
L2-normalised, see ``adaptive.ml.compensation``), the label ``y`` and the base score ``p_base`` the
model gave at prediction time. Reading it for a query key ``h_q`` returns

* ``y_bar = sum_i a_i y_i`` and ``p_bar = sum_i a_i p_i`` with ``a = softmax(s / tau)`` over the
  neighbours' similarities ``s_i`` (the paper's attention-style read), and
* ``support``: how much evidence stands behind that estimate, 0 when nothing is known, so that
  compensation can shrink thin estimates toward "no correction".

Two kinds share the ``ErrorMemory`` interface:

* ``ExactMemory``: a bounded ring buffer read by cosine top-k. Accurate; cost grows with its size.
* ``SketchMemory``: the paper's constant-size LSH sketch, K tables of 2^L buckets addressed by
  signed random projections. O(1) add and read per row, whatever the stream length. By default
  each bucket answers as a local linear model (its mean plus a first-order term toward the query)
  and is trusted by its row count; ``prior=None`` gives the paper's plain bucket means.

Labels: for a binary memory (``n_outputs == 1``) labels are 0/1 (floats in [0, 1] are accepted)
and base scores are P(y = 1) of shape [N]; for a multiclass memory (``n_outputs == C >= 2``)
labels are class indexes [N] and base scores probability vectors [N, C]. Inside, ``y`` is one-hot
for multiclass, so the same weighted sums give class frequencies. ``Readout`` fields are [N] for
binary and [N, C] for multiclass.

State travels as plain tensors (``state_dict``), including the config (``config.*`` entries), so a
memory can be saved with safetensors and rebuilt with ``memory_from_state_dict`` and no pickle.

The package, by module: ``config`` (defaults, limits, ``MemoryConfigError``), ``base``
(``ErrorMemory``, ``Readout``), ``exact`` and ``sketch`` (the two kinds, each with the tuning
constants of its read and add), ``state`` (the ``config.*`` entries of a state dict,
``MemoryStateError``) and ``factory`` (``make_memory``, ``memory_from_state_dict``). Everything
public is re-exported here; patch a tuning constant in the module that uses it.
"""

from __future__ import annotations

from adaptive.ml.memory.base import (
    ErrorMemory,
    Readout,
)
from adaptive.ml.memory.config import (
    DEFAULT_EXACT_CAPACITY,
    DEFAULT_EXACT_K,
    DEFAULT_SKETCH_BITS,
    DEFAULT_SKETCH_HALF_LIFE,
    DEFAULT_SKETCH_PRIOR,
    DEFAULT_SKETCH_SEED,
    DEFAULT_SKETCH_TABLES,
    DEFAULT_SKETCH_TAU,
    DEFAULT_TAU,
    MAX_DIM,
    MAX_EXACT_CAPACITY,
    MAX_EXACT_K,
    MAX_HALF_LIFE,
    MAX_OUTPUTS,
    MAX_PRIOR,
    MAX_SKETCH_BITS,
    MAX_SKETCH_BUCKETS,
    MAX_SKETCH_TABLES,
    MAX_TAU,
    MEMORY_KINDS,
    MIN_PRIOR,
    MIN_TAU,
    PARAMS_BY_KIND,
    MemoryConfigError,
)
from adaptive.ml.memory.exact import (
    EXACT_CHUNK_ELEMENTS,
    EXACT_MIN_GROUP_SIZE,
    EXACT_MIN_GROUPED_ELEMENTS,
    EXACT_QUERY_GROUP,
    ExactMemory,
)
from adaptive.ml.memory.factory import (
    make_memory,
    memory_from_state_dict,
)
from adaptive.ml.memory.sketch import (
    EMPTY_BUCKET_BIAS,
    MAX_ROW_WEIGHT,
    SKETCH_ADD_CHUNK,
    SKETCH_READ_ELEMENTS,
    SketchMemory,
)
from adaptive.ml.memory.state import (
    MemoryStateError,
    config_from_state_dict,
)

__all__ = [
    "DEFAULT_EXACT_CAPACITY",
    "DEFAULT_EXACT_K",
    "DEFAULT_SKETCH_BITS",
    "DEFAULT_SKETCH_HALF_LIFE",
    "DEFAULT_SKETCH_PRIOR",
    "DEFAULT_SKETCH_SEED",
    "DEFAULT_SKETCH_TABLES",
    "DEFAULT_SKETCH_TAU",
    "DEFAULT_TAU",
    "EMPTY_BUCKET_BIAS",
    "EXACT_CHUNK_ELEMENTS",
    "EXACT_MIN_GROUPED_ELEMENTS",
    "EXACT_MIN_GROUP_SIZE",
    "EXACT_QUERY_GROUP",
    "MAX_DIM",
    "MAX_EXACT_CAPACITY",
    "MAX_EXACT_K",
    "MAX_HALF_LIFE",
    "MAX_OUTPUTS",
    "MAX_PRIOR",
    "MAX_ROW_WEIGHT",
    "MAX_SKETCH_BITS",
    "MAX_SKETCH_BUCKETS",
    "MAX_SKETCH_TABLES",
    "MAX_TAU",
    "MEMORY_KINDS",
    "MIN_PRIOR",
    "MIN_TAU",
    "PARAMS_BY_KIND",
    "SKETCH_ADD_CHUNK",
    "SKETCH_READ_ELEMENTS",
    "ErrorMemory",
    "ExactMemory",
    "MemoryConfigError",
    "MemoryStateError",
    "Readout",
    "SketchMemory",
    "config_from_state_dict",
    "make_memory",
    "memory_from_state_dict",
]
