"""The exact error memory: a bounded ring buffer of rows, read by cosine top-k.

Accurate, and its read cost grows with its size: every read scans all the rows it holds, in
blocks, keeping each block's top k (``_block_top_k``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from adaptive.ml.memory.base import ErrorMemory, Readout
from adaptive.ml.memory.config import (
    DEFAULT_EXACT_CAPACITY,
    DEFAULT_EXACT_K,
    DEFAULT_TAU,
    MAX_EXACT_CAPACITY,
    MAX_EXACT_K,
    MAX_TAU,
    MIN_TAU,
    PARAMS_BY_KIND,
    float_param,
    int_param,
)
from adaptive.ml.memory.state import MemoryStateError, expect_shape, scalar_int, tensor_entry

# Exact reads hold a [N, chunk] similarity block at a time; 2M floats (8 MB, 8192 columns at batch
# 256) keeps reads of a million rows away from a gigabyte temporary, while each matmul stays large
# enough to run at full speed and the block small enough to stay in cache (bench/README.md).
EXACT_CHUNK_ELEMENTS: Final = 2 * 2**20
# Larger query batches are read in groups of this many rows, so a block keeps at least 8192 columns:
# merging each block's top k into the running best costs a top-k over 2k columns, small next to
# the block's own top-k only when the block is wide.
EXACT_QUERY_GROUP: Final = 256
# Blocks narrower than 16 k columns (group size below 4, see _block_top_k) or smaller than 64k
# similarities are searched in one step.
EXACT_MIN_GROUP_SIZE: Final = 4
EXACT_MIN_GROUPED_ELEMENTS: Final = 2**16


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
    PARAMS = PARAMS_BY_KIND["exact"]

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
        self.capacity = int_param("capacity", capacity, 1, MAX_EXACT_CAPACITY)
        self.k = int_param("k", k, 1, MAX_EXACT_K)
        self.tau = float_param("tau", tau, MIN_TAU, MAX_TAU)
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
        # ReLoop2's read: a = softmax(s / tau); y_bar = sum a_i y_i; p_bar = sum a_i p_i. On CPU in
        # numpy (whose small ops cost far less than torch's), elsewhere in torch.
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
        in numpy (``_block_top_k``): np.argpartition is faster than ``torch.topk`` on CPU.
        """
        n = queries.shape[0]
        chunk = min(max(k, EXACT_CHUNK_ELEMENTS // n), self._size)
        # One block buffer for all chunks: a fresh multi-MB block per chunk costs page faults that
        # rival the matmul itself.
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
        keys = tensor_entry(tensors, "keys", torch.float32, 2)
        size = keys.shape[0]
        expect_shape("keys", keys, (size, self.dim))
        targets = tensor_entry(tensors, "targets", torch.float32, 2)
        scores = tensor_entry(tensors, "scores", torch.float32, 2)
        expect_shape("targets", targets, (size, self.width))
        expect_shape("scores", scores, (size, self.width))
        cursor = scalar_int(tensors, "cursor")
        n_added = scalar_int(tensors, "n_added")
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
