"""Error memories for ReLoop2's self-correcting loop (Zhu et al., KDD 2023; DESIGN.md 4.2).

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
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

# --- defaults, tuned on the dev streams (bench/stream_replay.py --tune; bench/RESULTS-stream-replay.md) --
# The paper's ranges are tau about 0.1 and k 70-180. Exact: k=100 with a sharper tau=0.05 won on both
# streams; 50k rows scored within noise of 100k at half the read cost. Sketch: 16 tables x 2^10
# buckets with tau=0.1, read with a prior of 20 rows (bucket trust and first-order term, see
# SketchMemory): 84% (flights) and 100% (MovieLens) of the exact memory's gain over the whole
# replay, 3 seeds. 32 tables keep 87% and 101% at twice the read cost and memory, 8 tables x 2^12
# 79% and 92%; with the paper's plain bucket means 16 x 2^10 keeps 70% and 73%.

DEFAULT_TAU: Final = 0.05
DEFAULT_EXACT_CAPACITY: Final = 50_000
DEFAULT_EXACT_K: Final = 100
DEFAULT_SKETCH_TAU: Final = 0.1
DEFAULT_SKETCH_TABLES: Final = 16
DEFAULT_SKETCH_BITS: Final = 10
DEFAULT_SKETCH_SEED: Final = 0
# Exponential forgetting: a row's weight halves every ``half_life`` rows, the sketch's analogue of the
# exact memory's bounded window (None: plain sums over the whole stream, as in the paper). 20k rows
# gives rows a mean age of 29k, close to the 25k of a full 50k-row exact window. It changed nothing
# on the tuning slots but was worth 11 points of the exact memory's gain on the whole flights year,
# where plain sums stay full of summer rows in autumn (bench/RESULTS-stream-replay.md).
DEFAULT_SKETCH_HALF_LIFE: Final[float | None] = 20_000.0
# Pseudo-rows of the sketch read: a bucket of n rows is trusted n / (n + prior). None: the paper's
# plain read (bucket means weighted by centroid similarity only), which memories saved before the
# prior existed keep.
DEFAULT_SKETCH_PRIOR: Final[float | None] = 20.0

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

# Exact reads hold a [N, chunk] similarity block at a time; 2M floats (8 MB, 8192 columns at batch
# 256) keeps 1M x 64 reads at batch 256 away from a 1 GB temporary while each matmul stays large
# enough to run at full speed (measured at batch 256 and 100k rows: 16 MB blocks, out of cache,
# made the matmuls a third slower).
EXACT_CHUNK_ELEMENTS: Final = 2 * 2**20
# Larger query batches are read in groups of this many rows, so a block keeps at least 8192 columns:
# merging each block's top k into the running best costs a top-k over 2k columns, small next to
# the block's own top-k only when the block is wide.
EXACT_QUERY_GROUP: Final = 256
# Blocks narrower than 16 k columns (group size below 4, see _block_top_k) or smaller than 64k
# similarities are searched in one step.
EXACT_MIN_GROUP_SIZE: Final = 4
EXACT_MIN_GROUPED_ELEMENTS: Final = 2**16
# Sketch adds expand each row once per table (512 x 16 x 195 float64 = 13 MB at the defaults and
# 64-dim keys; measured with the plain read's 67 columns, 512-row pieces added about 310k rows/s,
# 4096-row pieces, out of cache, 150k).
SKETCH_ADD_CHUNK: Final = 512
# Sketch reads gather a [K, rows, R] block of read rows (R = D + 1, or 3 (D + 1) with slopes); batches
# are read in pieces of at most this many gathered floats (2M, 8 MB: 1,040 rows at the defaults and
# 41-dim binary keys, so a serving batch is one piece).
SKETCH_READ_ELEMENTS: Final = 2 * 2**20
# Logit bias of an empty bucket: softmax gives it weight exp(-1e9) = 0 next to any used bucket
# (whose logits are at most 1 / MIN_TAU), and when all K buckets are empty the weights are uniform
# over rows that are all zeros, so the read is zero with zero support and no NaN to clean up.
EMPTY_BUCKET_BIAS: Final = -1e9
# Lazy forgetting multiplies new rows' weights up instead of old sums down (see SketchMemory.add);
# past this weight the sums are rescaled once, far from float32's 3e38 in the read table.
MAX_ROW_WEIGHT: Final = 1e20


class MemoryConfigError(ValueError):
    """A memory kind or parameter is not usable."""


class MemoryStateError(ValueError):
    """A state dict does not describe a memory, or not this memory."""


@dataclass(frozen=True)
class Readout:
    """What a memory knows about a batch of query keys.

    ``y_bar`` and ``p_bar`` are [N] (binary) or [N, C] (multiclass): the attention-weighted mean
    label and base score of the neighbours. ``support`` [N] is the evidence behind them (each
    memory documents its measure). ``support == 0`` means nothing relevant is known, and
    compensation then leaves the score alone; an empty memory reads all zeros.
    """

    y_bar: torch.Tensor
    p_bar: torch.Tensor
    support: torch.Tensor


class ErrorMemory(ABC):
    """A store of ``(key, label, base score)`` rows read by key similarity.

    Keys are float [N, dim] and assumed L2-normalised (``compensation.extract_keys`` makes them so):
    similarity is a plain dot product, which is the cosine only for unit keys. Not thread-safe: one
    writer, and no reads during a write.
    """

    kind: ClassVar[str]
    # Constructor parameters beyond dim and n_outputs, with the type each must have; make_memory,
    # config() and the config.* state entries are all driven by this.
    PARAMS: ClassVar[dict[str, type]]

    def __init__(self, dim: int, n_outputs: int, device: torch.device | str = "cpu") -> None:
        self.dim = _int_param("dim", dim, 1, MAX_DIM)
        self.n_outputs = _int_param("n_outputs", n_outputs, 1, MAX_OUTPUTS)
        self.device = torch.device(device)
        # Reads of a CPU memory run their small steps in numpy, where an op costs about a microsecond
        # against several in torch; on an accelerator they stay in torch. (Tests flip this to check
        # that both paths agree.)
        self._numpy_reads = self.device.type == "cpu"
        # Width of a stored label / score row: 1 for binary, C for multiclass (one-hot labels).
        self.width = 1 if n_outputs == 1 else n_outputs

    @abstractmethod
    def add(self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor) -> None:
        """Store labeled rows: keys [N, dim], labels [N], base scores [N] or [N, C]."""

    @abstractmethod
    def estimate(self, keys: torch.Tensor) -> Readout:
        """Read the memory for query keys [N, dim]; the readout is on the keys' device."""

    @abstractmethod
    def __len__(self) -> int:
        """Rows the memory answers from (each kind documents what it counts)."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the memory's tensors (allocated capacity, not rows used)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The kind-specific constructor parameters, JSON-ready."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every row; the config (and the sketch's hyperplanes) stay."""

    @abstractmethod
    def _data_state(self) -> dict[str, torch.Tensor]:
        """The data part of ``state_dict`` (copies, so later adds leave a snapshot alone)."""

    @abstractmethod
    def _load_data_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Validate and load what ``_data_state`` wrote."""

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an empty twin: kind, dim, n_outputs and ``params()``."""
        return {"kind": self.kind, "dim": self.dim, "n_outputs": self.n_outputs, **self.params()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain CPU tensors (safetensors-ready): ``config.*`` entries plus the memory's data."""
        state = _config_to_tensors(self.config())
        state.update({key: value.detach().to("cpu").contiguous() for key, value in self._data_state().items()})
        return state

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace this memory's rows with a saved state of a memory with the same config.

        Raises ``MemoryStateError`` when the config differs or the data does not fit it; on error
        the memory is left as it was.
        """
        saved = config_from_state_dict(tensors)
        if saved != self.config():
            raise MemoryStateError(f"state dict is for a memory configured {saved}, not {self.config()}")
        self._load_data_state(tensors)

    # --- input checks shared by both kinds -------------------------------------------------------

    def _prepare_rows(
        self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validated float32 keys [N, D], targets [N, W] and scores [N, W] on the memory's device.

        Adds are off the serving path, so every value is checked here: a NaN or a class index out
        of range written into a memory would poison every later read near it.
        """
        keys = self._check_keys(keys)
        n = keys.shape[0]
        if n and not bool(torch.isfinite(keys).all()):
            raise ValueError("keys must be finite")
        if labels.dim() != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
        expected = [n] if self.n_outputs == 1 else [n, self.n_outputs]
        if list(base_scores.shape) != expected:
            raise ValueError(f"base_scores must have shape {expected}, got {list(base_scores.shape)}")
        labels = labels.to(self.device)
        scores = base_scores.to(self.device, torch.float32).reshape(n, self.width)
        if n and not bool(((scores >= 0) & (scores <= 1)).all()):
            raise ValueError("base_scores must be probabilities in [0, 1]")
        if self.n_outputs == 1:
            targets = labels.to(torch.float32).reshape(n, 1)
            if n and not bool(((targets >= 0) & (targets <= 1)).all()):
                raise ValueError("binary labels must be in [0, 1]")
        else:
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"multiclass labels must be integer class indexes, got {labels.dtype}")
            if n and not bool(((labels >= 0) & (labels < self.n_outputs)).all()):
                raise ValueError(f"multiclass labels must be class indexes in 0..{self.n_outputs - 1}")
            targets = F.one_hot(labels.long(), self.n_outputs).to(torch.float32)
        return keys, targets, scores

    def _check_keys(self, keys: torch.Tensor) -> torch.Tensor:
        # Shape only: this runs on every read, and a value check would cost as much as a sketch read.
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [N, {self.dim}], got {list(keys.shape)}")
        return keys.to(self.device, torch.float32)

    def _readout(
        self, out_device: torch.device, y_bar: torch.Tensor, p_bar: torch.Tensor, support: torch.Tensor
    ) -> Readout:
        if self.n_outputs == 1:
            y_bar, p_bar = y_bar.squeeze(1), p_bar.squeeze(1)
        if out_device != self.device:
            y_bar, p_bar, support = y_bar.to(out_device), p_bar.to(out_device), support.to(out_device)
        return Readout(y_bar=y_bar, p_bar=p_bar, support=support)

    def _empty_readout(self, n: int, out_device: torch.device) -> Readout:
        zeros = torch.zeros(n, self.width, device=out_device)
        return self._readout(out_device, zeros, zeros.clone(), torch.zeros(n, device=out_device))


