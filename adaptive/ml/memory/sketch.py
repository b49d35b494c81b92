"""The sketch error memory: ReLoop2's constant-size LSH tables.

K tables of 2^L buckets addressed by signed random projections. O(1) add and read per row, whatever
the stream length. By default each bucket answers as a local linear model (its mean plus a
first-order term toward the query) and is trusted by its row count; ``prior=None`` gives the
paper's plain bucket means.
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
    DEFAULT_SKETCH_BITS,
    DEFAULT_SKETCH_HALF_LIFE,
    DEFAULT_SKETCH_PRIOR,
    DEFAULT_SKETCH_SEED,
    DEFAULT_SKETCH_TABLES,
    DEFAULT_SKETCH_TAU,
    MAX_HALF_LIFE,
    MAX_PRIOR,
    MAX_SKETCH_BITS,
    MAX_SKETCH_BUCKETS,
    MAX_SKETCH_TABLES,
    MAX_TAU,
    MIN_PRIOR,
    MIN_TAU,
    PARAMS_BY_KIND,
    MemoryConfigError,
    float_param,
    int_param,
)
from adaptive.ml.memory.state import MemoryStateError, expect_shape, scalar_int, tensor_entry

# Sketch adds expand each row once per table (512 x 16 x 195 float64 = 13 MB at the defaults and
# 64-dim keys); pieces of this size keep the expansion in cache, where larger ones slow the add
# down (bench/README.md).
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
    PARAMS = PARAMS_BY_KIND["sketch"]

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
        self.n_tables = int_param("n_tables", n_tables, 1, MAX_SKETCH_TABLES)
        self.n_bits = int_param("n_bits", n_bits, 1, MAX_SKETCH_BITS)
        self.tau = float_param("tau", tau, MIN_TAU, MAX_TAU)
        self.seed = int_param("seed", seed, 0, 2**63 - 1)
        self.half_life = None if half_life is None else float_param("half_life", half_life, 1.0, MAX_HALF_LIFE)
        self.prior = None if prior is None else float_param("prior", prior, MIN_PRIOR, MAX_PRIOR)
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
        # (in uint16 up to 16 bits, faster than int32, then int32 with the table offsets:
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
        thread setting), then numpy, whose small ops cost far less than torch's."""
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
        # The read runs on the serving path, next to the model's forward pass: on CPU it is one
        # torch matmul and a dozen numpy ops (numpy's per-op overhead is a fraction of torch's, and
        # its small views and conversions cost next to nothing), elsewhere the same steps in torch.
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
        # which is slower).
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
        planes = tensor_entry(tensors, "planes", torch.float32, 2)
        expect_shape("planes", planes, (self.dim, self.n_tables * self.n_bits))
        sums = tensor_entry(tensors, "sums", torch.float64, 2)
        expect_shape("sums", sums, tuple(self._sums.shape))
        n_added = scalar_int(tensors, "n_added")
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