# --- exact memory ---------------------------------------------------------------------------------


class ExactMemory(ErrorMemory):
    """Bounded ring buffer of the last ``capacity`` rows, read by cosine top-k.

    Neighbours: the ``k`` stored keys with the highest dot product ``s_i`` with the query (the
    cosine, keys being unit vectors). Weights ``a = softmax(s / tau)`` over them.

    ``support`` is the kernel mass ``sum_i exp((s_i - 1) / tau)``: on the unit sphere
    ``1 - s = |q - x|^2 / 2``, so each neighbour counts with a Gaussian kernel of its distance: a
    duplicate of the query counts 1, a neighbour at cosine 0.9 counts exp(-1) = 0.37 at tau 0.1, one
    at cosine 0.5 counts 0.007. Two reasons for this measure rather than "k": it is small when the
    nearest rows are far (nothing relevant is known), and it never exceeds the weights' effective
    sample size ``(sum kappa)^2 / sum kappa^2`` (as every kappa <= 1), which is what sets the noise
    of ``y_bar``: shrinking by it is conservative on both counts.

    ``len()`` is the number of rows held (at most ``capacity``); ``n_added`` counts every row ever
    added. The buffers are allocated once (``torch.empty``, so pages are only touched as rows
    arrive); past ``capacity`` each new row overwrites the oldest.
    """

    kind = "exact"
    PARAMS = {"capacity": int, "k": int, "tau": float}

    def __init__(
        self,
        dim: int,
        n_outputs: int,
        *,
        capacity: int = DEFAULT_EXACT_CAPACITY,
        k: int = DEFAULT_EXACT_K,
        tau: float = DEFAULT_TAU,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(dim, n_outputs, device)
        self.capacity = _int_param("capacity", capacity, 1, MAX_EXACT_CAPACITY)
        self.k = _int_param("k", k, 1, MAX_EXACT_K)
        self.tau = _float_param("tau", tau, MIN_TAU, MAX_TAU)
        self._keys = torch.empty(self.capacity, dim, device=self.device)
        self._targets = torch.empty(self.capacity, self.width, device=self.device)
        self._scores = torch.empty(self.capacity, self.width, device=self.device)
        self._size = 0
        self._cursor = 0  # where the next row goes; equals _size until the buffer wraps
        self.n_added = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated buffers: constant, whatever the number of rows."""
        return sum(t.element_size() * t.nelement() for t in (self._keys, self._targets, self._scores))

    def params(self) -> dict[str, Any]:
        """``capacity``, ``k`` and ``tau``."""
        return {"capacity": self.capacity, "k": self.k, "tau": self.tau}

    def clear(self) -> None:
        """Forget every row (the buffers stay allocated)."""
        self._size = self._cursor = self.n_added = 0

    @torch.no_grad()
    def add(self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor) -> None:
        """Append rows, overwriting the oldest once ``capacity`` rows are held."""
        keys, targets, scores = self._prepare_rows(keys, labels, base_scores)
        n = keys.shape[0]
        self.n_added += n
        if n > self.capacity:
            # Only the last `capacity` rows survive this call; writing the earlier ones first would
            # overwrite them anyway. Advance the cursor as if they had been written.
            self._cursor = (self._cursor + n - self.capacity) % self.capacity
            keys, targets, scores = keys[-self.capacity :], targets[-self.capacity :], scores[-self.capacity :]
            n = self.capacity
        # At most two contiguous slice copies: up to the end of the buffer, then from its start.
        first = min(n, self.capacity - self._cursor)
        for buffer, rows in ((self._keys, keys), (self._targets, targets), (self._scores, scores)):
            buffer[self._cursor : self._cursor + first] = rows[:first]
            buffer[: n - first] = rows[first:]
        self._cursor = (self._cursor + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def estimate(self, keys: torch.Tensor) -> Readout:
        """Top-k read: ``y_bar``, ``p_bar`` weighted by softmax(s / tau), kernel-mass support."""
        out_device = keys.device
        queries = self._check_keys(keys)
        if queries.requires_grad:
            queries = queries.detach()  # reads never backpropagate, and numpy refuses grad tensors
        n = queries.shape[0]
        if self._size == 0 or n == 0:
            return self._empty_readout(n, out_device)
        k = min(self.k, self._size)
        groups = queries.split(EXACT_QUERY_GROUP) if n > EXACT_QUERY_GROUP else (queries,)
        # DESIGN 4.2 / ReLoop2: a = softmax(s / tau); y_bar = sum a_i y_i; p_bar = sum a_i p_i. On CPU
        # in numpy (small ops cost about a microsecond there, several in torch), elsewhere in torch.
        if self._numpy_reads:
            parts = [self._top_k(group, k) for group in groups]
            similarities = np.concatenate([part[0] for part in parts]) if len(parts) > 1 else parts[0][0]
            rows = np.concatenate([part[1] for part in parts]) if len(parts) > 1 else parts[0][1]
            logits = similarities / np.float32(self.tau)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            y_bar = np.einsum("nk,nkw->nw", weights, self._targets.numpy().take(rows, axis=0))  # [N, W]
            p_bar = np.einsum("nk,nkw->nw", weights, self._scores.numpy().take(rows, axis=0))
            support = np.exp((similarities - np.float32(1.0)) / np.float32(self.tau)).sum(axis=1)
            y_np, p_np, support_np = torch.from_numpy(y_bar), torch.from_numpy(p_bar), torch.from_numpy(support)
            return self._readout(out_device, y_np, p_np, support_np)
        with torch.no_grad():
            parts_t = [self._top_k_torch(group, k) for group in groups]
            sims_t, rows_t = torch.cat([part[0] for part in parts_t]), torch.cat([part[1] for part in parts_t])
            weights_t = torch.softmax(sims_t / self.tau, dim=1).unsqueeze(1)  # [N, 1, k]
            y_t = torch.bmm(weights_t, self._targets[rows_t]).squeeze(1)  # [N, W]
            p_t = torch.bmm(weights_t, self._scores[rows_t]).squeeze(1)
            support_t = torch.exp((sims_t - 1.0) / self.tau).sum(dim=1)
        return self._readout(out_device, y_t, p_t, support_t)

    def _top_k(self, queries: torch.Tensor, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
        """The k best similarities [N, k] and their buffer rows, scanning the buffer in chunks; CPU.

        Each chunk keeps its own top k, merged into the running best: the [N, chunk] similarity
        block is the only large temporary, and EXACT_CHUNK_ELEMENTS bounds it. The selection runs
        in numpy (``_block_top_k``): np.argpartition is 2-5x faster than ``torch.topk`` on CPU.
        """
        n = queries.shape[0]
        chunk = min(max(k, EXACT_CHUNK_ELEMENTS // n), self._size)
        # One block buffer for all chunks: a fresh multi-MB block per chunk costs page faults, as
        # much as the matmul itself.
        scratch = torch.empty(n * chunk, device=self.device)
        best_s: npt.NDArray[np.float32] | None = None
        best_i: npt.NDArray[np.intp] | None = None
        for start in range(0, self._size, chunk):
            stop = min(start + chunk, self._size)
            out = scratch[: n * (stop - start)].view(n, stop - start)
            block = torch.mm(queries, self._keys[start:stop].t(), out=out).numpy()  # [N, stop - start]
            top_s, top_i = _block_top_k(block, k)
            top_i += start
            if best_s is None or best_i is None:
                best_s, best_i = top_s, top_i
                continue
            merged_s, merged_i = np.concatenate([best_s, top_s], axis=1), np.concatenate([best_i, top_i], axis=1)
            picked = np.argpartition(merged_s, merged_s.shape[1] - k, axis=1)[:, -k:]
            best_s = np.take_along_axis(merged_s, picked, axis=1)
            best_i = np.take_along_axis(merged_i, picked, axis=1)
        assert best_s is not None and best_i is not None  # _size > 0: at least one chunk ran
        return best_s, best_i

    def _top_k_torch(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``_top_k`` with ``torch.topk``, for memories on an accelerator."""
        n = queries.shape[0]
        chunk = max(k, EXACT_CHUNK_ELEMENTS // n)
        best_s: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for start in range(0, self._size, chunk):
            stop = min(start + chunk, self._size)
            block = queries @ self._keys[start:stop].T  # [N, stop - start]
            top_s, top_i = block.topk(min(k, stop - start), dim=1, sorted=False)
            top_i += start
            if best_s is None or best_i is None:
                best_s, best_i = top_s, top_i
                continue
            merged_s, merged_i = torch.cat([best_s, top_s], dim=1), torch.cat([best_i, top_i], dim=1)
            best_s, picked = merged_s.topk(k, dim=1, sorted=False)
            best_i = merged_i.gather(1, picked)
        assert best_s is not None and best_i is not None  # _size > 0: at least one chunk ran
        return best_s, best_i

    def _data_state(self) -> dict[str, torch.Tensor]:
        # Rows in buffer order with the cursor, so a restored buffer evicts in the same order and
        # ties in top-k break the same way: estimates are identical, not just close.
        size = self._size
        return {
            "keys": self._keys[:size].clone(),
            "targets": self._targets[:size].clone(),
            "scores": self._scores[:size].clone(),
            "cursor": torch.tensor(self._cursor, dtype=torch.int64),
            "n_added": torch.tensor(self.n_added, dtype=torch.int64),
        }

    def _load_data_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        keys = _tensor(tensors, "keys", torch.float32, 2)
        size = keys.shape[0]
        _expect_shape("keys", keys, (size, self.dim))
        targets = _tensor(tensors, "targets", torch.float32, 2)
        scores = _tensor(tensors, "scores", torch.float32, 2)
        _expect_shape("targets", targets, (size, self.width))
        _expect_shape("scores", scores, (size, self.width))
        cursor = _scalar_int(tensors, "cursor")
        n_added = _scalar_int(tensors, "n_added")
        if size > self.capacity:
            raise MemoryStateError(f"{size} rows do not fit capacity {self.capacity}")
        if not 0 <= cursor < self.capacity or (size < self.capacity and cursor != size):
            raise MemoryStateError(f"cursor {cursor} does not fit {size} rows in capacity {self.capacity}")
        if n_added < size:
            raise MemoryStateError(f"n_added {n_added} is below the {size} rows held")
        for name, tensor in (("keys", keys), ("targets", targets), ("scores", scores)):
            if not bool(torch.isfinite(tensor).all()):
                raise MemoryStateError(f"{name}: contains NaN or infinite values")
        self._keys[:size] = keys.to(self.device)
        self._targets[:size] = targets.to(self.device)
        self._scores[:size] = scores.to(self.device)
        self._size, self._cursor, self.n_added = size, cursor, n_added


def _block_top_k(block: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """The (up to) k largest values of each row of ``block`` [N, W] and their columns, unordered.

    Two levels: the columns are split into ``groups`` groups of ``size`` (column ``i * groups + j``
    is member i of group j, so the group maxima are a max over whole rows of the block), and only
    the members of the k groups with the largest maxima, plus the few columns left over, are
    candidates. That loses nothing: if T is the k-th largest group maximum, those k groups hold k
    values >= T, so the k-th largest value is >= T, and every value above T sits in a group whose
    maximum is above T, one of the k. Selecting among W / size maxima and k * size candidates
    instead of W values is cheapest at size ~ sqrt(W / k): 9 for 8192-column blocks and k = 100,
    about 4x less selection work. Ties at the k-th value may pick other columns than a full
    selection would.
    """
    block = np.ascontiguousarray(block)
    n, width = block.shape
    if width <= k:
        return block, np.broadcast_to(np.arange(width), (n, width)).copy()
    size = math.isqrt(width // k)
    groups = width // size if size else 0
    if size < EXACT_MIN_GROUP_SIZE or groups <= k or n * width < EXACT_MIN_GROUPED_ELEMENTS:
        # A narrow or small block: the two levels would save less than their extra steps cost.
        columns = np.argpartition(block, width - k, axis=1)[:, width - k :]
        return np.take_along_axis(block, columns, axis=1), columns
    row_stride, item = block.strides
    members = np.lib.stride_tricks.as_strided(block, (n, size, groups), (row_stride, groups * item, item))
    maxima = members.max(axis=1)  # [N, groups]
    best_groups = np.argpartition(maxima, groups - k, axis=1)[:, groups - k :]  # [N, k]
    # Candidates by flat position in the (contiguous) block: one take, cheaper than take_along_axis.
    row_starts = np.arange(0, n * width, width)[:, None]
    flat = ((best_groups + row_starts)[:, :, None] + np.arange(0, size * groups, groups)).reshape(n, k * size)
    if size * groups < width:
        flat = np.concatenate([flat, row_starts + np.arange(size * groups, width)], axis=1)
    candidates = block.reshape(-1).take(flat)
    picked = np.argpartition(candidates, candidates.shape[1] - k, axis=1)[:, -k:]
    columns = np.take_along_axis(flat, picked, axis=1) - row_starts
    return np.take_along_axis(candidates, picked, axis=1), columns


# --- sketch memory --------------------------------------------------------------------------------


class SketchMemory(ErrorMemory):
    """ReLoop2's constant-size LSH memory: ``n_tables`` (K) tables of 2^``n_bits`` (L) buckets.

    Addressing: table t hashes a key by the signs of L random projections (``planes``, drawn once
    from ``seed``): keys at angle theta share a bucket with probability (1 - theta / pi)^L, so a
    bucket gathers rows near one another. Every row goes into one bucket per table.

    Each bucket sums count, label, base score and key (float64: float32 stops counting at 2^24 rows
    per bucket). A read looks up the query's K buckets; bucket t contributes its mean label
    ``y_t``, mean base score ``p_t`` and centroid (its key sum, normalised); the K buckets play the
    neighbours of the exact memory, weighted by ``a = softmax(cos(q, centroid_t) / tau)`` among the
    non-empty ones. ``support = sum_t a_t n_t``, the attention-weighted row count of the buckets
    read: the number of rows a typical bucket behind the estimate averages (0 when all K are empty).

    Both add and read cost O(K * L * D) per row, and the memory's size (``nbytes``,
    ``n_buckets``) is fixed at construction. ``len()`` counts every row added (none is ever
    evicted; with ``half_life`` old rows fade instead).

    ``half_life`` (rows, default None = off) turns on exponential forgetting: a row's weight in the
    sums halves every ``half_life`` rows, so bucket means follow a drifting stream and ``support``
    becomes a decayed count.

    ``prior`` (rows, default 20; None = the paper's plain read above) refines the read in two ways,
    both weighed by a bucket's trust ``f_t = n_t / (n_t + prior)``:

    * bucket weights become ``a_t ~ f_t exp(cos(q, centroid_t) / tau)``, so a bucket of two rows no
      longer counts as much as one of two thousand;
    * binary memories also sum ``y k`` and ``p k`` per bucket (2 D more float64 columns), and a
      bucket answers with its mean plus a first-order term toward the query:
      ``y_t(q) = clamp(y_t + f_t q . cov_t(k, y) / tau, 0, 1)``, likewise ``p_t(q)``. That is the
      exact memory's softmax(s / tau) weighting of the bucket's own rows, linearised around their
      mean similarity: ``exp(s_i / tau) ~ exp(s / tau) (1 + (s_i - s) / tau)`` gives the mean plus
      ``cov_t(q . k, y) / tau``. A bucket stops being one point and becomes a local linear model,
      which is what closes most of the gap to the exact memory (bench/RESULTS-stream-replay.md).
      Multiclass memories skip it: it would cost 2 C D columns per bucket.

    Determinism: the same seed gives the same hyperplanes, and on CPU ``index_add_`` sums in row
    order, so the same stream gives bit-identical tables. ``planes`` are saved in the state dict, so
    a restored memory never depends on the random generator of the torch build that loads it.
    """

    kind = "sketch"
    PARAMS = {"n_tables": int, "n_bits": int, "tau": float, "seed": int, "half_life": float, "prior": float}

    def __init__(
        self,
        dim: int,
        n_outputs: int,
        *,
        n_tables: int = DEFAULT_SKETCH_TABLES,
        n_bits: int = DEFAULT_SKETCH_BITS,
        tau: float = DEFAULT_SKETCH_TAU,
        seed: int = DEFAULT_SKETCH_SEED,
        half_life: float | None = DEFAULT_SKETCH_HALF_LIFE,
        prior: float | None = DEFAULT_SKETCH_PRIOR,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(dim, n_outputs, device)
        self.n_tables = _int_param("n_tables", n_tables, 1, MAX_SKETCH_TABLES)
        self.n_bits = _int_param("n_bits", n_bits, 1, MAX_SKETCH_BITS)
        self.tau = _float_param("tau", tau, MIN_TAU, MAX_TAU)
        self.seed = _int_param("seed", seed, 0, 2**63 - 1)
        self.half_life = None if half_life is None else _float_param("half_life", half_life, 1.0, MAX_HALF_LIFE)
        self.prior = None if prior is None else _float_param("prior", prior, MIN_PRIOR, MAX_PRIOR)
        # The first-order term (see the class docstring): binary memories with a prior.
        self.slopes = self.prior is not None and self.width == 1
        self.n_buckets = self.n_tables << self.n_bits
        if self.n_buckets > MAX_SKETCH_BUCKETS:
            raise MemoryConfigError(
                f"n_tables * 2^n_bits = {self.n_buckets} buckets is above the limit of {MAX_SKETCH_BUCKETS}"
            )
        # Per-row weight growth of the lazy forgetting (1.0 = no forgetting), see add().
        self._growth = 1.0 if self.half_life is None else 2.0 ** (1.0 / self.half_life)

        generator = torch.Generator().manual_seed(self.seed)
        self._set_planes(torch.randn(dim, self.n_tables * self.n_bits, generator=generator))
        # Bucket number of table t = t * 2^L + sum_l bit_l 2^l with bit_l = [projection_l > 0],
        # computed table-major ([K, N]): on CPU as a numpy einsum of the bits with the powers of two
        # (in uint16 up to 16 bits, a third faster than int32, then int32 with the table offsets:
        # bucket numbers are below MAX_SKETCH_BUCKETS), elsewhere as one addmm of the bits with a
        # block-diagonal [K, K*L] matrix of powers of two (exact in float32 below 2^24).
        bit_type = np.uint16 if self.n_bits <= 16 else np.int32
        self._bit_values: npt.NDArray[np.integer[Any]] = np.left_shift(1, np.arange(self.n_bits)).astype(bit_type)
        self._table_offsets = np.left_shift(np.arange(self.n_tables, dtype=np.int32), self.n_bits)[:, None]
        powers = torch.zeros(self.n_tables, self.n_tables * self.n_bits)
        for table in range(self.n_tables):
            powers[table, table * self.n_bits : (table + 1) * self.n_bits] = 2.0 ** torch.arange(self.n_bits)
        self._powers = powers.to(self.device)
        self._offsets = torch.from_numpy(self._table_offsets).to(self.device, torch.float32)

        w, d = self.width, dim
        # Column layout of _sums (float64): [count, y (W), p_base (W), key sum (D)], then with slopes
        # [sum y k (D), sum p k (D)].
        slope_columns = 2 * d if self.slopes else 0
        self._sums = torch.zeros(self.n_buckets, 1 + 2 * w + d + slope_columns, dtype=torch.float64, device=self.device)
        # What a read needs, ready to use (float32), refreshed for the buckets each add touches:
        # _centroids [buckets, B (D + 1)] holds B blocks of D + 1 values, dotted with the query
        # extended by a 1, [q, 1]: block 0 is [centroid / |centroid| / tau, bias] with bias 0 for a
        # used bucket and EMPTY_BUCKET_BIAS for an empty one, so q . centroid / tau + bias needs no
        # mask and no NaN fix; with slopes, blocks 1 and 2 are [cov(k, y) / tau, 0] and
        # [cov(k, p) / tau, 0]. A read gathers a query's K rows as one [K B, D + 1] matrix and gets
        # every product with one matrix-vector product per query (_read_numpy). _stats
        # [1 + 2W, buckets] holds count, mean y (W) and mean p (W), one row per quantity: gathered
        # for a [K, N] block of buckets, it gives contiguous [K, N] planes that the softmax weights
        # blend with one einsum.
        blocks = 3 if self.slopes else 1
        self._centroids = torch.zeros(self.n_buckets, blocks * (d + 1), device=self.device)
        self._centroids[:, d] = EMPTY_BUCKET_BIAS
        self._stats = torch.zeros(1 + 2 * w, self.n_buckets, device=self.device)
        self._added = 0
        self._next_weight = 1.0

    def _set_planes(self, planes: torch.Tensor) -> None:
        self._planes = planes.to(self.device)  # [D, K*L], what the state dict holds
        # Transposed copy: planes_t @ keys.T gives the projections table-major, [K*L, N].
        self._planes_t = self._planes.t().contiguous()

    def __len__(self) -> int:
        return self._added

    @property
    def nbytes(self) -> int:
        """Bytes of the tables and hyperplanes: fixed at construction."""
        tensors = (self._sums, self._centroids, self._stats, self._planes, self._planes_t, self._powers, self._offsets)
        return sum(t.element_size() * t.nelement() for t in tensors)

    def params(self) -> dict[str, Any]:
        """``n_tables``, ``n_bits``, ``tau``, ``seed``, ``half_life`` and ``prior``."""
        return {
            "n_tables": self.n_tables,
            "n_bits": self.n_bits,
            "tau": self.tau,
            "seed": self.seed,
            "half_life": self.half_life,
            "prior": self.prior,
        }

    def clear(self) -> None:
        """Empty every bucket; the hyperplanes stay."""
        self._sums.zero_()
        self._centroids.zero_()
        self._centroids[:, self.dim] = EMPTY_BUCKET_BIAS
        self._stats.zero_()
        self._added = 0
        self._next_weight = 1.0

    def bucket_index(self, keys: torch.Tensor) -> torch.Tensor:
        """Flat bucket numbers [N, K] (int64) of float32 keys on the memory's device, one per table."""
        return self._buckets(keys).t()

    def _buckets(self, keys: torch.Tensor) -> torch.Tensor:
        """Flat bucket numbers, table-major: [K, N] int64."""
        if self._numpy_reads:
            return torch.from_numpy(self._bucket_array(keys)).long()
        bits = (torch.mm(self._planes_t, keys.t()) > 0).to(torch.float32)  # signed random projections
        return torch.addmm(self._offsets, self._powers, bits).long()

    def _bucket_array(self, keys: torch.Tensor) -> npt.NDArray[np.int32]:
        """``_buckets`` on CPU as a numpy int32 array: one matmul (in torch, which keeps to torch's
        thread setting), then numpy, whose small ops cost about a microsecond each."""
        projections = torch.mm(self._planes_t, keys.t()).numpy()  # [K*L, N]
        bits = (projections > 0).view(np.uint8).reshape(self.n_tables, self.n_bits, -1)
        index: npt.NDArray[np.int32] = np.einsum("kln,l->kn", bits, self._bit_values) + self._table_offsets
        return index

    @torch.no_grad()
    def add(self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor) -> None:
        """Add each row to its bucket in every table (O(1) per row, vectorised over the batch)."""
        keys, targets, scores = self._prepare_rows(keys, labels, base_scores)
        for start in range(0, keys.shape[0], SKETCH_ADD_CHUNK):
            stop = start + SKETCH_ADD_CHUNK
            self._add_rows(keys[start:stop], targets[start:stop], scores[start:stop])

    def _add_rows(self, keys: torch.Tensor, targets: torch.Tensor, scores: torch.Tensor) -> None:
        n = keys.shape[0]
        if n == 0:
            return
        # [K * n], table-major: table t's n buckets together. Each bucket belongs to one table, so
        # it still receives its rows in row order (what keeps the sums deterministic).
        index = self._buckets(keys).reshape(-1)
        columns = [torch.ones(n, 1, device=self.device), targets, scores, keys]
        if self.slopes:
            columns += [targets * keys, scores * keys]  # [n, 1] * [n, D]: binary only
        values = torch.cat(columns, dim=1).double()
        if self._growth != 1.0:
            # Lazy forgetting: instead of multiplying every bucket by decay = 2^(-1/half_life) per
            # row (O(buckets) per add), row number T is written with weight growth^(T - T0), growth =
            # 1/decay. Means are ratios of sums, so they are the same as with decayed sums; the
            # count is rescaled at read time. Rows are added in pieces small enough that weights
            # stay below MAX_ROW_WEIGHT; past it the sums are rescaled (T0 moves to now).
            room = max(0, math.floor(math.log(MAX_ROW_WEIGHT / self._next_weight) / math.log(self._growth)))
            if room < n:
                self._rebase()
                room = math.floor(math.log(MAX_ROW_WEIGHT) / math.log(self._growth))
            if room < n:
                self._add_rows(keys[:room], targets[:room], scores[:room])
                self._add_rows(keys[room:], targets[room:], scores[room:])
                return
            exponents = torch.arange(n, dtype=torch.float64, device=self.device)
            values *= (self._next_weight * self._growth**exponents).unsqueeze(1)
            self._next_weight *= self._growth**n
        k = self.n_tables
        self._sums.index_add_(0, index, values.unsqueeze(0).expand(k, n, values.shape[1]).reshape(k * n, -1))
        self._added += n
        # Refresh the read copy of the touched buckets. A bucket hit twice is written twice with the
        # same values (computed after all the sums), so the duplicates in `index` are harmless.
        rows = self._read_rows(self._sums.index_select(0, index))
        self._centroids.index_copy_(0, index, rows[:, 1 + 2 * self.width :])
        self._stats.index_copy_(1, index, rows[:, : 1 + 2 * self.width].t())

    def _read_rows(self, sums: torch.Tensor) -> torch.Tensor:
        """Read-table rows (float32) from sum rows (float64), empty buckets included: [count, mean
        y (W), mean p (W)] for ``_stats`` (transposed), then the ``_centroids`` blocks
        [centroid / |centroid| / tau (D), bias], with slopes [cov(k, y) / tau (D), 0] and
        [cov(k, p) / tau (D), 0]."""
        w, d = self.width, self.dim
        count = sums[:, :1]
        inverse = 1.0 / count.clamp_min(torch.finfo(torch.float64).tiny)  # 0 sums stay 0
        means = sums[:, 1 : 1 + 2 * w] * inverse
        key_sum = sums[:, 1 + 2 * w : 1 + 2 * w + d]
        centroid = key_sum / key_sum.norm(dim=1, keepdim=True).clamp_min(1e-12) / self.tau
        parts = [count, means, centroid, torch.where(count > 0, 0.0, EMPTY_BUCKET_BIAS)]
        if self.slopes:
            # cov(k, y) = mean(y k) - mean(y) mean(k), in float64: the difference cancels digits.
            mean_key = key_sum * inverse
            zero = torch.zeros_like(count)
            for column, offset in ((1, 1 + 2 * w + d), (2, 1 + 2 * w + 2 * d)):
                product_mean = sums[:, offset : offset + d] * inverse
                parts += [(product_mean - means[:, column - 1 : column] * mean_key) / self.tau, zero]
        return torch.cat(parts, dim=1).to(torch.float32)

    def _rebase(self) -> None:
        """Rescale the sums so that the next row's weight is 1 again (see _add_rows)."""
        factor = 1.0 / self._next_weight
        self._sums.mul_(factor)
        self._stats[0].mul_(factor)
        self._next_weight = 1.0

    def estimate(self, keys: torch.Tensor) -> Readout:
        """Read the query's K buckets and blend them by softmax(cos(q, centroid) / tau)."""
        out_device = keys.device
        queries = self._check_keys(keys)
        if queries.requires_grad:
            queries = queries.detach()  # reads never backpropagate, and numpy refuses grad tensors
        n = queries.shape[0]
        if n == 0:
            return self._empty_readout(0, out_device)
        # Large batches are read in pieces, so the gathered [K, rows, R] block stays small.
        rows = max(1, SKETCH_READ_ELEMENTS // (self.n_tables * self._centroids.shape[1]))
        pieces = queries.split(rows) if n > rows else (queries,)
        # The read runs on the serving path, next to a batch-256 forward pass of about 0.2 ms: on
        # CPU it is one torch matmul and a dozen numpy ops (about 1 us of overhead each, where a
        # torch op costs several, and numpy's small views and conversions cost next to nothing),
        # elsewhere the same steps in torch.
        if self._numpy_reads:
            parts = [self._read_numpy(piece) for piece in pieces]
            blended = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            y_bar, p_bar = self._split_blended(blended)
            return self._scaled_readout(
                out_device, torch.from_numpy(y_bar), torch.from_numpy(p_bar), torch.from_numpy(blended[0])
            )
        with torch.no_grad():
            blended_t = torch.cat([self._read_torch(piece) for piece in pieces], dim=1)
        w = self.width
        if w == 1:
            return self._scaled_readout(out_device, blended_t[1], blended_t[2], blended_t[0])
        y_t, p_t = blended_t[1 : 1 + w].t().contiguous(), blended_t[1 + w :].t().contiguous()
        return self._scaled_readout(out_device, y_t, p_t, blended_t[0])

    def _split_blended(self, blended: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], ...]:
        """``y_bar`` and ``p_bar`` ([N] binary, [N, C] contiguous multiclass) from blended rows."""
        w = self.width
        if w == 1:
            return blended[1], blended[2]
        return np.ascontiguousarray(blended[1 : 1 + w].T), np.ascontiguousarray(blended[1 + w :].T)

    def _scaled_readout(
        self, out_device: torch.device, y_bar: torch.Tensor, p_bar: torch.Tensor, support: torch.Tensor
    ) -> Readout:
        if self._growth != 1.0:
            # Stored counts weigh row T by growth^(T - T0); the newest row should weigh 1.
            support = support * (self._growth / self._next_weight)
        if out_device != self.device:
            y_bar, p_bar, support = y_bar.to(out_device), p_bar.to(out_device), support.to(out_device)
        return Readout(y_bar=y_bar, p_bar=p_bar, support=support)

    def _prior_rows(self) -> float:
        """``prior`` in stored count units (they weigh the newest row ``next_weight / growth``)."""
        assert self.prior is not None
        return self.prior * self._next_weight / self._growth

    def _read_numpy(self, queries: torch.Tensor) -> npt.NDArray[np.float32]:
        """``[count, y (W), p (W)]`` blended by the softmax weights, [1 + 2W, N]; CPU only."""
        n, d = queries.shape
        index = self._bucket_array(queries)  # [K, N]
        # A query's K rows as one [K B, D + 1] matrix, times [q, 1]: one batched matrix-vector
        # product gives every dot product of the read (numpy's einsum would loop over them in C,
        # several times slower).
        rows = self._centroids.numpy().take(index.T, axis=0).reshape(n, -1, d + 1)
        extended = np.ones((n, d + 1, 1), dtype=np.float32)
        extended[:, :d, 0] = queries.numpy()
        # [B, K, N]: cos / tau + bias, then (with slopes) q . cov(k, y) / tau and q . cov(k, p) / tau.
        products = np.ascontiguousarray(np.matmul(rows, extended).reshape(n, self.n_tables, -1).transpose(2, 1, 0))
        logits = products[0]
        # Softmax over the K tables (axis 0: whole-row numpy ops, no short inner reductions), with
        # the division left for after the blend, where it touches 1 + 2W values per query, not K.
        logits -= logits.max(axis=0)
        weights = np.exp(logits, out=logits)
        stats = self._stats.numpy().take(index, axis=1)  # [1 + 2W, K, N], a copy
        if self.prior is not None:
            trust = stats[0] / (stats[0] + np.float32(self._prior_rows()))  # 0 for an empty bucket
            weights *= trust
            if self.slopes:
                products[1:] *= trust
                stats[1:] += products[1:]
                np.clip(stats[1:], 0.0, 1.0, out=stats[1:])
        blended: npt.NDArray[np.float32] = np.einsum("kn,skn->sn", weights, stats)
        # With a prior, all K buckets empty leaves every weight 0: the read is then 0, support 0.
        blended /= np.maximum(weights.sum(axis=0), np.finfo(np.float32).tiny)
        return blended

    def _read_torch(self, queries: torch.Tensor) -> torch.Tensor:
        """``_read_numpy`` in torch ops, for memories on an accelerator."""
        k, (n, d) = self.n_tables, queries.shape
        index = self._buckets(queries).reshape(-1)
        rows = self._centroids.index_select(0, index).view(k, n, -1, d + 1)
        extended = torch.cat([queries, queries.new_ones(n, 1)], dim=1)
        products = torch.einsum("knbd,nd->bkn", rows, extended)
        weights = torch.softmax(products[0], dim=0)
        stats = self._stats.index_select(1, index).view(-1, k, n)
        if self.prior is not None:
            trust = stats[0] / (stats[0] + self._prior_rows())
            weights = weights * trust
            if self.slopes:
                estimates = (stats[1:] + trust * products[1:]).clamp_(0.0, 1.0)
                stats = torch.cat([stats[:1], estimates])
            weights = weights / weights.sum(dim=0).clamp_min(torch.finfo(weights.dtype).tiny)
        return torch.einsum("kn,skn->sn", weights, stats)

    def _data_state(self) -> dict[str, torch.Tensor]:
        # Saved with the newest row at weight 1 (scale applied), so a saved sketch reads as counts.
        scale = self._growth / self._next_weight
        return {
            "planes": self._planes.clone(),
            "sums": self._sums * scale,
            "n_added": torch.tensor(self._added, dtype=torch.int64),
        }

    def _load_data_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        planes = _tensor(tensors, "planes", torch.float32, 2)
        _expect_shape("planes", planes, (self.dim, self.n_tables * self.n_bits))
        sums = _tensor(tensors, "sums", torch.float64, 2)
        _expect_shape("sums", sums, tuple(self._sums.shape))
        n_added = _scalar_int(tensors, "n_added")
        if n_added < 0:
            raise MemoryStateError(f"n_added must be >= 0, got {n_added}")
        if not bool(torch.isfinite(sums).all()) or not bool(torch.isfinite(planes).all()):
            raise MemoryStateError("planes and sums must be finite")
        if bool((sums[:, 0] < 0).any()):
            raise MemoryStateError("sums: negative bucket counts")
        self._set_planes(planes.clone())
        # Saved sums weigh the newest row 1; after a load, the next row weighs growth (see add).
        self._next_weight = self._growth
        self._sums = sums.to(self.device).clone()
        rows = self._read_rows(self._sums)
        w = self.width
        self._centroids, self._stats = rows[:, 1 + 2 * w :].contiguous(), rows[:, : 1 + 2 * w].t().contiguous()
        self._added = n_added


# --- factory and (de)serialisation ----------------------------------------------------------------

_MEMORIES: Final[dict[str, type[ExactMemory] | type[SketchMemory]]] = {"exact": ExactMemory, "sketch": SketchMemory}


def make_memory(
    kind: str, dim: int, n_outputs: int, *, device: torch.device | str = "cpu", **params: Any
) -> ErrorMemory:
    """Build a memory of ``kind`` ("exact" or "sketch") from user-supplied ``params``.

    Unknown params and bad values raise ``MemoryConfigError``; missing ones take the module's
    defaults. ``exact``: capacity, k, tau. ``sketch``: n_tables, n_bits, tau, seed, half_life, prior.
    """
    if kind not in _MEMORIES:
        raise MemoryConfigError(f"unknown memory kind {kind!r}; known: {', '.join(MEMORY_KINDS)}")
    cls = _MEMORIES[kind]
    unknown = sorted(name for name in params if name not in cls.PARAMS)
    if unknown:
        raise MemoryConfigError(
            f"unknown {kind} memory params: {', '.join(unknown)}; allowed: {', '.join(sorted(cls.PARAMS))}"
        )
    return cls(dim, n_outputs, device=device, **params)


def config_from_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The config stored in a state dict's ``config.*`` entries (as ``ErrorMemory.config()``)."""
    kind = _decode_text(_tensor(tensors, "config.kind", torch.uint8, 1))
    if kind not in _MEMORIES:
        raise MemoryStateError(f"unknown memory kind {kind!r} in state dict")
    config: dict[str, Any] = {"kind": kind}
    fields = {"dim": int, "n_outputs": int, **_MEMORIES[kind].PARAMS}
    for name, kind_type in fields.items():
        key = f"config.{name}"
        if key not in tensors:
            # An absent optional param (the sketch's half_life or prior) was None when saved; a
            # sketch saved before ``prior`` existed so loads with the plain read it was built for.
            config[name] = None
            continue
        config[name] = _scalar_int(tensors, key) if kind_type is int else _scalar_float(tensors, key)
    return config


def memory_from_state_dict(tensors: Mapping[str, torch.Tensor], *, device: torch.device | str = "cpu") -> ErrorMemory:
    """Rebuild a memory, config and rows, from ``state_dict()`` output (e.g. loaded safetensors)."""
    config = config_from_state_dict(tensors)
    kind, dim, n_outputs = config.pop("kind"), config.pop("dim"), config.pop("n_outputs")
    if dim is None or n_outputs is None:
        raise MemoryStateError("state dict lacks config.dim or config.n_outputs")
    try:
        memory = make_memory(kind, dim, n_outputs, device=device, **config)
    except MemoryConfigError as exc:
        raise MemoryStateError(f"state dict config is not usable: {exc}") from exc
    memory.load_state_dict(tensors)
    return memory


def _config_to_tensors(config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    # safetensors holds tensors only: the kind travels as its ASCII bytes, numbers as 0-d tensors,
    # and a None param is left out.
    tensors = {"config.kind": torch.tensor(list(config["kind"].encode("ascii")), dtype=torch.uint8)}
    for name, value in config.items():
        if name == "kind" or value is None:
            continue
        dtype = torch.float64 if isinstance(value, float) else torch.int64
        tensors[f"config.{name}"] = torch.tensor(value, dtype=dtype)
    return tensors


def _decode_text(tensor: torch.Tensor) -> str:
    try:
        return bytes(tensor.tolist()).decode("ascii")
    except UnicodeDecodeError as exc:
        raise MemoryStateError("config.kind is not ASCII text") from exc


def _tensor(tensors: Mapping[str, torch.Tensor], key: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    value = tensors.get(key)
    if not isinstance(value, torch.Tensor):
        raise MemoryStateError(f"{key}: missing")
    if value.dtype != dtype or value.dim() != ndim:
        raise MemoryStateError(f"{key}: expected a {ndim}-d {dtype} tensor, got {value.dim()}-d {value.dtype}")
    return value


def _scalar_int(tensors: Mapping[str, torch.Tensor], key: str) -> int:
    return int(_tensor(tensors, key, torch.int64, 0).item())


def _scalar_float(tensors: Mapping[str, torch.Tensor], key: str) -> float:
    return float(_tensor(tensors, key, torch.float64, 0).item())


def _expect_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise MemoryStateError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")


def _int_param(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MemoryConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def _float_param(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MemoryConfigError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise MemoryConfigError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)
